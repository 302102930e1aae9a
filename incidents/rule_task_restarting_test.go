package incidents

import (
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

const looperAlloc = "5d0c3e7a-91b2-4c6f-a8d4-2e7f0b1c9a66"

// looperEvent is the restart loop's allocation event at index.
func looperEvent(t *testing.T, index uint64) *watchers.Event {
	t.Helper()
	return nomadEvent(t, nomadFrameEvents(t, fakenomad.RestartLoopFrames()), index, "Allocation", looperAlloc)
}

func TestRuleTaskRestarting(t *testing.T) {
	r := TaskRestarting{Severity: Warning, MinRestarts: 2}
	base := Signal{
		Rule: "task-restarting", Key: "alloc/default/looper/looper", Severity: Warning,
		Title:  "looper/looper: allocations failing",
		Labels: Labels{Namespace: "default", Job: "looper", Group: "looper", Node: "vm", Alloc: looperAlloc},
	}
	running := base
	running.Status, running.Reason, running.Settle = Resolved, "allocation 5d0c3e7a running", true
	second := base
	second.Status, second.Title, second.Occurrence = Firing, "looper/looper: task boom restarting", looperAlloc+"/pending/2"
	second.Reason = "task boom restarted 2 times, last exited with code 1 — Task restarting in 16.102399185s"
	second.Detail = &Detail{Text: "alloc 5d0c3e7a on vm: " + second.Reason}
	third := second
	third.Occurrence, third.Detail = looperAlloc+"/pending/3", nil
	third.Reason = "task boom restarted 3 times, last exited with code 1 — Exceeded allowed attempts, applying a delay - Task restarting in 29m45.338192044s"
	for _, c := range []struct {
		name  string
		index uint64
		want  []Signal
	}{
		{"first run: healthy once it lasts", 80, []Signal{running}},
		{"one restart is no loop", 81, nil},
		{"second restart: a loop, told once in the thread", 83, []Signal{second}},
		{"running between two crashes: healthy once it lasts", 84, []Signal{running}},
		{"third restart, now delayed: the same incident, updated", 85, []Signal{third}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assertSignals(t, r.Evaluate(looperEvent(t, c.index)), c.want)
		})
	}
	t.Run("a task that gave up is restarts-exhausted's", func(t *testing.T) {
		ev := looperEvent(t, 85)
		ev.Alloc.Tasks[0].State, ev.Alloc.Tasks[0].Failed = "dead", true
		assertSignals(t, r.Evaluate(ev), nil)
	})
}

// A task crash-looping is one incident, opened before its allocation ever
// fails, updated in place at each restart; a run of a moment (248 ms) or
// of 40 s between two crashes resolves nothing; it resolves once the task
// stays up for the settle time.
func TestRestartLoopIsOneIncident(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		builtinRules(t)(c)
		c.SettleAfter = 2 * time.Minute
	})
	frames := nomadFrameEvents(t, fakenomad.RestartLoopFrames())
	feed := func(index uint64) {
		t.Helper()
		var evs []watchers.Event
		for _, ev := range frames {
			if ev.Index == index {
				evs = append(evs, ev)
			}
		}
		if err := f.e.Consume(t.Context(), watchers.Batch{Cursor: watchers.Cursor{Name: "nomad", Index: index}, Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	for i, step := range []struct {
		index uint64
		after time.Duration
	}{{80, 0}, {81, 248 * time.Millisecond}, {82, 16 * time.Second}, {83, 40 * time.Second}, {84, 16 * time.Second}, {85, 40 * time.Second}} {
		f.clock.Advance(step.after)
		feed(step.index)
		if i == 4 {
			feed(step.index) // replayed: nothing new
		}
		f.advance(time.Second)
	}
	roots, _, threads := f.messages("!ops")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "🟠 WARNING · looper/looper: task boom restarting") {
		t.Fatalf("%d messages: %v", len(roots), roots)
	}
	in := f.incident("alloc/default/looper/looper")
	if in.State != store.IncidentOpen || in.Events != 2 || !strings.Contains(in.Reason, "restarted 3 times") || !in.SettleAt.IsZero() {
		t.Fatalf("after the third restart: %+v", in)
	}
	// One detail, as the loop started; no resolution, no "firing again".
	if len(threads) != 1 || !strings.Contains(threads[0].Plain, "restarted 2 times") {
		t.Fatalf("thread: %v", threads)
	}
	f.advance(5 * time.Second)
	_, edits, _ := f.messages("!ops")
	if len(edits) == 0 || !strings.Contains(edits[len(edits)-1].Plain, "restarted 3 times, last exited with code 1 — Exceeded allowed attempts, applying a delay") ||
		!strings.Contains(edits[len(edits)-1].Plain, "2 events") {
		t.Fatalf("the message is not updated in place: %v", edits)
	}

	// Up again: healthy only once it has lasted.
	feed(86)
	f.advance(time.Minute)
	if in := f.incident("alloc/default/looper/looper"); in.State != store.IncidentOpen {
		t.Fatalf("resolved after a minute up: %+v", in)
	}
	f.advance(time.Minute)
	in = f.incident("alloc/default/looper/looper")
	if in.State != store.IncidentResolved || in.Resolution != "allocation 5d0c3e7a running for 2m00s" {
		t.Fatalf("after the settle time: %+v", in)
	}
	if _, _, threads := f.messages("!ops"); len(threads) != 2 || !strings.Contains(threads[1].Plain, "Resolved after") {
		t.Fatalf("thread after the resolution: %v", threads)
	}
}
