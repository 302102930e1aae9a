package incidents

import (
	"slices"
	"testing"
)

func TestRuleRegistry(t *testing.T) {
	all := []string{
		"alloc-failed", "alloc-lost", "alloc-oom", "backup-failed", "backup-stale", "backup-verify-failed", "consul-check", "consul-maintenance", "consul-service-empty",
		"deployment-failed", "eval-blocked", "job-stopped", "leader-took-over", "node-down", "node-unschedulable",
		"restarts-exhausted", "source-blind", "source-partial", "source-rewound", "state-lost",
		"stolon-fence-left", "stolon-keeper-unhealthy", "stolon-master-changed", "stolon-no-sentinel-leader", "stolon-phase",
		"stolon-postgres-unhealthy", "stolon-proxy-behind", "stolon-standby-lag", "stolon-sync-standbys", "task-restarting",
	}
	names := func(rules []Rule) []string {
		var out []string
		for _, r := range rules {
			out = append(out, r.Name())
		}
		return out
	}
	rules, err := Rules(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rules); !slices.Equal(got, all) {
		t.Errorf("Rules(nil, nil) = %q, want %q", got, all)
	}
	if !slices.Equal(RuleNames(), all) {
		t.Errorf("RuleNames() = %q, want %q", RuleNames(), all)
	}

	rules, err = Rules([]string{"job-stopped"}, nil)
	if err != nil || slices.Contains(names(rules), "job-stopped") || len(rules) != len(all)-1 {
		t.Errorf("Rules(job-stopped disabled) = %q, %v", names(rules), err)
	}
	if _, err := Rules([]string{"no-such-rule"}, nil); err == nil {
		t.Error("disabling an unknown rule: no error")
	}
	if _, err := Rules(nil, map[string]Severity{"no-such-rule": Info}); err == nil {
		t.Error("overriding the severity of an unknown rule: no error")
	}

	// A severity override applies to firing signals only.
	rules, err = Rules(nil, map[string]Severity{"alloc-failed": Warning})
	if err != nil {
		t.Fatal(err)
	}
	events := loadNomadEvents(t)
	failed := rules[0].Evaluate(nomadEvent(t, events, 23, "Allocation", crasherAlloc))
	healthy := rules[0].Evaluate(nomadEvent(t, events, 15, "Allocation", webAllocV0))
	if len(failed) != 1 || failed[0].Severity != Warning || len(healthy) != 1 || healthy[0].Severity != Critical {
		t.Errorf("alloc-failed overridden to warning: fired %+v, resolved %+v", failed, healthy)
	}
}
