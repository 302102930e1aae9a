package incidents

import (
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("stolon-proxy-behind", func() Rule { return StolonProxyBehind{Severity: Warning, NoProxySeverity: Critical} })
}

// StolonProxyBehind fires when a stolon-proxy has not routed to the
// current master for the grace period, and when no proxy at all has been
// alive that long: clients cannot reach the master. A proxy resolves when
// it follows again or is gone.
type StolonProxyBehind struct {
	Severity        Severity // a proxy behind
	NoProxySeverity Severity // no proxy alive
}

func (StolonProxyBehind) Name() string { return "stolon-proxy-behind" }

func (r StolonProxyBehind) Evaluate(ev *watchers.Event) []Signal {
	return stolonEvaluate(r.Name(), ev, true, func(v *stolonSignals, s *watchers.Stolon) {
		title := func(uid string) string { return "proxy " + uid + " not routing to the master" }
		for _, p := range s.Proxies {
			key := v.key("proxy", p.UID)
			switch {
			case p.BehindSince.IsZero():
				v.add(Resolved, r.Severity, key, title(p.UID), "proxy "+p.UID+" routes to the master again")
			case v.pastGrace(p.BehindSince):
				v.add(Firing, r.Severity, key, title(p.UID), "proxy "+p.UID+" has not routed to the master, "+
					stolonMember(s.MasterKeeper, s.MasterDB)+", for more than "+shortAge(s.Grace))
			}
		}
		for _, uid := range s.GoneProxies {
			v.add(Resolved, r.Severity, v.key("proxy", uid), title(uid), "proxy "+uid+" gone")
		}
		key, noneTitle := v.key("proxies"), "no stolon-proxy alive"
		switch {
		case s.NoProxySince.IsZero():
			uids := make([]string, len(s.Proxies))
			for i, p := range s.Proxies {
				uids[i] = p.UID
			}
			v.add(Resolved, r.NoProxySeverity, key, noneTitle, "stolon-proxies alive: "+strings.Join(uids, ", "))
		case v.pastGrace(s.NoProxySince):
			v.add(Firing, r.NoProxySeverity, key, noneTitle,
				"no stolon-proxy alive for more than "+shortAge(s.Grace)+", clients cannot reach the master")
		}
	})
}
