package incidents

import (
	"sync/atomic"
	"testing"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// countingRule counts the check events it evaluates.
type countingRule struct {
	checkRule
	n *atomic.Int64
}

func (r countingRule) Evaluate(ev *watchers.Event) []Signal {
	if ev.Check != nil {
		r.n.Add(1)
	}
	return r.checkRule.Evaluate(ev)
}

// snapshotBatch is a snapshot of checks; as the watcher does, an
// unchanged check is the same Check as before.
func snapshotBatch(unchanged bool, checks ...*watchers.Check) watchers.Batch {
	var evs []watchers.Event
	for _, c := range checks {
		evs = append(evs, watchers.Event{Source: "consul", Topic: "Check", Type: c.Status, Unchanged: unchanged, Check: c})
	}
	return watchers.Batch{Snapshot: true, Cursor: watchers.Cursor{Name: "consul", Index: 50}, Events: evs}
}

// Unchanged checks of a snapshot are not evaluated again, yet still count
// as present: their incidents are not taken for deregistered. An engine
// with no memory of them evaluates them.
func TestSnapshotSkipsUnchangedChecks(t *testing.T) {
	var evaluated atomic.Int64
	f := newFixture(t, func(c *Config) { c.Rules = []Rule{countingRule{n: &evaluated}} })
	a := &watchers.Check{Node: "vm", CheckID: "a", Status: "critical", Output: "down"}
	b := &watchers.Check{Node: "vm", CheckID: "b", Status: "passing"}
	consume := func(e *Engine, batch watchers.Batch) {
		t.Helper()
		if err := e.Consume(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	consume(f.e, snapshotBatch(false, a, b))
	if got := evaluated.Load(); got != 2 {
		t.Fatalf("first snapshot: %d checks evaluated, want 2", got)
	}

	// The same two, unchanged, and a new failing one: only that is evaluated.
	c := &watchers.Check{Node: "vm", CheckID: "c", Status: "critical", Output: "down too"}
	batch := snapshotBatch(true, a, b)
	batch.Events = append(batch.Events, watchers.Event{Source: "consul", Topic: "Check", Type: "critical", Check: c})
	consume(f.e, batch)
	if got := evaluated.Load(); got != 3 {
		t.Fatalf("second snapshot: %d checks evaluated in all, want 3", got)
	}
	for _, key := range []string{"check/vm/a", "check/vm/c"} {
		if in := f.incident(key); in.State != store.IncidentOpen {
			t.Errorf("%s: %s (%s), want open", key, in.State, in.Resolution)
		}
	}

	// a is gone: resolved as deregistered, though nothing was evaluated.
	consume(f.e, snapshotBatch(true, b, c))
	if in := f.incident("check/vm/a"); in.State != store.IncidentResolved {
		t.Errorf("check/vm/a after it left the snapshot: %s, want resolved", in.State)
	}
	if got := evaluated.Load(); got != 3 {
		t.Errorf("third snapshot: %d checks evaluated in all, want 3", got)
	}

	// A new engine on the same store has no memory of the keys: it
	// evaluates what the watcher calls unchanged.
	cold := New(f.e.cfg, f.st)
	consume(cold, snapshotBatch(true, b, c))
	if got := evaluated.Load(); got != 5 {
		t.Errorf("cold engine: %d checks evaluated in all, want 5", got)
	}
	if in := f.incident("check/vm/c"); in.State != store.IncidentOpen {
		t.Errorf("check/vm/c after the cold engine: %s, want open", in.State)
	}
}
