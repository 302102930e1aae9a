package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("stolon-master-changed", func() Rule { return StolonMasterChanged{Severity: Warning} })
}

// StolonMasterChanged tells the room when a Stolon cluster's master
// changed (a sentinel's failover, a manual one), once. A failover by
// Vigie is left out: its own message tells it.
type StolonMasterChanged struct {
	Severity Severity
}

func (StolonMasterChanged) Name() string { return "stolon-master-changed" }

func (r StolonMasterChanged) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, false, func(v *stolonSignals, s *watchers.Stolon) {
		if s.PreviousMasterKeeper == "" || s.Failover {
			return
		}
		reason := stolonMember(s.MasterKeeper, s.MasterDB) + " is the master now"
		if s.Timeline != 0 {
			reason += fmt.Sprintf(", on timeline %d", s.Timeline)
		}
		title := "master changed from " + stolonMember(s.PreviousMasterKeeper, s.PreviousMasterDB) +
			" to " + stolonMember(s.MasterKeeper, s.MasterDB)
		sig := v.add(Notice, r.Severity, v.key("master"), title, reason)
		// The same change told again (a redelivered event) is posted once.
		sig.Occurrence = "master " + s.PreviousMasterDB + " -> " + s.MasterDB
	})
}
