package incidents

import (
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("consul-check", func() Rule {
		return ConsulCheck{WarningSeverity: Warning, CriticalSeverity: Critical}
	})
}

// ConsulCheck fires while a Consul health check is warning or critical.
// Checks under node or service maintenance resolve instead: the operator
// knows.
type ConsulCheck struct {
	WarningSeverity  Severity
	CriticalSeverity Severity
}

func (ConsulCheck) Name() string { return "consul-check" }

func (r ConsulCheck) Evaluate(ev *watchers.Event) []Signal {
	c := ev.Check
	// The maintenance checks are the operator's own doing.
	if c == nil || maintenanceCheck(c) {
		return nil
	}
	title := "check " + c.Name + " on " + c.Node
	if c.ServiceName != "" {
		title = "check " + c.Name + " (service " + c.ServiceName + ") on " + c.Node
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("check", c.Node, c.CheckID), Title: title,
		Labels: Labels{Node: c.Node, Check: c.CheckID, Service: c.ServiceName}, At: ev.Time,
	}
	switch {
	case c.Maintenance:
		sig.Status, sig.Reason = Resolved, "under maintenance"
		return []Signal{sig}
	case c.Status == "passing":
		sig.Status, sig.Reason = Resolved, "passing"
		return []Signal{sig}
	case c.Status == "warning":
		sig.Severity = r.WarningSeverity
	case c.Status == "critical":
		sig.Severity = r.CriticalSeverity
	default:
		return nil
	}
	sig.Status, sig.Reason = Firing, c.Status
	out := strings.TrimSpace(c.Output)
	if line := firstOutputLine(out); line != "" {
		sig.Reason += ": " + line
		// The whole output goes to the thread when the reason quotes
		// only part of it.
		if line != out {
			sig.Detail = &Detail{Text: sig.Reason, Pre: out}
		}
	}
	return []Signal{sig}
}

// maintenanceCheck: Consul's synthetic check for node or service
// maintenance.
func maintenanceCheck(c *watchers.Check) bool {
	return c.CheckID == "_node_maintenance" || strings.HasPrefix(c.CheckID, "_service_maintenance:")
}
