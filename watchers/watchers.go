// Package watchers holds Vigie's event sources: one file per source (Nomad's
// event stream, Consul health, ...). A watcher reads its source, owns its
// cursor, reconnects with backoff, and hands neutral Events to a Sink; it
// never imports the bot or the commands.
package watchers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Sink consumes a source's events. It must persist what a batch causes
// together with the batch's cursor, in one transaction, so that a crash
// loses and repeats nothing; the watcher resumes from Cursor on restart.
// The watcher reuses the batch's Events once Consume returns: a sink must
// not keep the slice.
type Sink interface {
	Consume(ctx context.Context, b Batch) error
}

// Watcher is one event source.
type Watcher interface {
	// Name identifies the watcher in logs and metrics and names its cursor.
	Name() string
	// Address is where it reads its source, for people.
	Address() string
	// Watch runs until ctx is done, returning nil, or until it fails; the
	// supervisor then restarts it after a backoff. It tells lookout of
	// every answer and every failure.
	Watch(ctx context.Context, sink Sink, lookout Lookout) error
}

// Backoff bounds the restart delay of a failing watcher.
type Backoff struct {
	Min, Max time.Duration
}

func (b Backoff) delay(failures int) time.Duration {
	d := b.Min << min(failures-1, 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	// ±20% jitter so that watchers of one dead server do not retry in step.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Supervise runs every watcher in its own goroutine until ctx is done,
// restarting each after errors and panics, so one bad event or one dead
// server never stops the process. Each is tracked by vis, which tells the
// sink when one goes blind. It returns when all have stopped.
func Supervise(ctx context.Context, sink Sink, backoff Backoff, vis *Visibility, ws ...Watcher) {
	var wg sync.WaitGroup
	for _, w := range ws {
		lookout := vis.Add(w.Name(), displayName(w), w.Address())
		wg.Add(1)
		go func() {
			defer wg.Done()
			supervise(ctx, w, recordingSink{Sink: sink, v: vis, name: w.Name()}, lookout, backoff)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		vis.Run(ctx, sink)
	}()
	wg.Wait()
}

// displayName is a watcher's name for people: its DisplayName if it has
// one, else its name capitalized ("nomad" is "Nomad").
func displayName(w Watcher) string {
	if d, ok := w.(interface{ DisplayName() string }); ok {
		return d.DisplayName()
	}
	name := w.Name()
	if name == "" {
		return name
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

func supervise(ctx context.Context, w Watcher, sink Sink, lookout Lookout, backoff Backoff) {
	log := zerolog.Ctx(ctx).With().Str("watcher", w.Name()).Logger()
	ctx = log.WithContext(ctx)
	failures := 0
	var since time.Time
	for ctx.Err() == nil {
		started := time.Now()
		err := watchOnce(ctx, w, sink, lookout)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("stopped without error")
		}
		lookout.Lost(err)
		// A run that lasted a while was healthy: start the backoff over.
		if time.Since(started) > backoff.Max {
			failures = 0
		}
		failures++
		wait := backoff.delay(failures)
		if failures == 1 {
			since = time.Now()
			log.Warn().Err(err).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Watcher failed; restarting with backoff")
		} else {
			log.Debug().Err(err).Int("failures", failures).Stringer("down_for", time.Since(since).Round(time.Millisecond)).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Watcher still failing")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// watchOnce turns a panic into an error.
func watchOnce(ctx context.Context, w Watcher, sink Sink, lookout Lookout) (err error) {
	defer func() {
		if p := recover(); p != nil {
			zerolog.Ctx(ctx).Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("Watcher panicked")
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return w.Watch(ctx, sink, lookout)
}
