package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleAllocOOM(t *testing.T) {
	r := AllocOOM{Severity: Critical}
	oom := func(ev *watchers.Event) { lastTaskEvent(&ev.Alloc.Tasks[0], "Terminated").OOMKilled = true }
	fired := crasherSignal("alloc-oom", Firing, "task boom killed: out of memory",
		&Detail{Text: "alloc aeb926df on vm: task boom killed: out of memory"})
	restarting := fired
	restarting.Occurrence = crasherAlloc + "/pending/1" // between the kill and the restart
	runEventCases(t, r, []eventCase{
		{name: "crasher exited 1, oom_killed false", index: 23, topic: "Allocation", id: crasherAlloc},
		{name: "crasher OOM-killed, failed", index: 23, topic: "Allocation", id: crasherAlloc, mutate: oom, want: []Signal{fired}},
		{name: "crasher OOM-killed, restarting", index: 22, topic: "Allocation", id: crasherAlloc, mutate: oom, want: []Signal{restarting}},
		{
			name: "OOM kill in the history of a task running again", index: 22, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) {
				oom(ev)
				ev.Alloc.Tasks[0].State = "running"
			},
		},
		{
			name: "OOM-killed while being replaced", index: 29, topic: "Allocation", id: webAllocV0,
			mutate: oom,
		},
		{
			name: "web healthy", index: 32, topic: "Allocation", id: webAllocV1,
			want: []Signal{webResolved("alloc-oom", webAllocV1, "645eb562-0d71-133a-29f0-bc807225c5c7")},
		},
		{
			name: "crasher stopped", index: 37, topic: "Job", id: "crasher",
			want: []Signal{crasherStopped("alloc-oom", "job stopped")},
		},
	})
}
