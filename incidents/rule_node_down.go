package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("node-down", func() Rule {
		return NodeDown{Severity: Critical, DisconnectedSeverity: Warning}
	})
}

// NodeDown fires when a Nomad client node is down or disconnected, and
// resolves when it is ready again.
type NodeDown struct {
	Severity             Severity // status down
	DisconnectedSeverity Severity // status disconnected: its allocations may come back
}

func (NodeDown) Name() string { return "node-down" }

func (r NodeDown) Evaluate(ev *watchers.Event) []Signal {
	n := ev.Node
	if n == nil {
		return nil
	}
	name := nomadNodeName(n)
	sig := Signal{
		Rule: r.Name(), Key: signalKey("node", n.ID), Severity: r.Severity,
		Title: "node " + name + " down", Labels: Labels{Node: name}, At: ev.Time,
	}
	switch {
	case ev.Type == "NodeDeregistration":
		sig.Status, sig.Reason = Resolved, "node "+name+" deregistered"
	case n.Status == "ready":
		sig.Status, sig.Reason = Resolved, "node "+name+" back"
	case n.Status == "down":
		sig.Status, sig.Reason = Firing, nodeStatusReason(n)
	case n.Status == "disconnected":
		sig.Status, sig.Severity, sig.Reason = Firing, r.DisconnectedSeverity, nodeStatusReason(n)
	default:
		return nil
	}
	return []Signal{sig}
}

// nomadNodeName is the node's name, or its short ID when it has none.
func nomadNodeName(n *watchers.Node) string {
	if n.Name != "" {
		return n.Name
	}
	return nomadShortID(n.ID)
}

// nodeStatusReason is the status with the node's latest event, e.g.
// "down — Node heartbeat missed".
func nodeStatusReason(n *watchers.Node) string {
	if n.LastEvent == "" {
		return n.Status
	}
	return n.Status + " — " + n.LastEvent
}
