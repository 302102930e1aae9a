package incidents

import "github.com/vigie/vigie/watchers"

// The allocation rules (alloc-failed, alloc-lost, alloc-oom,
// restarts-exhausted) share the key alloc/<namespace>/<job>/<group>, so one
// broken group is one incident whichever of them fires first.

// allocProblem is what an allocation rule found.
type allocProblem struct {
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
	sig := Signal{
		Rule: rule, Key: signalKey("alloc", ns, a.Job, a.Group), Severity: sev,
		Title: a.Job + "/" + a.Group + ": allocations failing",
		Labels: Labels{
			Namespace: ns, Job: a.Job, Group: a.Group, Node: a.NodeName,
			Alloc: a.ID, Deployment: a.DeploymentID,
		},
		At: ev.Time,
	}
	if allocHealthy(a) {
		sig.Status, sig.Reason = Resolved, "allocations healthy again"
		return []Signal{sig}
	}
	p := detect(a)
	if p == nil {
		return nil
	}
	sig.Status, sig.Reason, sig.Detail = Firing, p.reason, p.detail
	return []Signal{sig}
}

// allocHealthy: the allocation runs as desired and passed its deployment's
// health check (or has no deployment to pass), so its group works again.
func allocHealthy(a *watchers.Alloc) bool {
	if a.ClientStatus != "running" || !desiredRunning(a) {
		return false
	}
	if a.DeploymentID != "" && (a.Healthy == nil || !*a.Healthy) {
		return false
	}
	for _, t := range a.Tasks {
		if t.Failed {
			return false
		}
	}
	return true
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
