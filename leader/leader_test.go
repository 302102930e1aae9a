package leader

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/fakeconsul"
)

const key = "vigie/leader"

func newElector(t *testing.T, fake *fakeconsul.Server, name string, fp map[string]string, clk clock.Clock) *Elector {
	t.Helper()
	cfg := api.DefaultNonPooledConfig()
	cfg.Address = fake.URL
	cli, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return New(Config{Client: cli, Address: fake.URL, Key: key, Instance: name, TTL: 10 * time.Second,
		LockDelay: time.Second, Fingerprint: fp, Clock: clk, RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond})
}

type result struct {
	name string
	term *Term
	err  error
}

func campaign(ctx context.Context, e *Elector, name string, out chan<- result) {
	t, err := e.Campaign(ctx)
	out <- result{name, t, err}
}

func waitRole(t *testing.T, e *Elector, role string) Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := e.Status()
		if s.Role == role {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("role %q, want %q (reason %q)", s.Role, role, s.Reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two candidates at once: one leads, the other waits and knows who leads;
// a release hands the lock over at once (no lock delay), an invalidated
// session ends the term and hands it over after the lock delay.
func TestOneLeaderThenHandovers(t *testing.T) {
	fake := fakeconsul.New()
	defer fake.Close()
	fp := map[string]string{"alerts.room_cap": "x"}
	a, b := newElector(t, fake, "a", fp, nil), newElector(t, fake, "b", fp, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan result, 2)
	go campaign(ctx, a, "a", results)
	go campaign(ctx, b, "b", results)
	first := <-results
	if first.err != nil {
		t.Fatal(first.err)
	}
	select {
	case r := <-results:
		t.Fatalf("two leaders: %s and %s", first.name, r.name)
	case <-time.After(time.Second):
	}
	lead, wait := a, b
	if first.name == "b" {
		lead, wait = b, a
	}
	if s := waitRole(t, wait, Candidate); s.Leader != first.name {
		t.Errorf("the waiting instance sees leader %q, want %q", s.Leader, first.name)
	}
	if s := lead.Status(); s.Role != Leader {
		t.Errorf("leader's status %+v", s)
	}
	holder, index, _ := fake.KVHolder(key)
	if holder == "" || index != first.term.Index {
		t.Fatalf("lock held by %q at index %d, term %d", holder, index, first.term.Index)
	}

	released := time.Now()
	if err := first.term.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if first.term.Lost.Err() == nil {
		t.Error("a released term is over")
	}
	second := <-results
	if second.err != nil {
		t.Fatal(second.err)
	}
	if took := time.Since(released); took > 3*time.Second {
		t.Errorf("handover after a release took %s: no lock delay applies", took)
	}
	if second.term.Index <= first.term.Index {
		t.Errorf("later term %d not above %d", second.term.Index, first.term.Index)
	}

	// The new leader's session ends (TTL expiry, as Consul would): its term
	// ends with the cause, and the old leader, campaigning again, waits
	// out the lock delay.
	go campaign(ctx, lead, first.name, results)
	waitRole(t, lead, Candidate)
	holder, _, _ = fake.KVHolder(key)
	invalidated := time.Now()
	if !fake.ExpireSession(holder) {
		t.Fatal("no session to expire")
	}
	select {
	case <-second.term.Lost.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the term did not end with its session")
	}
	if cause := context.Cause(second.term.Lost).Error(); !strings.Contains(cause, "another session holds the lock") && !strings.Contains(cause, "invalidated") {
		t.Errorf("cause %q", cause)
	}
	third := <-results
	if third.err != nil {
		t.Fatal(third.err)
	}
	if took := time.Since(invalidated); took < time.Second {
		t.Errorf("took over %s after an invalidation, within the lock delay (1s)", took)
	}
	_ = third.term.Release(t.Context())
}

// A candidate configured otherwise does not contend while the leader
// lives, and says which keys differ; once the leader is gone it leads.
func TestDifferentConfigurationWaits(t *testing.T) {
	fake := fakeconsul.New()
	defer fake.Close()
	a := newElector(t, fake, "a", map[string]string{"alerts.room_cap": "x", "nomad.token": "t"}, nil)
	c := newElector(t, fake, "c", map[string]string{"alerts.room_cap": "y", "nomad.token": "t"}, nil)
	ta, err := a.Campaign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan result, 1)
	go campaign(t.Context(), c, "c", results)
	s := waitRole(t, c, Refusing)
	if s.Leader != "a" || !strings.Contains(s.Reason, "alerts.room_cap") || strings.Contains(s.Reason, "nomad.token") {
		t.Fatalf("status %+v", s)
	}
	if err := ta.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-results:
		if r.err != nil {
			t.Fatal(r.err)
		}
		_ = r.term.Release(t.Context())
	case <-time.After(10 * time.Second):
		t.Fatalf("c did not lead once a was gone: %+v", c.Status())
	}
}

// Consul unreachable: the leader ends its term one TTL after its last
// renewal, whatever the lock's monitor still believes, and says why.
func TestConsulUnreachableEndsTheTerm(t *testing.T) {
	fake := fakeconsul.New()
	defer fake.Close()
	clk := clock.NewManual(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a := newElector(t, fake, "a", nil, clk)
	term, err := a.Campaign(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fake.Stop()
	clk.Advance(9 * time.Second)
	select {
	case <-term.Lost.Done():
		t.Fatalf("ended before one TTL: %v", context.Cause(term.Lost))
	case <-time.After(4 * time.Second): // a renewal failed meanwhile
	}
	clk.Advance(2 * time.Second)
	select {
	case <-term.Lost.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the term outlived one TTL without a renewal")
	}
	if cause := context.Cause(term.Lost).Error(); !strings.Contains(cause, "Consul unreachable") || !strings.Contains(cause, fake.URL) {
		t.Errorf("cause %q does not say Consul at %s is unreachable", cause, fake.URL)
	}
}
