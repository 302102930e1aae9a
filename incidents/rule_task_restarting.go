package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("task-restarting", func() Rule { return TaskRestarting{Severity: Warning, MinRestarts: 2} })
}

// TaskRestarting fires when a task keeps restarting, before its allocation
// ever fails (a restart policy in "delay" mode never fails it): one
// incident whose message says the restart count and the last exit code.
// It resolves when the allocation has run for a while (see the engine's
// settle time), or the job stops.
type TaskRestarting struct {
	Severity    Severity
	MinRestarts int // restarts before it fires
}

func (TaskRestarting) Name() string { return "task-restarting" }

func (r TaskRestarting) Evaluate(ev *watchers.Event) []Signal {
	return allocSignals(r.Name(), r.Severity, ev, func(a *watchers.Alloc) *allocProblem {
		if !desiredRunning(a) {
			return nil
		}
		for i := range a.Tasks {
			t := &a.Tasks[i]
			restart := lastTaskEvent(t, "Restarting")
			// Between a crash and the next start; a task that gave up is
			// restarts-exhausted's.
			if t.Restarts < r.MinRestarts || t.State == "running" || t.Failed || restart == nil || restart != lastEvent(t) {
				continue
			}
			reason := fmt.Sprintf("task %s restarted %d times", t.Name, t.Restarts)
			if end := lastTaskEvent(t, "Terminated"); end != nil {
				reason += ", last " + exitOf(end)
			}
			if restart.Message != "" {
				reason += " — " + restart.Message
			}
			p := &allocProblem{title: a.Job + "/" + a.Group + ": task " + t.Name + " restarting", reason: reason}
			// The thread tells the loop once, as it starts, with its stderr.
			if t.Restarts == r.MinRestarts {
				p.detail = &Detail{Text: allocWhere(a) + ": " + reason, Pre: t.StderrTail}
			}
			return p
		}
		return nil
	})
}

// lastEvent is the task's latest event, or nil.
func lastEvent(t *watchers.Task) *watchers.TaskEvent {
	if len(t.Events) == 0 {
		return nil
	}
	return &t.Events[len(t.Events)-1]
}
