package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/auth"
	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/internal/suggest"
	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/stolon"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
	"github.com/vigie/vigie/watchers"
)

// app is what both transports share: state, outbox, incidents, commands,
// watchers, metrics.
type app struct {
	cfg      *config.Config
	clock    clock.Clock
	log      zerolog.Logger
	store    *store.Store
	outbox   *outbox.Outbox
	engine   *incidents.Engine
	router   *commands.Router
	metrics  *telemetry.Metrics
	watchers []watchers.Watcher
	sight    *watchers.Visibility // what Vigie sees of the watchers' sources
	backups  *backups.Service
	garage   *backups.Garage // nil: no Garage figures in the report
	stolon   *stolon.Service
}

// seenRetention bounds the table of handled command events. Events that
// old are refused by the transports' start-time check anyway.
const seenRetention = 7 * 24 * time.Hour

// newApp wires everything but the transport; routes say where incidents go.
func newApp(ctx context.Context, cfg *config.Config, clk clock.Clock, log zerolog.Logger, routes []incidents.Route, m *telemetry.Metrics) (*app, error) {
	rules, err := alertRules(cfg)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DataDir, clk)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	if _, err := st.ForgetSeenBefore(ctx, clk.Now().Add(-seenRetention)); err != nil {
		st.Close()
		return nil, fmt.Errorf("state store: %w", err)
	}
	a := cfg.Alerts
	box := outbox.New(st)
	engine := incidents.New(incidents.Config{
		Rules: rules, Routes: routes,
		EditInterval: a.EditInterval.Duration, RoomCap: a.RoomCap, ThreadCap: a.ThreadCap,
		FlapWindow: a.FlapWindow.Duration, FlapThreshold: a.FlapThreshold, ReminderInterval: a.ReminderInterval.Duration,
		SettleAfter: a.HealthyAfter.Duration, MaxHold: a.MaxHold.Duration,
		MaxMessageBytes: cfg.Commands.MaxReplyBytes, Waker: box,
	}, st)
	authz, identifier, err := newAuthorizer(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	nomadTLS, consulTLS, err := serverTLS(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	nomad, err := nomadops.New(nomadops.Config{Address: cfg.Nomad.Address, Region: cfg.Nomad.Region,
		Namespace: cfg.Nomad.Namespace, Token: cfg.Nomad.Token.Reveal(), TLS: nomadTLS})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("nomad: %w", err)
	}
	svc, garage, err := newBackups(cfg, clk, st, m, nomadTLS, consulTLS)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("backups: %w", err)
	}
	sight := watchers.NewVisibility(clk, a.BlindAfter.Duration)
	db := newStolon(cfg, clk, st, consulTLS)
	reg, err := newRegistry(cfg, registryDeps{engine: engine, store: st, authorizer: authz, directory: identifier, nomad: nomad, sight: sight,
		backups: svc, garage: garage, stolon: db})
	if err != nil {
		st.Close()
		return nil, err
	}
	m.RegisterSources(func() []telemetry.SourceReading {
		var out []telemetry.SourceReading
		for _, s := range sight.Statuses() {
			out = append(out, telemetry.SourceReading{Name: s.Name, Up: s.Up, Blind: s.Blind, Partial: s.Up && s.Missing != "", LastContact: s.LastContact, LastEvent: s.LastEvent})
		}
		return out
	})
	router := commands.NewRouter(commands.RouterConfig{
		Registry: reg, Replies: box, Seen: st, Audit: st, Authorizer: authz, Metrics: m,
		Timeout: cfg.Commands.Timeout.Duration, MaxReplyBytes: cfg.Commands.MaxReplyBytes,
		ConfirmTimeout: cfg.Policy.ConfirmTimeout.Duration, MutationsPerMin: cfg.Policy.MutationsPerMin,
		AuditTransport: auditTransport, AuditRoom: cfg.Policy.AuditRoom, Clock: clk,
	})
	ws := newWatchers(cfg, clk, st, nomadTLS, consulTLS)
	if len(cfg.Backups.Targets) > 0 {
		ws = append(ws, backups.NewEvents(svc, st, backupEventsInterval))
	}
	for _, c := range db.Clusters() {
		ws = append(ws, db.Events(c))
	}
	return &app{cfg: cfg, clock: clk, log: log, store: st, outbox: box, engine: engine, router: router, metrics: m,
		watchers: ws, sight: sight, backups: svc, garage: garage, stolon: db}, nil
}

// auditTransport carries audit mirror lines: the audit room is a Matrix room.
const auditTransport = "matrix"

// newAuthorizer is the policy, with the LDAP directory when one is
// configured; without, public commands run, reads too with read_open, and
// nothing else.
func newAuthorizer(cfg *config.Config) (commands.Authorizer, commands.Identifier, error) {
	if cfg.LDAP.URL == "" {
		p, err := auth.NewPolicy(cfg.Policy, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("policy: %w", err)
		}
		return p, nil, nil
	}
	dir, err := auth.NewDirectory(cfg.LDAP)
	if err != nil {
		return nil, nil, fmt.Errorf("ldap: %w", err)
	}
	p, err := auth.NewPolicy(cfg.Policy, dir)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: %w", err)
	}
	return p, p, nil
}

