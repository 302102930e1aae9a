package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/console"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// backupEventsInterval is how often freshness and S3 are looked at.
const backupEventsInterval = time.Minute

// newBackups builds the backup service of the configuration (with no
// target, one that says so to every command).
// s3Storage is the [s3] bucket: backups and the replicated state.
func s3Storage(cfg *config.Config) (*backups.Storage, error) {
	s3TLS, err := cfg.S3.TLS.Client()
	if err != nil {
		return nil, fmt.Errorf("s3.tls: %w", err)
	}
	return backups.NewStorage(backups.StorageConfig{
		Endpoint: cfg.S3.Endpoint, Region: cfg.S3.Region, Bucket: cfg.S3.Bucket,
		AccessKeyID: cfg.S3.AccessKeyID.Reveal(), SecretAccessKey: cfg.S3.SecretAccessKey.Reveal(), TLS: s3TLS,
		PartSize: int64(cfg.Backups.PartSizeMiB) << 20, ParallelParts: cfg.Backups.ParallelParts,
	})
}

func newBackups(cfg *config.Config, clk clock.Clock, st *store.Store, obs backups.Observer, nomadTLS, consulTLS *tls.Config) (*backups.Service, *backups.Garage, error) {
	var storage *backups.Storage
	if len(cfg.Backups.Targets) > 0 {
		var err error
		if storage, err = s3Storage(cfg); err != nil {
			return nil, nil, err
		}
	}
	var targets []backups.Target
	for _, t := range cfg.Backups.Targets {
		targets = append(targets, backupTarget(cfg, t, nomadTLS, consulTLS))
	}
	svc, err := backups.New(backups.Config{Targets: targets, Storage: storage, Prefix: cfg.S3.Prefix,
		WorkDir: filepath.Join(cfg.DataDir, "backup-work"), Version: versionString(), Timeout: cfg.Backups.Timeout.Duration}, st, clk, obs)
	if err != nil {
		return nil, nil, err
	}
	var garage *backups.Garage
	if g := cfg.Garage; g.AdminEndpoint != "" {
		garage = &backups.Garage{Endpoint: g.AdminEndpoint, Token: g.AdminToken.Reveal(), Client: &http.Client{Timeout: 15 * time.Second}}
	}
	return svc, garage, nil
}

// backupTarget maps a configured target to the service's.
func backupTarget(cfg *config.Config, t config.BackupTarget, nomadTLS, consulTLS *tls.Config) backups.Target {
	out := backups.Target{Name: t.Name, Kind: t.Kind, Schedule: t.Schedule, VerifySchedule: t.VerifySchedule, MaxAge: t.MaxAge.Duration,
		Retention: backups.Retention{Last: t.KeepLast, Daily: t.KeepDaily, Weekly: t.KeepWeekly, Monthly: t.KeepMonthly}}
	switch t.Kind {
	case config.BackupPostgres:
		out.Databases, out.Tools, out.Postgres = t.Databases, backups.Tools{PgDump: t.PgDumpPath}, pgServer(t.Postgres)
		if t.Verify.Host != "" {
			v := pgServer(t.Verify)
			out.Verify = &v
		}
	case config.BackupConsul:
		out.Cluster = snapshotCluster("Consul", cfg.Consul.Address, consulTLS, "X-Consul-Token", cfg.Consul.Token, t.Token, "dc", cfg.Consul.Datacenter)
	case config.BackupNomad:
		out.Cluster = snapshotCluster("Nomad", cfg.Nomad.Address, nomadTLS, "X-Nomad-Token", cfg.Nomad.Token, t.Token, "region", cfg.Nomad.Region)
	}
	return out
}

// snapshotCluster is where a snapshot is saved from: the cluster's API,
// with the target's own token if it has one (snapshots need a management
// token), else the watchers'.
func snapshotCluster(name, address string, tc *tls.Config, header string, token, own config.Secret, scopeKey, scope string) backups.Cluster {
	if own.IsSet() {
		token = own
	}
	c := backups.Cluster{Name: name, Address: address, Client: clusterClient(tc), Header: http.Header{}}
	if token.IsSet() {
		c.Header.Set(header, token.Reveal())
	}
	if scope != "" {
		c.Query = url.Values{scopeKey: {scope}}
	}
	return c
}

