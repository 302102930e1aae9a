package incidents

import (
	"fmt"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("stolon-sync-standbys", func() Rule { return StolonSyncStandbys{Severity: Warning} })
}

// StolonSyncStandbys fires while the master reports fewer synchronous
// standbys than the spec wants, and resolves when it reports enough or
// synchronous replication is off.
type StolonSyncStandbys struct {
	Severity Severity
}

func (StolonSyncStandbys) Name() string { return "stolon-sync-standbys" }

func (r StolonSyncStandbys) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		status, reason := Resolved, "synchronous replication off"
		if s.SyncWanted > 0 {
			reason = fmt.Sprintf("%s wanted, %d reported", plural(s.SyncWanted, "synchronous standby"), len(s.SyncStandbys))
			if len(s.SyncStandbys) > 0 {
				reason += ": " + strings.Join(s.SyncStandbys, ", ")
			}
			if len(s.SyncStandbys) < s.SyncWanted {
				status = Firing
			}
		}
		v.add(status, r.Severity, v.key("sync"), "synchronous standbys missing", reason)
	})
}
