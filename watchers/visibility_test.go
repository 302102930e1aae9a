package watchers

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
)

// sightSink records the Sight events Visibility.Run delivers.
type sightSink struct {
	mu      sync.Mutex
	events  []Event
	fail    error
	refused int // deliveries failed with fail
}

func (s *sightSink) Consume(_ context.Context, b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		s.refused++
		return s.fail
	}
	if b.Cursor.Name != "" {
		return errors.New("a sight batch moved a cursor")
	}
	s.events = append(s.events, b.Events...)
	return nil
}

func (s *sightSink) types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Source+":"+e.Type)
	}
	return out
}

func (s *sightSink) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func TestVisibilityGoesBlindAfterTheGraceAndSeesAgain(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 12, 3, 0, 0, time.UTC)
	clk := clock.NewManual(t0)
	v := NewVisibility(clk, time.Minute)
	nomad := v.Add("nomad", "Nomad", "http://127.0.0.1:4646")
	consul := v.Add("consul", "Consul", "http://127.0.0.1:8500")
	sink := &sightSink{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); v.Run(ctx, sink) }()
	waitTypes := func(want ...string) {
		t.Helper()
		waitFor(t, strings.Join(want, ","), func() bool { return strings.Join(sink.types(), ",") == strings.Join(want, ",") })
	}

	// Both answer: each is announced seen once (it resolves what a previous
	// run may have left open).
	nomad.Seen()
	consul.Seen()
	waitTypes("nomad:seeing", "consul:seeing")
	if err := v.Unseen(); err != nil {
		t.Fatal(err)
	}

	// Nomad fails; within the grace it is down, not blind.
	clk.Advance(10 * time.Second)
	nomad.Lost(errors.New("dial tcp 127.0.0.1:4646: connect: connection refused"))
	clk.Advance(59 * time.Second)
	st := v.Statuses()
	if st[0].Up || st[0].Blind || !st[0].Since.Equal(t0.Add(10*time.Second)) || !strings.Contains(st[0].Reason, "connection refused") ||
		!st[0].LastContact.Equal(t0) || !st[1].Up {
		t.Fatalf("within the grace: %+v", st)
	}
	if err := v.Unseen(); err != nil {
		t.Fatalf("blind within the grace: %v", err)
	}
	// A later failure changes the reason, not the start of the outage.
	nomad.Lost(errors.New("event stream at http://127.0.0.1:4646 sent nothing for 1m0s"))
	clk.Advance(time.Second)
	err := v.Unseen()
	if err == nil || !strings.Contains(err.Error(), "blind to Nomad (http://127.0.0.1:4646) since 2030-01-02T12:03:10Z: event stream") {
		t.Fatalf("blind: %v", err)
	}
	waitTypes("nomad:seeing", "consul:seeing", "nomad:blind")
	ev := sink.events[2]
	if ev.Topic != TopicSight || ev.Sight.Source != "Nomad" || !ev.Sight.Since.Equal(t0.Add(10*time.Second)) ||
		!strings.Contains(ev.Sight.Reason, "sent nothing") || ev.Sight.Address != "http://127.0.0.1:4646" {
		t.Fatalf("blind event %+v %+v", ev, ev.Sight)
	}

	// Seen again: announced once; a store failure is retried.
	sink.setFail(errors.New("disk full"))
	nomad.Seen()
	waitFor(t, "a failed delivery", func() bool { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.refused > 0 })
	sink.setFail(nil)
	waitTypes("nomad:seeing", "consul:seeing", "nomad:blind", "nomad:seeing")
	if err := v.Unseen(); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
}

// A source never reached is blind after the grace from the start.
func TestVisibilityNeverReachedIsBlind(t *testing.T) {
	clk := clock.NewManual(time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC))
	v := NewVisibility(clk, time.Minute)
	v.Add("consul", "Consul", "http://127.0.0.1:8500")
	clk.Advance(time.Minute)
	st := v.Statuses()
	if len(st) != 1 || st[0].Up || !st[0].Blind || st[0].Reason != "not reached yet" || !st[0].LastContact.IsZero() {
		t.Fatalf("statuses %+v", st)
	}
	if news := v.news(); len(news) != 1 || news[0].Type != SightBlind {
		t.Fatalf("news %+v", news)
	}
}

// A source that answers but leaves part of its state out (an ACL filter)
// is announced, fails /readyz, and is announced whole again; a source
// whose watcher never says (Nomad's stream is all or nothing) is not.
func TestVisibilityTellsPartialViews(t *testing.T) {
	clk := clock.NewManual(time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC))
	v := NewVisibility(clk, time.Minute)
	nomad := v.Add("nomad", "Nomad", "http://127.0.0.1:4646")
	consul := v.Add("consul", "Consul", "http://127.0.0.1:8500")
	types := func(evs []Event) string {
		var out []string
		for _, e := range evs {
			out = append(out, e.Source+":"+e.Type)
			v.said(e.Source, e.Type)
		}
		return strings.Join(out, ",")
	}
	nomad.Seen()
	consul.Seen()
	consul.Partial("Consul leaves out the checks the token may not read")
	if got := types(v.news()); got != "nomad:seeing,consul:seeing,consul:partial" {
		t.Fatalf("news %s", got)
	}
	err := v.Unseen()
	if err == nil || err.Error() != "Consul (http://127.0.0.1:8500) shows only part of its state: Consul leaves out the checks the token may not read" {
		t.Fatalf("unseen: %v", err)
	}
	if st := v.Statuses(); st[1].Missing == "" || st[0].Missing != "" {
		t.Fatalf("statuses %+v", st)
	}
	consul.Partial("Consul leaves out the checks the token may not read") // told again on every answer
	if got := types(v.news()); got != "" {
		t.Fatalf("news repeated: %s", got)
	}
	consul.Partial("")
	if got := types(v.news()); got != "consul:whole" {
		t.Fatalf("news %s", got)
	}
	if err := v.Unseen(); err != nil {
		t.Fatal(err)
	}
}
