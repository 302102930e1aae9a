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

// runMatrix serves Matrix rooms until ctx is cancelled or a fatal error.
func runMatrix(ctx context.Context, cfg *config.Config, clk clock.Clock, started time.Time, logOut io.Writer) error {
	if ps := cfg.MatrixProblems(); len(ps) > 0 {
		return fmt.Errorf("the configuration is not enough to connect to Matrix:\n%v", &config.Errors{Problems: ps})
	}
	log := newLogger(cfg.Log, logOut, zerolog.TraceLevel)
	ctx = log.WithContext(ctx)
	a, err := newApp(ctx, cfg, clk, log, matrixRoutes(cfg, bot.Transport))
	if err != nil {
		return err
	}
	defer a.store.Close()
	if len(cfg.Alerts.Rooms) == 0 {
		log.Warn().Msg("No [[alerts.rooms]] configured: incidents are tracked (see the alerts command) but posted nowhere")
	}

	b := bot.New(bot.Config{
		Homeserver:      cfg.Matrix.Homeserver,
		UserID:          cfg.Matrix.UserID,
		AccessToken:     cfg.Matrix.AccessToken.Reveal(),
		Password:        cfg.Matrix.Password.Reveal(),
		PickleKey:       cfg.Matrix.PickleKey.Reveal(),
		DeviceName:      cfg.Matrix.DeviceName,
		CommandPrefix:   cfg.Matrix.CommandPrefix,
		AllowedInviters: cfg.Matrix.AllowedInviters,
		Encryption:      cfg.Matrix.Encryption,
		EventGrace:      cfg.Matrix.EventGrace.Duration,
		DataDir:         cfg.DataDir,
		Started:         started,
	}, a.store, a.router, a.engine, log)
	defer b.Close()
	a.metrics.RegisterOutbox(bot.Transport, a.store)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var httpDone <-chan error
	if cfg.HTTP.Listen != "" {
		ready := func(ctx context.Context) error {
			return errors.Join(a.store.Ping(ctx), b.Ready(), a.sight.Unseen())
		}
		httpDone, err = telemetry.Serve(ctx, cfg.HTTP.Listen, telemetry.Handler(a.metrics, ready))
		if err != nil {
			return err
		}
	}

	log.Info().Str("version", versionString()).Str("homeserver", cfg.Matrix.Homeserver).Str("data_dir", cfg.DataDir).Msg("Starting Vigie")
	if err := b.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	// Every loop below stops when ctx is cancelled; the first to fail cancels the others.
	waitAlerts := a.startAlerts(ctx, bot.Transport)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for _, loop := range []func(context.Context) error{b.Run, a.sender(bot.Transport, b).Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(ctx); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	waitAlerts()
	a.router.Wait()
	if httpDone != nil {
		cancel()
		if err := <-httpDone; err != nil {
			log.Error().Err(err).Msg("HTTP listener failed")
		}
	}
	close(errs)
	err = <-errs
	log.Info().Msg("Vigie stopped")
	return err
}
