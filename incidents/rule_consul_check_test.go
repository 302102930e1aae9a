package incidents

import (
	"strings"
	"testing"

	"github.com/vigie/vigie/watchers"
)

const (
	consulBefore = "consul-health-state-any-before.json"     // chatops-ttl passing
	consulAfter  = "consul-health-state-any-blocking-1.json" // chatops-ttl critical
	webCheck     = "_nomad-check-da884b9ce3171c30ebdcc868196e4801d70d13ba"
)

// consulCheck is the check of a captured snapshot.
func consulCheck(t *testing.T, file, checkID string) *watchers.Event {
	t.Helper()
	for _, ev := range loadConsulChecks(t, file) {
		if ev.Check.CheckID == checkID {
			return ev
		}
	}
	t.Fatalf("no check %s in %s", checkID, file)
	return nil
}

func TestRuleConsulCheck(t *testing.T) {
	r := ConsulCheck{WarningSeverity: Warning, CriticalSeverity: Critical}
	ttl := func(sev Severity, status Status, reason string, detail *Detail) []Signal {
		return []Signal{{
			Rule: "consul-check", Key: "check/vm/chatops-ttl", Severity: sev, Status: status,
			Title: "check chatops TTL demo on vm", Reason: reason, Detail: detail,
			Labels: Labels{Node: "vm", Check: "chatops-ttl"},
		}}
	}
	web := func(sev Severity, status Status, reason string, detail *Detail) []Signal {
		return []Signal{{
			Rule: "consul-check", Key: "check/vm/" + webCheck, Severity: sev, Status: status,
			Title: "check web-alive (service web) on vm", Reason: reason, Detail: detail,
			Labels: Labels{Node: "vm", Check: webCheck, Service: "web"},
		}}
	}
	long := strings.Repeat("x", 300)
	for _, c := range []struct {
		name, file, check string
		mutate            func(*watchers.Check)
		want              []Signal
	}{
		{name: "TTL passing", file: consulBefore, check: "chatops-ttl", want: ttl(0, Resolved, "passing", nil)},
		{
			name: "TTL expired", file: consulAfter, check: "chatops-ttl",
			want: ttl(Critical, Firing, "critical: TTL expired (last output before timeout follows): heartbeat ok", nil),
		},
		{
			name: "serfHealth passing", file: consulAfter, check: "serfHealth",
			want: []Signal{{
				Rule: "consul-check", Key: "check/vm/serfHealth", Status: Resolved, Title: "check Serf Health Status on vm",
				Reason: "passing", Labels: Labels{Node: "vm", Check: "serfHealth"},
			}},
		},
		{name: "service check passing, no output", file: consulAfter, check: webCheck, want: web(0, Resolved, "passing", nil)},
		{
			name: "service check warning, several lines of output", file: consulAfter, check: webCheck,
			mutate: func(c *watchers.Check) {
				c.Status, c.Output = "warning", "\n  HTTP 429 Too Many Requests \nretry later\n"
			},
			want: web(Warning, Firing, "warning: HTTP 429 Too Many Requests",
				&Detail{Text: "warning: HTTP 429 Too Many Requests", Pre: "HTTP 429 Too Many Requests \nretry later"}),
		},
		{
			name: "long output cut", file: consulAfter, check: webCheck,
			mutate: func(c *watchers.Check) { c.Status, c.Output = "critical", long },
			want:   web(Critical, Firing, "critical: "+long[:199]+"…", &Detail{Text: "critical: " + long[:199] + "…", Pre: long}),
		},
		{
			name: "critical under node maintenance: held", file: consulAfter, check: "chatops-ttl",
			mutate: func(c *watchers.Check) { c.Maintenance = watchers.MaintenanceNode },
			want: func() []Signal {
				s := ttl(Critical, Firing, "critical: TTL expired (last output before timeout follows): heartbeat ok", nil)
				s[0].Hold = "maintenance of node vm"
				return s
			}(),
		},
		{
			name: "warning under service maintenance: held", file: consulAfter, check: webCheck,
			mutate: func(c *watchers.Check) { c.Status, c.Maintenance = "warning", watchers.MaintenanceService },
			want: func() []Signal {
				s := web(Warning, Firing, "warning", nil)
				s[0].Hold = "maintenance of service web on vm"
				return s
			}(),
		},
		{
			name: "passing under maintenance", file: consulAfter, check: webCheck,
			mutate: func(c *watchers.Check) { c.Maintenance = watchers.MaintenanceService },
			want:   web(0, Resolved, "passing", nil),
		},
		{
			name: "node maintenance check itself", file: consulAfter, check: "chatops-ttl",
			mutate: func(c *watchers.Check) {
				c.CheckID, c.Name, c.Output = "_node_maintenance", "Node Maintenance Mode", "Maintenance mode is enabled for this node"
			},
		},
		{
			name: "service maintenance check itself", file: consulAfter, check: webCheck,
			mutate: func(c *watchers.Check) {
				c.CheckID, c.Status = "_service_maintenance:"+c.ServiceID, "critical"
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ev := consulCheck(t, c.file, c.check)
			if c.mutate != nil {
				c.mutate(ev.Check)
			}
			assertSignals(t, r.Evaluate(ev), c.want)
		})
	}
}
