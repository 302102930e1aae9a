package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("stolon-fence-left", func() Rule { return StolonFenceLeft{Severity: Critical} })
}

// StolonFenceLeft fires while a fence Vigie set on a Stolon cluster has
// not been lifted (Vigie crashed in the middle of a failover, or could not
// reach a server since), with what the fence is; it resolves when no
// fence is left. It is never held: it is about a failover itself.
type StolonFenceLeft struct {
	Severity Severity
}

func (StolonFenceLeft) Name() string { return "stolon-fence-left" }

func (r StolonFenceLeft) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, false, func(v *stolonSignals, s *watchers.Stolon) {
		status, reason := Resolved, "the fence is lifted"
		if s.FenceLeft != "" {
			status, reason = Firing, s.FenceLeft
		}
		v.add(status, r.Severity, v.key("fence"), "fence left by Vigie", reason)
	})
}
