package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// app is what both transports share: state, outbox, commands, metrics.
type app struct {
	cfg     *config.Config
	log     zerolog.Logger
	store   *store.Store
	outbox  *outbox.Outbox
	router  *commands.Router
	metrics *telemetry.Metrics
}

// seenRetention bounds the table of handled command events. Events that
// old are refused by the transports' start-time check anyway.
const seenRetention = 7 * 24 * time.Hour

func newApp(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*app, error) {
	st, err := store.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("state store: %w", err)
	}
	if _, err := st.ForgetSeenBefore(ctx, time.Now().Add(-seenRetention)); err != nil {
		st.Close()
		return nil, fmt.Errorf("state store: %w", err)
	}
	reg, err := commands.NewRegistry(commands.Ping{})
	if err != nil {
		st.Close()
		return nil, err
	}
	if err := reg.Register(&commands.Help{Registry: reg}); err != nil {
		st.Close()
		return nil, err
	}
	m := telemetry.NewMetrics()
	box := outbox.New(st)
	router := commands.NewRouter(commands.RouterConfig{
		Registry: reg, Replies: box, Seen: st, Audit: st, Metrics: m,
		Timeout: cfg.Commands.Timeout.Duration, MaxReplyBytes: cfg.Commands.MaxReplyBytes,
	})
	return &app{cfg: cfg, log: log, store: st, outbox: box, router: router, metrics: m}, nil
}

func (a *app) sender(transport string, to outbox.Deliverer) *outbox.Sender {
	return a.outbox.NewSender(transport, a.store, to, outbox.SenderConfig{
		MinBackoff:  a.cfg.Outbox.MinBackoff.Duration,
		MaxBackoff:  a.cfg.Outbox.MaxBackoff.Duration,
		GiveUpAfter: a.cfg.Outbox.GiveUpAfter.Duration,
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
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
