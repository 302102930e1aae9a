package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("stolon-keeper-unhealthy", func() Rule {
		return StolonKeeperUnhealthy{Severity: Critical, StandbySeverity: Warning}
	})
}

// StolonKeeperUnhealthy fires while the sentinel judges a keeper
// unhealthy, and resolves when it is healthy again or removed from the
// cluster.
type StolonKeeperUnhealthy struct {
	Severity        Severity // the master's keeper
	StandbySeverity Severity // any other keeper
}

func (StolonKeeperUnhealthy) Name() string { return "stolon-keeper-unhealthy" }

func (r StolonKeeperUnhealthy) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		title := func(uid string) string { return "keeper " + uid + " unhealthy" }
		for i := range s.Keepers {
			k := &s.Keepers[i]
			sev := v.keeperSeverity(k, r.Severity, r.StandbySeverity)
			if k.Healthy {
				v.add(Resolved, sev, v.key("keeper", k.UID), title(k.UID), "keeper "+k.UID+" healthy again")
				continue
			}
			v.add(Firing, sev, v.key("keeper", k.UID), title(k.UID),
				"the sentinel judges keeper "+k.UID+" unhealthy ("+stolonKeeperDB(k)+")")
		}
		v.goneKeepers(r.StandbySeverity, "keeper", title)
	})
}
