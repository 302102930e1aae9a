package incidents

import "github.com/vigie/vigie/watchers"

func init() {
	register("node-unschedulable", func() Rule { return NodeUnschedulable{Severity: Warning} })
}

// NodeUnschedulable fires while a node drains or is marked ineligible, and
// resolves when it is eligible again. Nomad 1.11 reports eligibility
// changes as NodeDrain events, and repeats the node's state in other
// events: each is judged on the state it carries.
type NodeUnschedulable struct {
	Severity Severity
}

func (NodeUnschedulable) Name() string { return "node-unschedulable" }

func (r NodeUnschedulable) Evaluate(ev *watchers.Event) []Signal {
	n := ev.Node
	// A registering node is not yet eligible: that is no finding.
	if n == nil || n.Status == "initializing" {
		return nil
	}
	name := nomadNodeName(n)
	sig := Signal{
		Rule: r.Name(), Key: signalKey("node-sched", n.ID), Severity: r.Severity,
		Title: "node " + name + " unschedulable", Labels: Labels{Node: name}, At: ev.Time,
	}
	switch {
	case ev.Type == "NodeDeregistration":
		sig.Status, sig.Reason = Resolved, "node "+name+" deregistered"
	case n.Draining:
		sig.Status, sig.Reason = Firing, "draining"
		if n.LastEvent != "" {
			sig.Reason += " — " + n.LastEvent
		}
	case n.Eligibility == "ineligible":
		sig.Status, sig.Reason = Firing, "marked ineligible for scheduling"
	case n.Eligibility == "eligible":
		sig.Status, sig.Reason = Resolved, "eligible again"
	default:
		return nil
	}
	return []Signal{sig}
}
