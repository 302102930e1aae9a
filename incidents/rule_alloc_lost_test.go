package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleAllocLost(t *testing.T) {
	r := AllocLost{Severity: Critical}
	// Nomad marks a lost allocation desired "stop" to replace it.
	lose := func(ev *watchers.Event) {
		ev.Alloc.ClientStatus, ev.Alloc.DesiredStatus = "lost", "stop"
		ev.Alloc.ClientDescription = "alloc is lost since its node is down"
	}
	runEventCases(t, r, []eventCase{
		{
			name: "web lost with its node", index: 62, topic: "Allocation", id: webAllocMoved, mutate: lose,
			want: []Signal{{
				Rule: "alloc-lost", Key: "alloc/default/web/web", Severity: Critical, Status: Firing,
				Title: "web/web: allocations failing", Reason: "alloc 4e41c0d4 on vm lost (node down?)",
				Detail:     &Detail{Text: "alloc 4e41c0d4 on vm lost (node down?) — alloc is lost since its node is down"},
				Labels:     Labels{Namespace: "default", Job: "web", Group: "web", Node: "vm", Alloc: webAllocMoved, Deployment: webDeployMove},
				Occurrence: webAllocMoved + "/lost/0",
			}},
		},
		{name: "failed is not lost", index: 23, topic: "Allocation", id: crasherAlloc},
		{name: "web v1 migrated away", index: 48, topic: "Allocation", id: webAllocV1},
		{
			name: "web healthy", index: 15, topic: "Allocation", id: webAllocV0,
			want: []Signal{webResolved("alloc-lost", webAllocV0, webDeployV0)},
		},
		{
			name: "crasher stopped", index: 36, topic: "Job", id: "crasher",
			want: []Signal{crasherStopped("alloc-lost", "job stopped")},
		},
	})
}
