package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("restarts-exhausted", func() Rule { return RestartsExhausted{Severity: Critical} })
}

// RestartsExhausted fires when Nomad gave up restarting a task: its
// restart policy allows no more attempts.
type RestartsExhausted struct {
	Severity Severity
}

func (RestartsExhausted) Name() string { return "restarts-exhausted" }

func (r RestartsExhausted) Evaluate(ev *watchers.Event) []Signal {
	return allocSignals(r.Name(), r.Severity, ev, func(a *watchers.Alloc) *allocProblem {
		if !desiredRunning(a) {
			return nil
		}
		for i := range a.Tasks {
			t := &a.Tasks[i]
			if t.State != "dead" {
				continue
			}
			if e := lastTaskEvent(t, "Not Restarting"); e != nil {
				reason := "task " + t.Name + ": restarts exhausted"
				if e.Message != "" {
					reason += " — " + e.Message
				}
				return &allocProblem{reason: reason, detail: &Detail{Text: allocWhere(a) + ": " + reason}}
			}
		}
		return nil
	})
}
