package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/bot"
	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/telemetry"
)

// runMatrix serves Matrix rooms until ctx is cancelled or a fatal error;
// with [ha], only while this instance leads.
func runMatrix(ctx context.Context, cfg *config.Config, clk clock.Clock, started time.Time, logOut io.Writer) error {
	if ps := cfg.MatrixProblems(); len(ps) > 0 {
		return fmt.Errorf("the configuration is not enough to connect to Matrix:\n%v", &config.Errors{Problems: ps})
	}
	log := newLogger(cfg.Log, logOut, zerolog.TraceLevel)
	ctx = log.WithContext(ctx)
	p := &process{cfg: cfg, clock: clk, started: started, log: log, metrics: telemetry.NewMetrics()}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var httpDone <-chan error
	if cfg.HTTP.Listen != "" {
		var err error
		httpDone, err = telemetry.Serve(ctx, cfg.HTTP.Listen, telemetry.Handler(p.metrics, p.ready))
		if err != nil {
			return err
		}
	}
	log.Info().Str("version", versionString()).Str("homeserver", cfg.Matrix.Homeserver).Str("data_dir", cfg.DataDir).Msg("Starting Vigie")
	var err error
	if cfg.HA.Enabled {
		err = p.runHA(ctx)
	} else {
		err = p.lead(ctx, nil)
	}
	if httpDone != nil {
		cancel()
		if herr := <-httpDone; herr != nil {
			log.Error().Err(herr).Msg("HTTP listener failed")
		}
	}
	log.Info().Msg("Vigie stopped")
	return err
}

// process is what outlives a leadership: the HTTP endpoints and their
// metrics, and what /readyz checks at each moment.
type process struct {
	cfg     *config.Config
	clock   clock.Clock
	started time.Time
	log     zerolog.Logger
	metrics *telemetry.Metrics

	mu        sync.Mutex
	readiness func(ctx context.Context) error
}

// ready is /readyz: not ready until a role set what to check.
func (p *process) ready(ctx context.Context) error {
	p.mu.Lock()
	check := p.readiness
	p.mu.Unlock()
	if check == nil {
		return errors.New("starting")
	}
	return check(ctx)
}

func (p *process) setReadiness(check func(ctx context.Context) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readiness = check
}

// lead runs everything that watches, alerts, schedules, sends and answers,
// until ctx ends or one of them fails; with term, also until leadership
// is lost, which stops them all at once.
func (p *process) lead(ctx context.Context, term *haTerm) error {
	cfg, log := p.cfg, p.log
	a, err := newApp(ctx, cfg, p.clock, log, matrixRoutes(cfg, bot.Transport), p.metrics)
	if err != nil {
		return err
	}
	defer a.store.Close()
	if len(cfg.Alerts.Rooms) == 0 {
		log.Warn().Msg("No [[alerts.rooms]] configured: incidents are tracked (see the alerts command) but posted nowhere")
	}
	var state bot.State = a.store
	started, adoptSince := p.started, time.Time{}
	if term != nil {
		if state, err = term.prepare(ctx, a); err != nil {
			return err
		}
		defer term.closeLocal()
		// Commands from before the lock was taken were the last leader's
		// to answer (and those it answered after its replica would be
		// answered again).
		started, adoptSince = term.tookAt, term.adoptSince()
	}
	b := bot.New(p.botConfig(started, adoptSince), state, a.router, a.engine, log)
	defer b.Close()
	a.metrics.RegisterOutbox(bot.Transport, a.store)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p.setReadiness(func(ctx context.Context) error {
		errs := []error{a.store.Ping(ctx), b.Ready(), a.sight.Unseen()}
		if term != nil {
			errs = append(errs, term.ready())
		}
		return errors.Join(errs...)
	})
	if term != nil {
		// Leadership lost: everything below stops before anything else is sent.
		lost := term.term.Lost
		stop := context.AfterFunc(lost, func() { cancel(fmt.Errorf("leadership lost: %w", context.Cause(lost))) })
		defer stop()
		if err := a.engine.Consume(ctx, term.news()); err != nil {
			return fmt.Errorf("record the takeover: %w", err)
		}
	}
	if err := b.Start(ctx); err != nil {
		return p.ended(ctx, err)
	}

	// Every loop below stops when ctx is cancelled; the first to fail cancels the others.
	waitAlerts := a.startAlerts(ctx, bot.Transport)
	loops := []func(context.Context) error{b.Run, a.sender(bot.Transport, b).Run}
	if term != nil {
		loops = append(loops, term.replicator.Run)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(loops))
	for _, loop := range loops {
		wg.Go(func() {
			if err := loop(ctx); err != nil {
				errs <- err
				cancel(err)
			}
		})
	}
	wg.Wait()
	waitAlerts()
	a.router.Wait()
	close(errs)
	return p.ended(ctx, <-errs)
}

// botConfig is the Matrix transport's configuration: commands from
// before started are ignored; adoptSince, with [ha], is from when the
// rooms may hold what the last leader sent.
func (p *process) botConfig(started, adoptSince time.Time) bot.Config {
	m := p.cfg.Matrix
	return bot.Config{
		Homeserver: m.Homeserver, UserID: m.UserID,
		AccessToken: m.AccessToken.Reveal(), Password: m.Password.Reveal(), PickleKey: m.PickleKey.Reveal(),
		DeviceName: m.DeviceName, CommandPrefix: m.CommandPrefix, AllowedInviters: m.AllowedInviters,
		Encryption: m.Encryption, EventGrace: m.EventGrace.Duration,
		DataDir: p.cfg.DataDir, Started: started, AdoptSince: adoptSince,
	}
}

// ended is how a leadership ends: a loop's error, the loss of leadership,
// or nothing (the process was asked to stop).
func (p *process) ended(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}
