package incidents

import (
	"fmt"
	"time"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("alloc-failed", func() Rule { return AllocFailed{Severity: Critical} })
}

// AllocFailed fires when an allocation Nomad wants running has failed.
type AllocFailed struct {
	Severity Severity
}

func (AllocFailed) Name() string { return "alloc-failed" }

func (r AllocFailed) Evaluate(ev *watchers.Event) []Signal {
	return allocSignals(r.Name(), r.Severity, ev, func(a *watchers.Alloc) *allocProblem {
		if a.ClientStatus != "failed" || !desiredRunning(a) {
			return nil
		}
		t := failedTask(a)
		if t == nil {
			why := a.ClientDescription
			if why == "" {
				why = "failed"
			}
			reason := allocWhere(a) + ": " + why
			return &allocProblem{reason: reason, detail: &Detail{Text: reason}}
		}
		reason := allocWhere(a) + ": " + taskOutcome(t)
		if msg := taskWhy(t); msg != "" {
			reason += " — " + msg
		}
		return &allocProblem{reason: reason, detail: &Detail{Text: reason, Pre: t.StderrTail}}
	})
}

// failedTask is the task that failed the allocation: of its failed tasks,
// the one whose history ends first, as Nomad kills the others after it.
func failedTask(a *watchers.Alloc) *watchers.Task {
	var culprit *watchers.Task
	var end time.Time
	for i := range a.Tasks {
		t := &a.Tasks[i]
		if !t.Failed {
			continue
		}
		if ended := taskEnded(t); culprit == nil || ended.Before(end) {
			culprit, end = t, ended
		}
	}
	return culprit
}

// taskEnded is when the task's history ends (zero without events).
func taskEnded(t *watchers.Task) time.Time {
	if len(t.Events) == 0 {
		return time.Time{}
	}
	return t.Events[len(t.Events)-1].Time
}

// taskOutcome describes how the task's last run ended.
func taskOutcome(t *watchers.Task) string {
	if e := lastTaskEvent(t, "Terminated"); e != nil {
		return "task " + t.Name + " " + exitOf(e)
	}
	return "task " + t.Name + " failed"
}

// exitOf says how a Terminated event ended a task's run.
func exitOf(e *watchers.TaskEvent) string {
	switch {
	case e.OOMKilled:
		return oomKilled
	case e.Signal != 0:
		return fmt.Sprintf("killed by signal %d (exit code %d)", e.Signal, e.ExitCode)
	}
	return fmt.Sprintf("exited with code %d", e.ExitCode)
}

// routineTaskEvents tell the life cycle, not why a task failed.
var routineTaskEvents = map[string]bool{
	"Received": true, "Task Setup": true, "Started": true, "Terminated": true,
	"Restarting": true, "Killing": true, "Killed": true,
}

// taskWhy is the latest telling message of the task's history, e.g. the
// restart policy giving up or a driver error.
func taskWhy(t *watchers.Task) string {
	for i := len(t.Events) - 1; i >= 0; i-- {
		if e := t.Events[i]; !routineTaskEvents[e.Type] && e.Message != "" {
			return e.Message
		}
	}
	return ""
}
