package incidents

import "testing"

func TestRuleNodeUnschedulable(t *testing.T) {
	r := NodeUnschedulable{Severity: Warning}
	node := func(status Status, reason string) []Signal {
		return []Signal{{
			Rule: "node-unschedulable", Key: "node-sched/" + vmNodeID, Severity: Warning, Status: status,
			Title: "node vm unschedulable", Reason: reason, Labels: Labels{Node: "vm"},
		}}
	}
	draining := node(Firing, "draining — Node drain strategy set")
	ineligible := node(Firing, "marked ineligible for scheduling")
	eligible := node(Resolved, "eligible again")
	// The capture's drain, then eligibility off and on; in Nomad 1.11.3
	// all arrive as NodeDrain events.
	runEventCases(t, r, []eventCase{
		{name: "registering", index: 8, topic: "Node", id: vmNodeID},
		{name: "ready", index: 9, topic: "Node", id: vmNodeID, want: eligible},
		{name: "drain set", index: 43, topic: "Node", id: vmNodeID, want: draining},
		{name: "draining, repeated by an allocation update", index: 48, topic: "Node", id: vmNodeID, want: draining},
		{name: "drain complete leaves the node ineligible", index: 49, topic: "Node", id: vmNodeID, want: ineligible},
		{name: "eligible after the drain", index: 51, topic: "Node", id: vmNodeID, want: eligible},
		{name: "marked ineligible", index: 56, topic: "Node", id: vmNodeID, want: ineligible},
		{name: "ineligible, repeated by an allocation update", index: 57, topic: "Node", id: vmNodeID, want: ineligible},
		{name: "marked eligible", index: 58, topic: "Node", id: vmNodeID, want: eligible},
	})
}
