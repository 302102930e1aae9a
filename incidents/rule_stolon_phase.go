package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("stolon-phase", func() Rule { return StolonPhase{Severity: Warning} })
}

// StolonPhase fires while a Stolon cluster is in another phase than
// normal (initializing), and resolves when it is normal.
type StolonPhase struct {
	Severity Severity
}

func (StolonPhase) Name() string { return "stolon-phase" }

func (r StolonPhase) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		status, reason := Resolved, "cluster phase normal"
		switch s.Phase {
		case "normal":
		case "":
			status, reason = Firing, "cluster phase unknown"
		default:
			status, reason = Firing, "cluster phase "+s.Phase
		}
		v.add(status, r.Severity, v.key("phase"), "cluster not in its normal phase", reason)
	})
}
