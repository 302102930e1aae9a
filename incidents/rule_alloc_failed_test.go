package incidents

import (
	"os"
	"testing"

	"github.com/vigie/vigie/watchers"
)

const crasherWhy = `Exceeded allowed attempts 1 in interval 1m0s and mode is "fail"`

// crasherSignal is the signal of an allocation rule on the crasher group;
// a firing one is the occurrence of the captured failure (after 1 restart).
func crasherSignal(rule string, status Status, reason string, detail *Detail) Signal {
	s := Signal{
		Rule: rule, Key: "alloc/default/crasher/crasher", Severity: Critical, Status: status,
		Title: "crasher/crasher: allocations failing", Reason: reason, Detail: detail,
		Labels: Labels{Namespace: "default", Job: "crasher", Group: "crasher", Node: "vm", Alloc: crasherAlloc, Deployment: crasherDeploy},
	}
	if status == Firing {
		s.Occurrence = crasherAlloc + "/failed/1"
	}
	return s
}

// webResolved is an allocation rule resolving the web group on a healthy
// allocation: at once when its deployment says so, after settling when
// it has no deployment to pass.
func webResolved(rule, alloc, deployment string) Signal {
	s := Signal{
		Rule: rule, Key: "alloc/default/web/web", Severity: Critical, Status: Resolved,
		Title: "web/web: allocations failing", Reason: "allocation " + alloc[:8] + " healthy in deployment " + nomadShortID(deployment),
		Labels: Labels{Namespace: "default", Job: "web", Group: "web", Node: "vm", Alloc: alloc, Deployment: deployment},
	}
	if deployment == "" {
		s.Reason, s.Settle = "allocation "+alloc[:8]+" running", true
	}
	return s
}

// crasherStopped is an allocation rule resolving all of crasher's groups.
func crasherStopped(rule, reason string) Signal {
	return Signal{
		Rule: rule, Key: "alloc/default/crasher/*", Severity: Critical, Status: Resolved, Reason: reason,
		Labels: Labels{Namespace: "default", Job: "crasher"},
	}
}

// purge turns the capture's JobDeregistered event into a purge, which
// carries no job.
func purge(ev *watchers.Event) { ev.Job = &watchers.Job{ID: ev.Job.ID, Purged: true} }

