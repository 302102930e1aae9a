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
// A check under node or service maintenance is held back, as during a
// drain: posted only if it outlives the maintenance.
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
	sig.Hold = maintenanceHold(c)
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

// maintenanceHold names the maintenance that covers a check: the hold
// reason of its incident, and what the maintenance incident's end
// releases. "" when none covers it.
func maintenanceHold(c *watchers.Check) string {
	switch c.Maintenance {
	case watchers.MaintenanceNode:
		return "maintenance of node " + c.Node
	case watchers.MaintenanceService:
		return "maintenance of service " + c.ServiceName + " on " + c.Node
	}
	return ""
}
