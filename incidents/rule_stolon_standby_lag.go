package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("stolon-standby-lag", func() Rule { return StolonStandbyLag{Severity: Warning} })
}

// StolonStandbyLag fires when a standby's received WAL has been more than
// max_lag behind the master's for the grace period: Stolon would not elect
// it. It resolves when the standby is within max_lag again, no longer a
// standby, or removed from the cluster.
type StolonStandbyLag struct {
	Severity Severity
}

func (StolonStandbyLag) Name() string { return "stolon-standby-lag" }

func (r StolonStandbyLag) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		title := func(uid string) string { return "standby " + uid + " lagging" }
		for i := range s.Keepers {
			k := &s.Keepers[i]
			key := v.key("lag", k.UID)
			switch {
			case k.Role != "standby":
				v.add(Resolved, r.Severity, key, title(k.UID), "keeper "+k.UID+" is not a standby: "+stolonKeeperDB(k))
			case k.LagSince.IsZero():
				v.add(Resolved, r.Severity, key, title(k.UID), "within max_lag again: "+stolonBytes(k.Lag)+" behind")
			case v.pastGrace(k.LagSince):
				v.add(Firing, r.Severity, key, title(k.UID), "received WAL "+stolonBytes(k.Lag)+" behind the master for more than "+
					shortAge(s.Grace)+", max_lag "+stolonBytes(s.MaxLag))
			}
		}
		v.goneKeepers(r.Severity, "lag", title)
	})
}
