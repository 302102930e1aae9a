package incidents

import (
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("consul-maintenance", func() Rule { return ConsulMaintenance{Severity: Info} })
}

// ConsulMaintenance tells the room when a node or a service instance is
// put in Consul maintenance, with the reason given, and when it ends. The
// checks it covers are held meanwhile (see ConsulCheck).
type ConsulMaintenance struct {
	Severity Severity
}

func (ConsulMaintenance) Name() string { return "consul-maintenance" }

// Consul's reasons when none was given (agent/agent.go).
const (
	consulDefaultNodeMaint    = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	consulDefaultServiceMaint = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

func (r ConsulMaintenance) Evaluate(ev *watchers.Event) []Signal {
	c := ev.Check
	if c == nil || !maintenanceCheck(c) {
		return nil
	}
	reason := strings.TrimSpace(c.Notes)
	if reason == "" || reason == consulDefaultNodeMaint || reason == consulDefaultServiceMaint {
		reason = "no reason given"
	}
	sig := Signal{
		Rule: r.Name(), Severity: r.Severity, Status: Firing, Reason: "reason: " + reason,
		Labels: Labels{Node: c.Node, Check: c.CheckID, Service: c.ServiceName}, At: ev.Time,
	}
	if c.CheckID == "_node_maintenance" {
		sig.Key, sig.Title = signalKey(maintenanceKeyPrefix, c.Node), "node "+c.Node+" in maintenance"
		sig.Releases = maintenanceHold(&watchers.Check{Node: c.Node, Maintenance: watchers.MaintenanceNode})
	} else {
		sig.Key, sig.Title = signalKey(maintenanceKeyPrefix, c.Node, c.ServiceID), "service "+c.ServiceName+" on "+c.Node+" in maintenance"
		sig.Releases = maintenanceHold(&watchers.Check{Node: c.Node, ServiceName: c.ServiceName, Maintenance: watchers.MaintenanceService})
	}
	return []Signal{sig}
}

// maintenanceKeyPrefix starts the keys of maintenance incidents; they end
// when their check is gone from a snapshot.
const maintenanceKeyPrefix = "maintenance"
