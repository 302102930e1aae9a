package incidents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// A pass that fails leaves the memo as it was: what it wrote was rolled
// back, so the next pass must not see it.
func TestMemoForgetsAFailedPass(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("fire:k1:down") // k1 in the memo, open
	boom := errors.New("boom")
	err := f.e.write(t.Context(), func(p *pass) error {
		in, found, err := p.latestIncident(t.Context(), "k1")
		if err != nil || !found {
			t.Fatalf("k1: %v, %v", found, err)
		}
		in.State, in.Reason = store.IncidentResolved, "rolled back"
		if err := p.save(t.Context(), &in); err != nil {
			return err
		}
		if err := p.save(t.Context(), &store.Incident{Key: "k2", Rule: "scripted", State: store.IncidentOpen}); err != nil {
			return err
		}
		if err := p.setFact(t.Context(), factDrain, "vm", "1"); err != nil {
			return err
		}
		if _, draining, _ := p.fact(t.Context(), factDrain, "vm"); !draining {
			t.Error("a pass does not see the fact it set")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("write: %v", err)
	}
	err = f.e.write(t.Context(), func(p *pass) error {
		in, found, err := p.latestIncident(t.Context(), "k1")
		if err != nil || !found || in.State != store.IncidentOpen || in.Reason != "down" {
			t.Errorf("k1 after the failed pass: %+v, %v, %v", in, found, err)
		}
		if _, found, err := p.latestIncident(t.Context(), "k2"); err != nil || found {
			t.Errorf("k2 after the failed pass: found %v, %v", found, err)
		}
		if _, draining, err := p.fact(t.Context(), factDrain, "vm"); err != nil || draining {
			t.Errorf("drain fact after the failed pass: %v, %v", draining, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The memo hands out copies: changing the slices of an incident a pass
// read does not change what the memo holds.
func TestMemoHandsOutCopies(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("fire:k1:down")
	f.feed("resolve:k1")
	f.feed("fire:k1:down") // reopened: a state change
	read := func() store.Incident {
		var in store.Incident
		if err := f.e.write(t.Context(), func(p *pass) error {
			var err error
			in, _, err = p.latestIncident(t.Context(), "k1")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return in
	}
	in := read()
	if len(in.Changes) == 0 {
		t.Fatal("an open incident without its state change")
	}
	in.Changes[0] = -1
	if again := read(); again.Changes[0] == -1 {
		t.Errorf("the memo's incident changed with a copy: %+v", again)
	}
}

// The memo agrees with the store after a run of firing, resolving and
// reopening: an engine started afresh on the same store (empty memo)
// decides as the warm one would.
func TestMemoAgreesWithTheStore(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 30 {
		f.feed("fire:k:down", "resolve:k", "fire:j:down")
		f.clock.Advance(time.Duration(i) * time.Second)
	}
	check := func(e *Engine) (store.Incident, store.Incident) {
		var k, j store.Incident
		if err := e.write(t.Context(), func(p *pass) error {
			var err error
			if k, _, err = p.latestIncident(context.Background(), "k"); err != nil {
				return err
			}
			j, _, err = p.latestIncident(context.Background(), "j")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return k, j
	}
	wk, wj := check(f.e)
	cold := New(f.e.cfg, f.st)
	ck, cj := check(cold)
	for _, pair := range [][2]store.Incident{{wk, ck}, {wj, cj}} {
		w, c := pair[0], pair[1]
		if w.ID != c.ID || w.State != c.State || w.Events != c.Events || w.Reason != c.Reason || len(w.Changes) != len(c.Changes) ||
			w.Occurrences != c.Occurrences || !w.UpdatedAt.Equal(c.UpdatedAt) {
			t.Errorf("memo %+v\nstore %+v", w, c)
		}
	}
}

// An incident flapping for long remembers a bounded history, and says
// "at least" that many changes.
func TestFlapHistoryIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	for range 200 {
		f.feed("fire:k:down")
		f.clock.Advance(time.Second)
		f.feed("resolve:k")
		f.clock.Advance(time.Second)
	}
	f.feed("fire:k:down")
	in := f.incident("k")
	if !in.Flapping || len(in.Changes) != maxFlapHistory {
		t.Fatalf("flapping %v with %d changes remembered, want %d", in.Flapping, len(in.Changes), maxFlapHistory)
	}
	f.advance(time.Minute) // the owed edit
	_, edits, _ := f.messages("!ops")
	if len(edits) == 0 || !strings.Contains(edits[len(edits)-1].Plain, "at least 64 state changes") {
		t.Fatalf("last edit does not say the history was cut:\n%v", edits)
	}
}

// A stopped job's allocation incidents resolve at every stop, though the
// memo spares the look when it knows none is live: a job run again, that
// fails again, is resolved by its next stop, in the same pass or later.
func TestStoppedJobResolvesAfterTheMemoKnewNoneLive(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	failed := func(id string) watchers.Event {
		return watchers.Event{Source: "nomad", Topic: "Allocation", Type: "AllocationUpdated", Namespace: "default",
			Alloc: &watchers.Alloc{ID: id, Job: "web", Group: "g", NodeName: "vm", ClientStatus: "failed", DesiredStatus: "run",
				Tasks: []watchers.Task{{Name: "t", State: "dead", Failed: true}}}}
	}
	stopped := watchers.Event{Source: "nomad", Topic: "Job", Type: "JobDeregistered", Namespace: "default",
		Job: &watchers.Job{ID: "web", Status: "dead", Stop: true}}
	const key = "alloc/default/web/g"
	f.consume(failed("a1"), stopped, stopped) // the second stop finds none live
	if in := f.incident(key); in.State != store.IncidentResolved {
		t.Fatalf("after the first stop: %s", in.State)
	}
	f.consume(failed("a2"), stopped) // in one pass: failed again, stopped again
	if in := f.incident(key); in.State != store.IncidentResolved || in.Events < 1 {
		t.Fatalf("after the second stop: %s", in.State)
	}
	f.consume(stopped)
	f.consume(failed("a3")) // a later pass
	if in := f.incident(key); in.State != store.IncidentOpen {
		t.Fatalf("failed again: %s", in.State)
	}
	f.consume(stopped)
	if in := f.incident(key); in.State != store.IncidentResolved {
		t.Fatalf("after the third stop: %s (the memo said none live)", in.State)
	}
}

// An incident remembers its maxOccurrences newest occurrences: one of
// them told again counts nothing, an older one counts again.
func TestOccurrencesAreBounded(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	failed := func(n int) watchers.Event {
		return watchers.Event{Source: "nomad", Topic: "Allocation", Type: "AllocationUpdated", Namespace: "default",
			Alloc: &watchers.Alloc{ID: fmt.Sprint("a", n), Job: "web", Group: "g", NodeName: "vm", ClientStatus: "failed", DesiredStatus: "run",
				Tasks: []watchers.Task{{Name: "t", State: "dead", Failed: true}}}}
	}
	const key, n = "alloc/default/web/g", maxOccurrences + 8
	for i := range n {
		f.consume(failed(i))
	}
	f.consume(failed(n - maxOccurrences)) // the oldest remembered
	if in := f.incident(key); in.Events != n {
		t.Fatalf("%d events after %d failures told once and one again", in.Events, n)
	}
	f.consume(failed(n - maxOccurrences - 1)) // forgotten
	if in := f.incident(key); in.Events != n+1 {
		t.Fatalf("%d events: a forgotten failure not counted", in.Events)
	}
}

func TestHasLine(t *testing.T) {
	for _, c := range []struct {
		text, line string
		want       bool
	}{
		{"b", "b", true}, {"a\nb\nc", "b", true}, {"a\nbb\nb", "b", true}, {"b\na", "b", true},
		{"", "b", false}, {"abc", "b", false}, {"ab\ncb", "b", false}, {"a\nbb", "b", false},
	} {
		if got := hasLine(c.text, c.line); got != c.want {
			t.Errorf("hasLine(%q, %q) = %v", c.text, c.line, got)
		}
	}
}

// A snapshot pass learns which keys under a first segment ever had an
// incident and answers the others without a query; what any pass inserts
// later, or what a failed pass inserted, is still told right.
func TestNeverHadFollowsInserts(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("fire:check/old:down", "ok:check/old")
	snapshotPass := func(fn func(p *pass) error) error {
		return f.e.write(t.Context(), func(p *pass) error {
			p.snapshotKeys = map[*watchers.Check][]string{}
			return fn(p)
		})
	}
	latest := func(p *pass, key string) bool {
		t.Helper()
		_, found, err := p.latestIncident(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		return found
	}
	err := snapshotPass(func(p *pass) error {
		if !latest(p, "check/old") || latest(p, "check/new") {
			t.Error("first snapshot: check/old had an incident, check/new none")
		}
		if p.keysUnder["check/"] == nil {
			t.Error("the keys under check/ were not read in one query")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Inserted by a pass that fails: not kept; by one that commits: kept.
	boom := errors.New("boom")
	if err := f.e.write(t.Context(), func(p *pass) error {
		if err := p.save(t.Context(), &store.Incident{Key: "check/gone", Rule: "scripted", State: store.IncidentOpen}); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	f.feed("fire:check/later:down")
	err = snapshotPass(func(p *pass) error {
		if !latest(p, "check/later") {
			t.Error("an incident inserted after the keys were read is found")
		}
		if latest(p, "check/gone") {
			t.Error("an incident of a failed pass is found")
		}
		if err := p.save(t.Context(), &store.Incident{Key: "check/here", Rule: "scripted", State: store.IncidentOpen}); err != nil {
			return err
		}
		delete(p.latest, "check/here")
		if !latest(p, "check/here") {
			t.Error("an incident this pass inserted is found")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
