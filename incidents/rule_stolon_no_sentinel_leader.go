package incidents

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("stolon-no-sentinel-leader", func() Rule { return StolonNoSentinelLeader{Severity: Critical} })
}

// StolonNoSentinelLeader fires while no live sentinel leads the cluster:
// nobody would elect a new master if the current one failed. It resolves
// when one leads again.
type StolonNoSentinelLeader struct {
	Severity Severity
}

func (StolonNoSentinelLeader) Name() string { return "stolon-no-sentinel-leader" }

func (r StolonNoSentinelLeader) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		key, title := v.key("sentinel-leader"), "no sentinel leader"
		if s.LeaderAlive {
			v.add(Resolved, r.Severity, key, title, "sentinel "+s.Leader+" leads")
			return
		}
		alive := fmt.Sprintf("%d alive: %s", len(s.Sentinels), strings.Join(s.Sentinels, ", "))
		var reason string
		switch {
		case len(s.Sentinels) == 0 && s.Leader != "":
			reason = "the sentinel-leader key still names " + s.Leader + " but no sentinel is alive"
		case len(s.Sentinels) == 0:
			reason = "no sentinel is alive"
		case s.Leader == "":
			reason = "no sentinel holds the sentinel-leader key (" + alive + ")"
		case slices.Contains(s.Sentinels, s.Leader):
			reason = "the sentinel-leader key names " + s.Leader + ", but no session holds it (" + alive + ")"
		default:
			reason = "the sentinel-leader key names " + s.Leader + ", which is not alive (" + alive + ")"
		}
		v.add(Firing, r.Severity, key, title, reason+"; no master would be elected if the master failed")
	})
}
