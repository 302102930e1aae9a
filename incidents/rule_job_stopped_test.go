package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleJobStopped(t *testing.T) {
	r := JobStopped{Severity: Info}
	notice := func(title, reason string) []Signal {
		return []Signal{{
			Rule: "job-stopped", Key: "job/default/crasher", Severity: Info, Status: Notice,
			Title: title, Reason: reason, Labels: Labels{Namespace: "default", Job: "crasher"},
		}}
	}
	runEventCases(t, r, []eventCase{
		{name: "crasher stopped", index: 36, topic: "Job", id: "crasher", want: notice("Job crasher stopped", "stopped at version 1")},
		{name: "crasher purged", index: 36, topic: "Job", id: "crasher", mutate: purge, want: notice("Job crasher purged", "purged")},
		{name: "stopped job's later evaluation", index: 37, topic: "Job", id: "crasher"},
		{name: "web registered", index: 26, topic: "Job", id: "web"},
		{
			name: "dispatched child deregistered", index: 42, topic: "Job", id: "backup/dispatch",
			mutate: func(ev *watchers.Event) {
				ev.Type = "JobDeregistered"
				ev.Job.Stop = true
			},
		},
	})
}
