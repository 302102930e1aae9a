package incidents

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// statusNames spells statuses in test expectations.
var statusNames = map[Status]string{Firing: "firing", Resolved: "resolved", Notice: "notice"}

// TestRuleCapture runs the whole Nomad capture through every rule: the
// crasher fails and is stopped, the web deployments succeed, its
// replacements during the v1 deployment and the drain do not alert, the
// drain and the eligibility toggles fire and resolve, and so does the
// blocked evaluation.
func TestRuleCapture(t *testing.T) {
	rules, err := Rules(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	// The course of each key, repeats folded: what the engine makes of it.
	course := map[string][]string{}
	for _, ev := range loadNomadEvents(t) {
		for _, r := range rules {
			for _, s := range r.Evaluate(&ev) {
				status := statusNames[s.Status]
				got[fmt.Sprintf("%-19s %-8s %s", s.Rule, status, s.Key)] = true
				if c := course[s.Key]; len(c) == 0 || c[len(c)-1] != status {
					course[s.Key] = append(c, status)
				}
			}
		}
	}
	// The allocation family resolves on the backup dispatch completing and
	// the web allocations healthy, and on the crasher stopped.
	var family []string
	for _, r := range []string{"alloc-failed", "alloc-lost", "alloc-oom", "restarts-exhausted", "task-restarting"} {
		for _, key := range []string{"backup%2Fdispatch-1795705868-d94dd8a4/backup", "crasher/*", "web/web"} {
			family = append(family, fmt.Sprintf("%-19s %-8s alloc/default/%s", r, "resolved", key))
		}
	}
	want := append(family,
		"alloc-failed        firing   alloc/default/crasher/crasher",
		"deployment-failed   firing   deployment/default/crasher",
		"deployment-failed   resolved deployment/default/crasher",
		"deployment-failed   resolved deployment/default/web",
		"eval-blocked        firing   placement/default/web",
		"eval-blocked        resolved placement/default/backup%2Fdispatch-1795705868-d94dd8a4",
		"eval-blocked        resolved placement/default/crasher",
		"eval-blocked        resolved placement/default/web",
		"job-stopped         notice   job/default/crasher",
		"node-down           resolved node/"+vmNodeID,
		"node-unschedulable  firing   node-sched/"+vmNodeID,
		"node-unschedulable  resolved node-sched/"+vmNodeID,
		"restarts-exhausted  firing   alloc/default/crasher/crasher",
	)
	slices.Sort(want)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("signals of the capture:\n got %q\nwant %q", keys, want)
	}
	wantCourse := map[string][]string{
		"alloc/default/backup%2Fdispatch-1795705868-d94dd8a4/backup": {"resolved"},
		"alloc/default/crasher/crasher":                              {"firing"},
		"alloc/default/crasher/*":                                    {"resolved"},
		"alloc/default/web/web":                                      {"resolved"},
		"deployment/default/crasher":                                 {"firing", "resolved"},
		"deployment/default/web":                                     {"resolved"},
		"job/default/crasher":                                        {"notice"},
		"node/" + vmNodeID:                                           {"resolved"},
		// drain on, drain complete (still ineligible), eligible,
		// ineligible, eligible
		"node-sched/" + vmNodeID:                                  {"resolved", "firing", "resolved", "firing", "resolved"},
		"placement/default/backup%2Fdispatch-1795705868-d94dd8a4": {"resolved"},
		"placement/default/crasher":                               {"resolved"},
		"placement/default/web":                                   {"resolved", "firing", "resolved"},
	}
	if !reflect.DeepEqual(course, wantCourse) {
		t.Errorf("course of the keys:\n got %q\nwant %q", course, wantCourse)
	}
}
