package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleRestartsExhausted(t *testing.T) {
	r := RestartsExhausted{Severity: Critical}
	reason := "task boom: restarts exhausted — " + crasherWhy
	runEventCases(t, r, []eventCase{
		{
			name: "crasher gave up", index: 23, topic: "Allocation", id: crasherAlloc,
			want: []Signal{crasherSignal("restarts-exhausted", Firing, reason, &Detail{Text: "alloc aeb926df on vm: " + reason})},
		},
		{name: "crasher restarting once", index: 22, topic: "Allocation", id: crasherAlloc},
		{
			name: "gave up on a job being stopped", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) { ev.Alloc.DesiredStatus = "stop" },
		},
		{name: "web v0 killed for the update", index: 46, topic: "Allocation", id: webAllocV0},
		{
			name: "web healthy", index: 15, topic: "Allocation", id: webAllocV0,
			want: []Signal{webResolved("restarts-exhausted", webAllocV0, webDeployV0)},
		},
		{
			name: "crasher purged", index: 36, topic: "Job", id: "crasher", mutate: purge,
			want: []Signal{crasherStopped("restarts-exhausted", "job purged")},
		},
	})
}
