package incidents

import (
	"reflect"
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleConsulServiceEmpty(t *testing.T) {
	r := ConsulServiceEmpty{Severity: Critical}
	svc := func(name string, status Status, reason, failing string) Signal {
		s := Signal{
			Rule: "consul-service-empty", Key: "service/" + name, Severity: Critical, Status: status,
			Title: "service " + name + ": no healthy instance", Reason: reason, Labels: Labels{Service: name},
		}
		if failing != "" {
			s.Detail = &Detail{Text: "failing checks: " + failing}
		}
		return s
	}
	healthy := []Signal{
		svc("nomad", Resolved, "3 of 3 instances passing", ""),
		svc("nomad-client", Resolved, "1 of 1 instances passing", ""),
		svc("web", Resolved, "1 of 1 instances passing", ""),
	}
	all := []string{"nomad", "nomad-client", "web"}
	// set alters the snapshot's check checkID.
	set := func(checks []*watchers.Event, checkID string, f func(*watchers.Check)) {
		for _, ev := range checks {
			if ev.Check.CheckID == checkID {
				f(ev.Check)
			}
		}
	}
	// secondWeb registers another web instance, with the same service ID,
	// on another node.
	secondWeb := func(checks []*watchers.Event, status string) []*watchers.Event {
		for _, ev := range checks {
			if ev.Check.CheckID == webCheck {
				c := *ev.Check
				c.Node, c.Status = "vm2", status
				return append(checks, &watchers.Event{Source: "consul", Topic: "Check", Type: status, Check: &c})
			}
		}
		panic("no web check")
	}
	for _, c := range []struct {
		name  string
		file  string
		known []string
		alter func([]*watchers.Event) []*watchers.Event
		want  []Signal
		now   []string
	}{
		{name: "first snapshot, all passing", file: consulBefore, want: healthy, now: all},
		{
			// Consul counts node checks for every instance on the node
			// (health/service/web lists chatops-ttl): with the demo TTL
			// check critical, ?passing and DNS return no instance at all.
			name: "node check critical", file: consulAfter, known: all, now: all,
			want: []Signal{
				svc("nomad", Firing, "all 3 instances critical", "chatops TTL demo on vm (critical)"),
				svc("nomad-client", Firing, "its only instance is critical", "chatops TTL demo on vm (critical)"),
				svc("web", Firing, "its only instance is critical", "chatops TTL demo on vm (critical)"),
			},
		},
		{
			name: "web check critical", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event {
				set(cs, webCheck, func(c *watchers.Check) { c.Status = "critical" })
				return cs
			},
			want: []Signal{healthy[0], healthy[1], svc("web", Firing, "its only instance is critical", "web-alive on vm (critical)")},
		},
		{
			name: "web check warning", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event {
				set(cs, webCheck, func(c *watchers.Check) { c.Status = "warning" })
				return cs
			},
			want: []Signal{healthy[0], healthy[1], svc("web", Firing, "its only instance is warning", "web-alive on vm (warning)")},
		},
		{
			name: "node dead: serfHealth critical, service checks stale but passing", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event {
				set(cs, "serfHealth", func(c *watchers.Check) { c.Status = "critical" })
				return cs
			},
			want: []Signal{
				svc("nomad", Firing, "all 3 instances critical", "Serf Health Status on vm (critical)"),
				svc("nomad-client", Firing, "its only instance is critical", "Serf Health Status on vm (critical)"),
				svc("web", Firing, "its only instance is critical", "Serf Health Status on vm (critical)"),
			},
		},
		{
			name: "web gone", file: consulBefore, known: all, now: all[:2],
			alter: func(cs []*watchers.Event) []*watchers.Event {
				var out []*watchers.Event
				for _, ev := range cs {
					if ev.Check.ServiceName != "web" {
						out = append(out, ev)
					}
				}
				return out
			},
			want: []Signal{healthy[0], healthy[1], svc("web", Resolved, "deregistered from Consul", "")},
		},
		{
			name: "web under maintenance", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event {
				var id string
				set(cs, webCheck, func(c *watchers.Check) {
					c.Status, c.Maintenance, id = "critical", watchers.MaintenanceService, c.ServiceID
				})
				return append(cs, &watchers.Event{Source: "consul", Topic: "Check", Type: "critical", Check: &watchers.Check{
					Node: "vm", CheckID: "_service_maintenance:" + id, Name: "Service Maintenance Mode", Status: "critical",
					ServiceID: id, ServiceName: "web", Maintenance: watchers.MaintenanceService,
				}})
			},
			want: []Signal{healthy[0], healthy[1], svc("web", Resolved, "all instances under maintenance", "")},
		},
		{
			name: "one of two web instances critical", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event { return secondWeb(cs, "critical") },
			want:  []Signal{healthy[0], healthy[1], svc("web", Resolved, "1 of 2 instances passing", "")},
		},
		{
			name: "two web instances, none passing", file: consulBefore, known: all, now: all,
			alter: func(cs []*watchers.Event) []*watchers.Event {
				set(cs, webCheck, func(c *watchers.Check) { c.Status = "warning" })
				return secondWeb(cs, "critical")
			},
			want: []Signal{healthy[0], healthy[1],
				svc("web", Firing, "none of 2 instances passing (1 critical)", "web-alive on vm (warning), web-alive on vm2 (critical)")},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			checks := loadConsulChecks(t, c.file)
			if c.alter != nil {
				checks = c.alter(checks)
			}
			sigs, now := r.EvaluateSnapshot(checks, c.known)
			assertSignals(t, sigs, c.want)
			if !reflect.DeepEqual(now, c.now) {
				t.Errorf("services = %q, want %q", now, c.now)
			}
		})
	}
	if sigs := r.Evaluate(consulCheck(t, consulAfter, "chatops-ttl")); sigs != nil {
		t.Errorf("Evaluate on one check = %v, want nil", sigs)
	}
}
