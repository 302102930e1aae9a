package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("alloc-lost", func() Rule { return AllocLost{Severity: Critical} })
}

// AllocLost fires when an allocation is lost with its node. Nomad marks
// lost allocations desired "stop" to replace them, so unlike the other
// allocation rules it does not require them to be wanted.
type AllocLost struct {
	Severity Severity
}

func (AllocLost) Name() string { return "alloc-lost" }

func (r AllocLost) Evaluate(ev *watchers.Event) []Signal {
	return allocSignals(r.Name(), r.Severity, ev, func(a *watchers.Alloc) *allocProblem {
		if a.ClientStatus != "lost" {
			return nil
		}
		reason := allocWhere(a) + " lost (node down?)"
		text := reason
		if a.ClientDescription != "" {
			text += " — " + a.ClientDescription
		}
		return &allocProblem{reason: reason, detail: &Detail{Text: text}}
	})
}
