package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("stolon-postgres-unhealthy", func() Rule {
		return StolonPostgresUnhealthy{Severity: Critical, StandbySeverity: Warning}
	})
}

// StolonPostgresUnhealthy fires while a healthy keeper's PostgreSQL is
// unhealthy. An unhealthy keeper resolves it: stolon-keeper-unhealthy
// tells that.
type StolonPostgresUnhealthy struct {
	Severity        Severity // the master's PostgreSQL
	StandbySeverity Severity // any other
}

func (StolonPostgresUnhealthy) Name() string { return "stolon-postgres-unhealthy" }

func (r StolonPostgresUnhealthy) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		title := func(uid string) string { return "PostgreSQL of keeper " + uid + " unhealthy" }
		for i := range s.Keepers {
			k := &s.Keepers[i]
			sev := v.keeperSeverity(k, r.Severity, r.StandbySeverity)
			status, reason := Resolved, "PostgreSQL of keeper "+k.UID+" healthy again"
			switch {
			case !k.Healthy:
				reason = "keeper " + k.UID + " itself is unhealthy"
			case k.DB == "":
				reason = "keeper " + k.UID + " has no database"
			case !k.PGHealthy:
				status, reason = Firing, "keeper "+k.UID+" is healthy but its PostgreSQL ("+stolonKeeperDB(k)+") is not"
			}
			v.add(status, sev, v.key("postgres", k.UID), title(k.UID), reason)
		}
		v.goneKeepers(r.StandbySeverity, "postgres", title)
	})
}