func pgServer(s config.PGServer) pgserver.Server {
	return pgserver.Server{Host: s.Host, Port: s.Port, User: s.User, Password: s.Password.Reveal(), SSLMode: s.SSLMode, CAFile: s.CAFile}
}

// clusterClient downloads snapshots: no overall timeout (the run's
// context bounds it), the cluster's TLS.
func clusterClient(tc *tls.Config) *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc.Clone() // its own: HTTP/2 set-up writes into it
	return &http.Client{Transport: transport}
}

// reportKey remembers when the backup report was last posted, for the
// catch-up of a report missed while Vigie was down.
const reportKey = "backups.report.last"

// backupReportJob posts the report to backups.report_room.
func (a *app) backupReportJob(transport string) backups.Job {
	if a.cfg.Backups.ReportSchedule == "" {
		return backups.Job{}
	}
	return backups.Job{
		Spec: a.cfg.Backups.ReportSchedule,
		Run: func(ctx context.Context) error {
			node := commands.RenderBackupReport(a.backups.Status(ctx, a.garage))
			room := a.cfg.Backups.ReportRoom
			if transport == console.Transport {
				room = console.Room // the console has one room
			}
			_, err := a.outbox.Send(ctx, outbox.Message{Transport: transport, Room: room,
				Content: render.RenderLimit(a.cfg.Commands.MaxReplyBytes, node)})
			if err == nil {
				err = a.store.SetValue(ctx, reportKey, a.clock.Now().UTC().Format(time.RFC3339))
			}
			return err
		},
		LastRun: func(ctx context.Context) (time.Time, error) {
			v, ok, err := a.store.Value(ctx, reportKey)
			if err != nil || !ok {
				return time.Time{}, err
			}
			return time.Parse(time.RFC3339, v)
		},
	}
}

// runBackups cleans up after a previous process and schedules until ctx
// ends. A cleanup that fails (S3 down) is retried by the event source.
func (a *app) runBackups(ctx context.Context, transport string) {
	if len(a.cfg.Backups.Targets) == 0 {
		return
	}
	if err := a.backups.Recover(ctx); err != nil && !errors.Is(err, context.Canceled) {
		a.log.Warn().Err(err).Msg("Backups: cleanup after the previous run incomplete; retrying in the background")
	}
	if err := backups.NewScheduler(a.backups, a.backupReportJob(transport)).Run(ctx); err != nil {
		a.log.Error().Err(err).Msg("Backups: cannot schedule")
	}
}

// pgDumpProblems checks each PostgreSQL target's pg_dump against its
// server, for check-config: a pg_dump that is missing or older than the
// server is a problem; a server out of reach is only reported.
func pgDumpProblems(ctx context.Context, cfg *config.Config) (problems []config.Problem, notes []string) {
	for i, t := range cfg.Backups.Targets {
		if t.Kind != config.BackupPostgres {
			continue
		}
		key := fmt.Sprintf("backups.targets[%d].pg_dump_path", i)
		tools := backups.Tools{PgDump: t.PgDumpPath}
		if _, _, err := tools.Version(ctx, "pg_dump"); err != nil {
			problems = append(problems, config.Problem{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: err.Error()})
			continue
		}
		db := "postgres"
		if len(t.Databases) > 0 && t.Databases[0] != "*" {
			db = t.Databases[0]
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := backups.CheckPgDump(cctx, tools, pgServer(t.Postgres), db)
		cancel()
		var tooOld *backups.PgDumpTooOldError
		switch {
		case errors.As(err, &tooOld):
			problems = append(problems, config.Problem{File: cfg.File, Line: cfg.Line(key), Key: key, Msg: err.Error()})
		case err != nil:
			notes = append(notes, fmt.Sprintf("backup %s: cannot compare pg_dump with the server now: %v", t.Name, err))
		}
	}
	return problems, notes
}