// registryDeps are what the commands work with; all nil for a registry
// that only serves names and specs (config validation).
type registryDeps struct {
	engine     *incidents.Engine
	store      *store.Store
	authorizer commands.Authorizer
	directory  commands.Identifier
	nomad      *nomadops.Client
	sight      commands.Sources
	backups    *backups.Service
	garage     *backups.Garage
	stolon     *stolon.Service
}

// newRegistry lists every command.
func newRegistry(cfg *config.Config, d registryDeps) (*commands.Registry, error) {
	reg, err := commands.NewRegistry(commands.Ping{},
		&commands.Alerts{Book: d.engine, Sources: d.sight}, &commands.Ack{Book: d.engine},
		&commands.Silence{Book: d.engine, MaxDuration: cfg.Policy.MaxSilence.Duration},
		&commands.Silences{Book: d.engine}, &commands.Unsilence{Book: d.engine},
		&commands.Audit{Log: d.store},
		&commands.Status{Nomad: d.nomad, Sources: d.sight}, &commands.Jobs{Nomad: d.nomad}, &commands.Job{Nomad: d.nomad}, &commands.Logs{Nomad: d.nomad},
		&commands.Deploy{Nomad: d.nomad, JobspecsDir: cfg.Nomad.JobspecsDir}, &commands.Rollback{Nomad: d.nomad},
		&commands.Scale{Nomad: d.nomad, MaxCount: cfg.Policy.MaxScale},
		&commands.Restart{Nomad: d.nomad}, &commands.Promote{Nomad: d.nomad},
		&commands.Backup{Backups: d.backups, Timeout: cfg.Backups.Timeout.Duration}, &commands.Backups{Backups: d.backups},
		&commands.Verify{Backups: d.backups, Timeout: cfg.Backups.Timeout.Duration},
		&commands.Restore{Backups: d.backups, Timeout: cfg.Backups.Timeout.Duration}, &commands.Prune{Backups: d.backups},
		&commands.BackupReport{Backups: d.backups, Garage: d.garage},
		&commands.DBStatus{Stolon: d.stolon}, &commands.Failover{Stolon: d.stolon, Timeout: failoverTimeout(cfg)})
	if err == nil {
		err = reg.Register(&commands.Help{Registry: reg})
	}
	if err == nil {
		err = reg.Register(&commands.WhoAmI{Directory: d.directory, Registry: reg, Authorizer: d.authorizer})
	}
	return reg, err
}

// routerCommands are added by the router itself.
var routerCommands = []string{"confirm", "cancel"}

// policyProblems checks what config cannot: that policy rules name
// existing commands.
func policyProblems(cfg *config.Config) []config.Problem {
	reg, err := newRegistry(cfg, registryDeps{})
	if err != nil {
		return []config.Problem{{Key: "policy.rules", Msg: err.Error()}}
	}
	known := append(reg.Names(), routerCommands...)
	var out []config.Problem
	for i, r := range cfg.Policy.Rules {
		key := fmt.Sprintf("policy.rules[%d].commands", i)
		for _, name := range r.Commands {
			if slices.Contains(known, name) {
				continue
			}
			out = append(out, config.Problem{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: unknownName("command", name, known)})
		}
	}
	return out
}

// unknownName says that name is not one of the known kinds, suggesting
// the nearest or else listing them all.
func unknownName(kind, name string, known []string) string {
	if near, ok := suggest.Closest(name, known); ok {
		return fmt.Sprintf("unknown %s %q (did you mean %q?)", kind, name, near)
	}
	return fmt.Sprintf("unknown %s %q (%ss: %s)", kind, name, kind, strings.Join(known, ", "))
}

// alertRules builds the enabled rules with their severity overrides.
func alertRules(cfg *config.Config) ([]incidents.Rule, error) {
	severity := map[string]incidents.Severity{}
	for _, s := range cfg.Alerts.Severities {
		rule, name, _ := strings.Cut(s, "=")
		sev, err := incidents.ParseSeverity(name)
		if err != nil {
			return nil, fmt.Errorf("alerts.severities: %w", err)
		}
		severity[rule] = sev
	}
	rules, err := incidents.Rules(cfg.Alerts.DisabledRules, severity)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w (rules: %s)", err, strings.Join(incidents.RuleNames(), ", "))
	}
	return rules, nil
}

// buildProblems builds what "vigie run" builds from a configuration, as
// it would, without contacting anything: what it refuses is a problem.
func buildProblems(cfg *config.Config) []config.Problem {
	var out []config.Problem
	if _, _, err := newAuthorizer(cfg); err != nil {
		key := "policy"
		if cfg.LDAP.URL != "" && strings.HasPrefix(err.Error(), "ldap") {
			key = "ldap"
		}
		out = append(out, config.Problem{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: err.Error()})
	}
	if _, _, err := serverTLS(cfg); err != nil {
		out = append(out, config.Problem{File: cfg.File, Key: "tls", Msg: err.Error()})
	}
	return out
}

