package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("alloc-oom", func() Rule { return AllocOOM{Severity: Critical} })
}

// AllocOOM fires when a task of an allocation was killed for exceeding its
// memory.
type AllocOOM struct {
	Severity Severity
}

func (AllocOOM) Name() string { return "alloc-oom" }

func (r AllocOOM) Evaluate(ev *watchers.Event) []Signal {
	return allocSignals(r.Name(), r.Severity, ev, func(a *watchers.Alloc) *allocProblem {
		if !desiredRunning(a) {
			return nil
		}
		for i := range a.Tasks {
			t := &a.Tasks[i]
			// Nomad resends the last 10 task events with every update: an
			// OOM kill counts only while the task has not run again since.
			if t.State == "running" {
				continue
			}
			if e := lastTaskEvent(t, "Terminated"); e != nil && e.OOMKilled {
				reason := oomReason(t.Name)
				return &allocProblem{reason: reason, detail: &Detail{Text: allocWhere(a) + ": " + reason}}
			}
		}
		return nil
	})
}

const oomKilled = "killed: out of memory"

func oomReason(task string) string {
	return "task " + task + " " + oomKilled
}
