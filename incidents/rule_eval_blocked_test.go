package incidents

import (
	"testing"

	"github.com/vigie/vigie/watchers"
)

func TestRuleEvalBlocked(t *testing.T) {
	r := EvalBlocked{Severity: Warning}
	const blocked = "4fa9b21d-a669-104d-0615-32a927fbfd21"
	web := func(status Status, reason, group string) []Signal {
		return []Signal{{
			Rule: "eval-blocked", Key: "placement/default/web", Severity: Warning, Status: status,
			Title: "web: allocations cannot be placed", Reason: reason,
			Labels: Labels{Namespace: "default", Job: "web", Group: group},
		}}
	}
	fail := func(f watchers.PlacementFailure) func(*watchers.Event) {
		return func(ev *watchers.Event) { ev.Eval.Failures = []watchers.PlacementFailure{f} }
	}
	// During the drain the only node is ineligible: Nomad 1.11.3 reports
	// all counts zero, NodesInPool included.
	drained := web(Firing, "group web: 1 allocation not placed — no ready and eligible node in the node pool", "web")
	runEventCases(t, r, []eventCase{
		{name: "blocked during the drain", index: 45, topic: "Evaluation", id: blocked, want: drained},
		{name: "drain eval complete, rest left to the blocked one", index: 47, topic: "Evaluation", id: "b2cddf64", want: drained},
		{name: "still blocked", index: 53, topic: "Evaluation", id: blocked, want: drained},
		{name: "unblocked and placed", index: 54, topic: "Evaluation", id: blocked, want: web(Resolved, "allocations placed", "")},
		{name: "pending", index: 44, topic: "Evaluation", id: "b2cddf64"},
		{
			name: "memory exhausted", index: 45, topic: "Evaluation", id: blocked,
			mutate: fail(watchers.PlacementFailure{
				Group: "web", Unplaced: 3, NodesEvaluated: 3, NodesExhausted: 3, NodesInPool: 3,
				DimensionExhausted: map[string]int{"memory": 3},
			}),
			want: web(Firing, "group web: 3 allocations not placed — memory exhausted on 3 of 3 nodes", "web"),
		},
		{
			name: "filtered by constraint", index: 45, topic: "Evaluation", id: blocked,
			mutate: fail(watchers.PlacementFailure{
				Group: "web", NodesEvaluated: 3, NodesFiltered: 3, NodesInPool: 3,
				ConstraintFiltered: map[string]int{"${attr.kernel.name} = windows": 3},
			}),
			want: web(Firing, "group web: 1 allocation not placed — no eligible nodes (3 filtered by constraint ${attr.kernel.name} = windows)", "web"),
		},
		{
			name: "partly filtered, rest exhausted", index: 45, topic: "Evaluation", id: blocked,
			mutate: fail(watchers.PlacementFailure{
				Group: "web", NodesEvaluated: 3, NodesFiltered: 1, NodesExhausted: 2, NodesInPool: 3,
				ConstraintFiltered: map[string]int{"${node.class} = gpu": 1},
				ClassExhausted:     map[string]int{"batch": 2},
			}),
			want: web(Firing, "group web: 1 allocation not placed — 1 filtered by constraint ${node.class} = gpu, resources exhausted on 2 of 3 nodes, node class batch exhausted on 2 nodes", "web"),
		},
		{
			name: "quota", index: 45, topic: "Evaluation", id: blocked,
			mutate: fail(watchers.PlacementFailure{Group: "web", NodesEvaluated: 3, NodesInPool: 3, QuotaExhausted: []string{"memory exhausted (1024 > 512)"}}),
			want:   web(Firing, "group web: 1 allocation not placed — quota limit reached: memory exhausted (1024 > 512)", "web"),
		},
		{
			name: "two groups", index: 45, topic: "Evaluation", id: blocked,
			mutate: func(ev *watchers.Event) {
				ev.Eval.Failures = []watchers.PlacementFailure{
					{Group: "web", NodesEvaluated: 2, NodesInPool: 2, NodesExhausted: 2, DimensionExhausted: map[string]int{"cpu": 1, "memory": 2}},
					{Group: "api", NodesInPool: 2},
				}
			},
			want: web(Firing, "group api: 1 allocation not placed — no node eligible for evaluation; group web: 1 allocation not placed — cpu exhausted on 1 of 2 nodes, memory exhausted on 2 of 2 nodes", ""),
		},
		{
			name: "crasher stopped", index: 36, topic: "Job", id: "crasher",
			want: []Signal{{
				Rule: "eval-blocked", Key: "placement/default/crasher", Severity: Warning, Status: Resolved,
				Reason: "job stopped", Labels: Labels{Namespace: "default", Job: "crasher"},
			}},
		},
	})
}
