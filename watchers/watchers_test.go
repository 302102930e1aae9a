package watchers

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// script is a watcher that behaves as told, run by run.
type script struct {
	mu    sync.Mutex
	runs  int
	steps []func(ctx context.Context, sink Sink) error
}

func (s *script) Name() string    { return "script" }
func (s *script) Address() string { return "script://" }

func (s *script) Watch(ctx context.Context, sink Sink, _ Lookout) error {
	s.mu.Lock()
	i := s.runs
	s.runs++
	s.mu.Unlock()
	if i < len(s.steps) {
		return s.steps[i](ctx, sink)
	}
	<-ctx.Done()
	return nil
}

// lookoutLog records what a watcher tells its lookout.
type lookoutLog struct {
	mu      sync.Mutex
	seen    int
	lost    []string
	partial []string // every Partial call, "" included
}

func (l *lookoutLog) Partial(missing string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, missing)
}

// partials returns what the watcher said its source leaves out, call by call.
func (l *lookoutLog) partials() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.partial)
}

func (l *lookoutLog) Seen() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen++
}

func (l *lookoutLog) Lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, err.Error())
}

// counts returns how many answers and failures were told so far.
func (l *lookoutLog) counts() (seen, lost int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen, len(l.lost)
}

type collected struct {
	mu     sync.Mutex
	events []Event
}

func (c *collected) Consume(_ context.Context, b Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, b.Events...)
	return nil
}

func TestSuperviseRestartsAfterErrorsAndPanics(t *testing.T) {
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(zerolog.New(&logs).WithContext(t.Context()))
	sink := &collected{}
	delivered := make(chan struct{})
	w := &script{steps: []func(context.Context, Sink) error{
		func(context.Context, Sink) error { return errors.New("connection refused: http://127.0.0.1:4646") },
		func(context.Context, Sink) error { panic("nil map in a bad event") },
		func(ctx context.Context, s Sink) error {
			err := s.Consume(ctx, Batch{Cursor: Cursor{Name: "nomad", Index: 9}, Events: []Event{{Source: "nomad", Index: 9}}})
			close(delivered)
			<-ctx.Done()
			return err
		},
	}}
	done := make(chan struct{})
	vis := NewVisibility(nil, time.Hour)
	go func() {
		Supervise(ctx, sink, Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}, vis, w)
		close(done)
	}()
	select {
	case <-delivered:
	case <-time.After(5 * time.Second):
		t.Fatal("watcher was not restarted after an error and a panic")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Supervise did not return on cancel")
	}
	if len(sink.events) != 1 || sink.events[0].Index != 9 {
		t.Fatalf("events %+v", sink.events)
	}
	// The failures were told to the lookout, the delivery dated.
	st := vis.Statuses()
	if len(st) != 1 || st[0].Name != "script" || st[0].Display != "Script" || st[0].Address != "script://" ||
		!strings.Contains(st[0].Reason, "panic: nil map in a bad event") || st[0].LastEvent.IsZero() {
		t.Fatalf("status %+v", st)
	}
	out := logs.String()
	if strings.Count(out, "Watcher failed; restarting") != 1 || !strings.Contains(out, "Watcher panicked") ||
		!strings.Contains(out, "http://127.0.0.1:4646") {
		t.Fatalf("logs:\n%s", out)
	}
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for failures := 1; failures < 70; failures++ {
		d := b.delay(failures)
		want := min(100*time.Millisecond<<min(failures-1, 20), time.Second)
		if d < want*8/10 || d > want*12/10 {
			t.Fatalf("failure %d: delay %v, want %v ±20%%", failures, d, want)
		}
	}
}