// alertProblems checks what config cannot: the rule names.
func alertProblems(cfg *config.Config) []config.Problem {
	var out []config.Problem
	names := incidents.RuleNames()
	check := func(key, rule string) {
		if slices.Contains(names, rule) {
			return
		}
		out = append(out, config.Problem{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: unknownName("rule", rule, names)})
	}
	for _, r := range cfg.Alerts.DisabledRules {
		check("alerts.disabled_rules", r)
	}
	for _, s := range cfg.Alerts.Severities {
		rule, _, _ := strings.Cut(s, "=")
		check("alerts.severities", rule)
	}
	return out
}

// matrixRoutes are the [[alerts.rooms]] of the configuration.
func matrixRoutes(cfg *config.Config, transport string) []incidents.Route {
	var routes []incidents.Route
	for _, r := range cfg.Alerts.Rooms {
		sev := incidents.Info
		if r.MinSeverity != "" {
			sev, _ = incidents.ParseSeverity(r.MinSeverity) // validated by config
		}
		routes = append(routes, incidents.Route{Transport: transport, Room: r.Room, MinSeverity: sev,
			Namespaces: r.Namespaces, Jobs: r.Jobs, Nodes: r.Nodes, Checks: r.Checks, Services: r.Services})
	}
	return routes
}

// serverTLS builds the TLS client settings of Nomad and Consul, once for
// the watchers and the commands.
func serverTLS(cfg *config.Config) (nomad, consul *tls.Config, err error) {
	if nomad, err = cfg.Nomad.TLS.Client(); err != nil {
		return nil, nil, fmt.Errorf("nomad.tls: %w", err)
	}
	if consul, err = cfg.Consul.TLS.Client(); err != nil {
		return nil, nil, fmt.Errorf("consul.tls: %w", err)
	}
	return nomad, consul, nil
}

func newWatchers(cfg *config.Config, clk clock.Clock, st *store.Store, nomadTLS, consulTLS *tls.Config) []watchers.Watcher {
	var ws []watchers.Watcher
	if cfg.Nomad.Watch {
		ws = append(ws, watchers.NewNomad(watchers.NomadConfig{
			Address: cfg.Nomad.Address, Region: cfg.Nomad.Region, Token: cfg.Nomad.Token.Reveal(),
			Namespaces: cfg.Nomad.Namespaces, Topics: cfg.Nomad.Topics, StreamTimeout: cfg.Nomad.StreamTimeout.Duration,
			Clock: clk, TLS: nomadTLS,
		}, st))
	}
	if cfg.Consul.Watch {
		ws = append(ws, watchers.NewConsul(watchers.ConsulConfig{
			Address: cfg.Consul.Address, Datacenter: cfg.Consul.Datacenter, Token: cfg.Consul.Token.Reveal(),
			Wait: cfg.Consul.Wait.Duration, MinInterval: cfg.Consul.MinInterval.Duration, TLS: consulTLS,
		}))
	}
	return ws
}

// watcherBackoff bounds restarts of a failing watcher (beyond its own
// reconnect logic).
var watcherBackoff = watchers.Backoff{Min: time.Second, Max: time.Minute}

// startAlerts runs the incident timers, the watchers, the backup
// schedules and the recovery of fences left by a crash until ctx ends; the backup report goes to transport; wait
// blocks until they have stopped.
func (a *app) startAlerts(ctx context.Context, transport string) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(func() { a.engine.Run(ctx) })
	wg.Go(func() { watchers.Supervise(ctx, a.engine, watcherBackoff, a.sight, a.watchers...) })
	wg.Go(func() { a.runBackups(ctx, transport) })
	wg.Go(func() { a.runStolon(ctx) })
	return wg.Wait
}

func (a *app) sender(transport string, to outbox.Deliverer) *outbox.Sender {
	return a.outbox.NewSender(transport, a.store, to, outbox.SenderConfig{
		MinBackoff:  a.cfg.Outbox.MinBackoff.Duration,
		MaxBackoff:  a.cfg.Outbox.MaxBackoff.Duration,
		GiveUpAfter: a.cfg.Outbox.GiveUpAfter.Duration,
		Clock:       a.clock,
	}, a.metrics)
}

// newLogger builds the process logger; minLevel raises the configured level
// (the console keeps its terminal for replies).
func newLogger(cfg config.Log, w io.Writer, minLevel zerolog.Level) zerolog.Logger {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	level = max(level, minLevel)
	if cfg.Format == "console" {
		isTTY := false
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil {
				isTTY = fi.Mode()&os.ModeCharDevice != 0
			}
		}
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTTY}
	}
	// Watchers, the sync loop and handlers log from their own goroutines.
	return zerolog.New(zerolog.SyncWriter(w)).Level(level).With().Timestamp().Logger()
}
