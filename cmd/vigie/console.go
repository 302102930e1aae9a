package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/console"
	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/telemetry"
)

// terminal reports whether r is an interactive terminal.
func terminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// drainTimeout bounds the wait for replies at end of input: the command
// timeout plus time to print.
func drainTimeout(cfg *config.Config) time.Duration {
	return cfg.Commands.Timeout.Duration + 10*time.Second
}

// runConsole serves commands from stdin until end of input, then exits once
// every reply is printed.
func runConsole(ctx context.Context, cfg *config.Config, clk clock.Clock, as string, stdin io.Reader, stdout, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr, zerolog.WarnLevel)
	ctx = log.WithContext(ctx)
	sender := cfg.Console.Sender
	if as != "" {
		if err := config.ValidateUserID(as); err != nil {
			return fmt.Errorf("--as: %w", err)
		}
		sender = as
	}
	a, err := newApp(ctx, cfg, clk, log, []incidents.Route{{Transport: console.Transport, Room: console.Room}}, telemetry.NewMetrics())
	if err != nil {
		return err
	}
	defer a.store.Close()

	prompt := ""
	if terminal(stdin) {
		prompt = console.Prompt
		fmt.Fprintf(stderr, "Vigie console as %s. Type help; Ctrl-D to quit.\n", sender)
	}
	con := console.New(stdin, stdout, sender, cfg.Matrix.CommandPrefix, prompt, a.router)
	out := a.sender(console.Transport, con)
	sendCtx, stopSending := context.WithCancel(ctx)
	sent := make(chan error, 1)
	go func() { sent <- out.Run(sendCtx) }()
	alertsCtx, stopAlerts := context.WithCancel(ctx)
	waitAlerts := a.startAlerts(alertsCtx, console.Transport)

	readErr := con.Run(ctx)
	stopAlerts()
	waitAlerts()
	a.router.Wait()
	drainCtx, cancel := context.WithTimeout(ctx, drainTimeout(cfg))
	defer cancel()
	drainErr := out.Drain(drainCtx)
	stopSending()
	<-sent
	if readErr != nil {
		return readErr
	}
	if ctx.Err() != nil {
		return nil // interrupted: pending replies stay queued for next time
	}
	return drainErr
}
