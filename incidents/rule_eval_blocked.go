package incidents

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("eval-blocked", func() Rule { return EvalBlocked{Severity: Warning} })
}

// EvalBlocked fires when the scheduler cannot place a job's allocations,
// and resolves when an evaluation of the job completes with everything
// placed.
type EvalBlocked struct {
	Severity Severity
}

func (EvalBlocked) Name() string { return "eval-blocked" }

func (r EvalBlocked) Evaluate(ev *watchers.Event) []Signal {
	ns := eventNamespace(ev)
	if reason, ended := jobEnded(ev); ended {
		return []Signal{{
			Rule: r.Name(), Key: signalKey("placement", ns, ev.Job.ID), Severity: r.Severity,
			Status: Resolved, Reason: reason, Labels: Labels{Namespace: ns, Job: ev.Job.ID}, At: ev.Time,
		}}
	}
	e := ev.Eval
	if e == nil {
		return nil
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("placement", ns, e.Job), Severity: r.Severity,
		Title: e.Job + ": allocations cannot be placed", Labels: Labels{Namespace: ns, Job: e.Job}, At: ev.Time,
	}
	switch {
	// A complete evaluation with failures placed part of the job and left
	// the rest to a blocked one: both tell the same problem.
	case len(e.Failures) > 0 && (e.Status == "blocked" || e.Status == "complete"):
		why := make([]string, len(e.Failures))
		for i, f := range e.Failures {
			why[i] = placementWhy(f)
		}
		sort.Strings(why)
		sig.Status, sig.Reason = Firing, strings.Join(why, "; ")
		if len(e.Failures) == 1 {
			sig.Labels.Group = e.Failures[0].Group
		}
	case e.Status == "complete":
		sig.Status, sig.Reason = Resolved, "allocations placed"
	default:
		return nil
	}
	return []Signal{sig}
}

// placementWhy explains one group's placement failure like the Nomad CLI
// does, in one line: "group web: memory exhausted on 3 of 3 nodes".
func placementWhy(f watchers.PlacementFailure) string {
	var why, filtered []string
	for _, c := range slices.Sorted(maps.Keys(f.ConstraintFiltered)) {
		filtered = append(filtered, fmt.Sprintf("%d filtered by constraint %s", f.ConstraintFiltered[c], c))
	}
	switch {
	case f.NodesEvaluated == 0 && f.NodesInPool == 0:
		// NodesInPool counts the ready, eligible nodes of the job's pool.
		why = append(why, "no ready and eligible node in the node pool")
	case f.NodesEvaluated == 0:
		why = append(why, "no node eligible for evaluation")
	case f.NodesFiltered >= f.NodesEvaluated:
		s := "no eligible nodes"
		if len(filtered) > 0 {
			s += " (" + strings.Join(filtered, ", ") + ")"
		}
		why = append(why, s)
	default:
		why = append(why, filtered...)
	}
	for _, d := range slices.Sorted(maps.Keys(f.DimensionExhausted)) {
		why = append(why, fmt.Sprintf("%s exhausted on %d of %d nodes", d, f.DimensionExhausted[d], f.NodesEvaluated))
	}
	if len(f.DimensionExhausted) == 0 && f.NodesExhausted > 0 {
		why = append(why, fmt.Sprintf("resources exhausted on %d of %d nodes", f.NodesExhausted, f.NodesEvaluated))
	}
	for _, c := range slices.Sorted(maps.Keys(f.ClassExhausted)) {
		why = append(why, fmt.Sprintf("node class %s exhausted on %d nodes", c, f.ClassExhausted[c]))
	}
	for _, q := range f.QuotaExhausted {
		why = append(why, "quota limit reached: "+q)
	}
	if len(why) == 0 {
		why = append(why, "no node fits")
	}
	unplaced := plural(max(f.Unplaced, 1), "allocation")
	return "group " + f.Group + ": " + unplaced + " not placed — " + strings.Join(why, ", ")
}
