package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleNodeDown(t *testing.T) {
	r := NodeDown{Severity: Critical, DisconnectedSeverity: Warning}
	node := func(sev Severity, status Status, reason string) []Signal {
		return []Signal{{
			Rule: "node-down", Key: "node/" + vmNodeID, Severity: sev, Status: status,
			Title: "node vm down", Reason: reason, Labels: Labels{Node: "vm"},
		}}
	}
	missed := func(status string) func(*watchers.Event) {
		return func(ev *watchers.Event) { ev.Node.Status, ev.Node.LastEvent = status, "Node heartbeat missed" }
	}
	runEventCases(t, r, []eventCase{
		{name: "registering", index: 8, topic: "Node", id: vmNodeID},
		{name: "ready", index: 9, topic: "Node", id: vmNodeID, want: node(Critical, Resolved, "node vm back")},
		{name: "ready, repeated by an allocation update", index: 14, topic: "Node", id: vmNodeID, want: node(Critical, Resolved, "node vm back")},
		{name: "draining is not down", index: 43, topic: "Node", id: vmNodeID, want: node(Critical, Resolved, "node vm back")},
		{name: "down", index: 9, topic: "Node", id: vmNodeID, mutate: missed("down"), want: node(Critical, Firing, "down — Node heartbeat missed")},
		{
			name: "disconnected", index: 9, topic: "Node", id: vmNodeID, mutate: missed("disconnected"),
			want: node(Warning, Firing, "disconnected — Node heartbeat missed"),
		},
		{
			name: "deregistered while down", index: 9, topic: "Node", id: vmNodeID,
			mutate: func(ev *watchers.Event) {
				missed("down")(ev)
				ev.Type = "NodeDeregistration"
			},
			want: node(Critical, Resolved, "node vm deregistered"),
		},
	})
}
