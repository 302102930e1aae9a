package incidents

import (
	"strconv"

	"github.com/vigie/vigie/watchers"
)

// The allocation rules (alloc-failed, alloc-lost, alloc-oom,
// restarts-exhausted, task-restarting) share the key
// alloc/<namespace>/<job>/<group>, so one broken group is one incident
// whichever of them fires first.

// allocProblem is what an allocation rule found.
type allocProblem struct {
	title  string // "" for the family's "<job>/<group>: allocations failing"
	reason string
	detail *Detail
}

// allocSignals runs one allocation rule: detect says what is wrong with an
// allocation, if anything. Every rule of the family also emits the
// family's resolutions, so the incident closes whichever rules are enabled.
func allocSignals(rule string, sev Severity, ev *watchers.Event, detect func(*watchers.Alloc) *allocProblem) []Signal {
	ns := eventNamespace(ev)
	if reason, ended := jobEnded(ev); ended {
		// A Job event names no group. By contract with the engine, a
		// Resolved signal whose key ends in "/*" resolves every open
		// incident under that prefix; only job stop/purge uses it.
		return []Signal{{
			Rule: rule, Key: signalKey("alloc", ns, ev.Job.ID) + "/*", Severity: sev, Status: Resolved,
			Reason: reason, Labels: Labels{Namespace: ns, Job: ev.Job.ID}, At: ev.Time,
		}}
	}
	a := ev.Alloc
	if a == nil {
		return nil
	}
	sig, ok := allocFinding(a, detect)
	if !ok {
		return nil
	}
	// Built only for a finding: a failing allocation is a finding for one
	// rule of the family, and nothing for the others.
	sig.Rule, sig.Key, sig.Severity, sig.At = rule, signalKey("alloc", ns, a.Job, a.Group), sev, ev.Time
	if sig.Title == "" {
		sig.Title = a.Job + "/" + a.Group + ": allocations failing"
	}
	sig.Labels = Labels{
		Namespace: ns, Job: a.Job, Group: a.Group, Node: a.NodeName,
		Alloc: a.ID, Deployment: a.DeploymentID,
	}
	return []Signal{sig}
}

// allocFinding is what an allocation rule finds in an allocation: the
// status, reason, detail, title (if not the family's) and occurrence of
// its signal.
func allocFinding(a *watchers.Alloc, detect func(*watchers.Alloc) *allocProblem) (Signal, bool) {
	if reason, settle, ok := allocHealthy(a); ok {
		return Signal{Status: Resolved, Reason: reason, Settle: settle}, true
	}
	p := detect(a)
	if p == nil {
		return Signal{}, false
	}
	// Nomad repeats an allocation's state in several events (its update,
	// the deployment's health, plan results): one state, one event.
	return Signal{Status: Firing, Reason: p.reason, Detail: p.detail, Title: p.title, Occurrence: allocOccurrence(a)}, true
}

// allocOccurrence names an allocation's state: failed, lost, or pending
// after its tasks' nth restart.
func allocOccurrence(a *watchers.Alloc) string {
	restarts := 0
	for _, t := range a.Tasks {
		restarts += t.Restarts
	}
	return a.ID + "/" + a.ClientStatus + "/" + strconv.Itoa(restarts)
}

// allocHealthy tells whether the allocation shows its group works again:
// it passed its deployment's health check; or, without one to pass, it runs
// (which must settle: a task up for a moment between two crashes is not
// healthy) or it completed as a batch allocation does.
func allocHealthy(a *watchers.Alloc) (reason string, settle, ok bool) {
	if !desiredRunning(a) {
		return "", false, false
	}
	for _, t := range a.Tasks {
		if t.Failed {
			return "", false, false
		}
	}
	switch {
	case a.ClientStatus == "running" && a.DeploymentID != "":
		if a.Healthy != nil && *a.Healthy {
			return "allocation " + nomadShortID(a.ID) + " healthy in deployment " + nomadShortID(a.DeploymentID), false, true
		}
	case a.ClientStatus == "running":
		return "allocation " + nomadShortID(a.ID) + " running", true, true
	case a.ClientStatus == "complete":
		return "allocation " + nomadShortID(a.ID) + " completed", false, true
	}
	return "", false, false
}

// desiredRunning: Nomad still wants the allocation. Allocations it stops or
// evicts (replaced by a deployment, migrated by a drain, job stopped) end
// as they may, e.g. exit code 130 after SIGINT: that is no failure.
func desiredRunning(a *watchers.Alloc) bool {
	return a.DesiredStatus == "run"
}

// allocWhere names an allocation and its node for a thread line.
func allocWhere(a *watchers.Alloc) string {
	node := a.NodeName
	if node == "" {
		node = nomadShortID(a.NodeID)
	}
	return "alloc " + nomadShortID(a.ID) + " on " + node
}

// lastTaskEvent is the task's latest event of type typ, or nil.
func lastTaskEvent(t *watchers.Task, typ string) *watchers.TaskEvent {
	for i := len(t.Events) - 1; i >= 0; i-- {
		if t.Events[i].Type == typ {
			return &t.Events[i]
		}
	}
	return nil
}