func TestRuleAllocFailed(t *testing.T) {
	stderr, err := os.ReadFile("testdata/alloc-crasher-stderr.txt")
	if err != nil {
		t.Fatal(err)
	}
	r := AllocFailed{Severity: Critical}
	failed := "alloc aeb926df on vm: task boom exited with code 1 — " + crasherWhy
	runEventCases(t, r, []eventCase{
		{
			name: "crasher failed, with the stderr the watcher fetched", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) { ev.Alloc.Tasks[0].StderrTail = string(stderr) },
			want:   []Signal{crasherSignal("alloc-failed", Firing, failed, &Detail{Text: failed, Pre: "crashing on purpose\ncrashing on purpose\n"})},
		},
		{
			name: "crasher failed, stderr unreadable", index: 23, topic: "Allocation", id: crasherAlloc,
			want: []Signal{crasherSignal("alloc-failed", Firing, failed, &Detail{Text: failed})},
		},
		{
			name: "crasher failed by an OOM kill", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) { lastTaskEvent(&ev.Alloc.Tasks[0], "Terminated").OOMKilled = true },
			want: []Signal{crasherSignal("alloc-failed", Firing,
				"alloc aeb926df on vm: task boom killed: out of memory — "+crasherWhy,
				&Detail{Text: "alloc aeb926df on vm: task boom killed: out of memory — " + crasherWhy})},
		},
		{
			name: "killed by a signal", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) {
				e := lastTaskEvent(&ev.Alloc.Tasks[0], "Terminated")
				e.ExitCode, e.Signal = 137, 9
			},
			want: []Signal{crasherSignal("alloc-failed", Firing,
				"alloc aeb926df on vm: task boom killed by signal 9 (exit code 137) — "+crasherWhy,
				&Detail{Text: "alloc aeb926df on vm: task boom killed by signal 9 (exit code 137) — " + crasherWhy})},
		},
		{
			name: "the failed task is the one that ended first", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) {
				boom := ev.Alloc.Tasks[0]
				sidecar := watchers.Task{Name: "a-sidecar", State: "dead", Failed: true, Events: []watchers.TaskEvent{
					{Type: "Sibling Task Failed", Time: taskEnded(&boom).Add(1), Message: "Task's sibling \"boom\" failed"},
				}}
				ev.Alloc.Tasks = []watchers.Task{sidecar, boom}
			},
			want: []Signal{crasherSignal("alloc-failed", Firing, failed, &Detail{Text: failed})},
		},
		{
			name: "failed without task detail", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) { ev.Alloc.Tasks = nil },
			want: func() []Signal {
				s := crasherSignal("alloc-failed", Firing, "alloc aeb926df on vm: Failed tasks", &Detail{Text: "alloc aeb926df on vm: Failed tasks"})
				s.Occurrence = crasherAlloc + "/failed/0"
				return []Signal{s}
			}(),
		},
		{name: "crasher restarting once is no failure yet", index: 22, topic: "Allocation", id: crasherAlloc},
		{
			name: "failed allocation of a stopped job", index: 23, topic: "Allocation", id: crasherAlloc,
			mutate: func(ev *watchers.Event) { ev.Alloc.DesiredStatus = "stop" },
		},
		{name: "web v0 replaced by the v1 deployment (exit 130, SIGINT)", index: 29, topic: "Allocation", id: webAllocV0},
		{name: "web v1 marked for migration by the drain", index: 46, topic: "Allocation", id: webAllocV1},
		{name: "web v1 migrated away", index: 48, topic: "Allocation", id: webAllocV1},
		{name: "web v1 running, health not yet known", index: 30, topic: "Allocation", id: webAllocV1},
		{
			// A batch allocation that completes shows its group works.
			name: "backup dispatch complete", index: 42, topic: "Allocation", id: "adccfa08",
			want: []Signal{{
				Rule: "alloc-failed", Key: "alloc/default/backup%2Fdispatch-1795705868-d94dd8a4/backup", Severity: Critical,
				Status: Resolved, Title: "backup/dispatch-1795705868-d94dd8a4/backup: allocations failing", Reason: "allocation adccfa08 completed",
				Labels: Labels{Namespace: "default", Job: "backup/dispatch-1795705868-d94dd8a4", Group: "backup", Node: "vm", Alloc: "adccfa08-da66-6043-8759-c9d851fef242"},
			}},
		},
		{
			name: "web v0 healthy", index: 15, topic: "Allocation", id: webAllocV0,
			want: []Signal{webResolved("alloc-failed", webAllocV0, webDeployV0)},
		},
		{
			name: "migrated web healthy", index: 62, topic: "Allocation", id: webAllocMoved,
			want: []Signal{webResolved("alloc-failed", webAllocMoved, webDeployMove)},
		},
		{
			name: "healthy but being replaced resolves nothing", index: 27, topic: "Allocation", id: webAllocV0,
		},
		{
			name: "running without deployment", index: 57, topic: "Allocation", id: webAllocMoved,
			mutate: func(ev *watchers.Event) { ev.Alloc.DeploymentID = "" },
			want:   []Signal{webResolved("alloc-failed", webAllocMoved, "")},
		},
		{
			name: "crasher stopped", index: 36, topic: "Job", id: "crasher",
			want: []Signal{crasherStopped("alloc-failed", "job stopped")},
		},
		{
			name: "crasher purged", index: 36, topic: "Job", id: "crasher", mutate: purge,
			want: []Signal{crasherStopped("alloc-failed", "job purged")},
		},
		{name: "web registered", index: 26, topic: "Job", id: "web"},
		{
			name: "dispatched child: the job ID's slash is escaped", index: 42, topic: "Allocation", id: "adccfa08",
			mutate: func(ev *watchers.Event) {
				ev.Alloc.ClientStatus = "failed"
				ev.Alloc.Tasks[0].Failed = true
				lastTaskEvent(&ev.Alloc.Tasks[0], "Terminated").ExitCode = 3
			},
			want: []Signal{{
				Rule: "alloc-failed", Key: "alloc/default/backup%2Fdispatch-1795705868-d94dd8a4/backup", Severity: Critical,
				Status: Firing, Title: "backup/dispatch-1795705868-d94dd8a4/backup: allocations failing",
				Reason:     "alloc adccfa08 on vm: task backup exited with code 3",
				Detail:     &Detail{Text: "alloc adccfa08 on vm: task backup exited with code 3"},
				Labels:     Labels{Namespace: "default", Job: "backup/dispatch-1795705868-d94dd8a4", Group: "backup", Node: "vm", Alloc: "adccfa08-da66-6043-8759-c9d851fef242"},
				Occurrence: "adccfa08-da66-6043-8759-c9d851fef242/failed/0",
			}},
		},
	})
}

// The signal carries the time the source gave the event.
func TestRuleAllocFailedTime(t *testing.T) {
	ev := nomadEvent(t, loadNomadEvents(t), 23, "Allocation", crasherAlloc)
	sigs := AllocFailed{Severity: Critical}.Evaluate(ev)
	if len(sigs) != 1 || !sigs[0].At.Equal(ev.Time) || ev.Time.IsZero() {
		t.Fatalf("At = %v, want the event's time %v", sigs, ev.Time)
	}
}
