package stolon

import (
	"errors"
	"strings"
	"testing"
)

// failedChecks lists the texts of the checks that failed.
func failedChecks(p *Plan) []string {
	var out []string
	for _, c := range p.Checks {
		if !c.OK {
			out = append(out, c.Text)
		}
	}
	return out
}

func hasCheck(p *Plan, ok bool, text string) bool {
	for _, c := range p.Checks {
		if c.OK == ok && strings.Contains(c.Text, text) {
			return true
		}
	}
	return false
}

// planFrom on the captured states: what the keys alone allow (the
// servers' own checks need PostgreSQL).
func TestPlanFromCaptures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		state   string
		ready   bool
		elected string   // the keeper Stolon would elect, "" for none
		passed  []string // checks that passed, by a part of their text
		failed  []string // the checks that failed, all of them
	}{
		{"normal", true, "keeper1",
			[]string{`cluster phase "normal"`, "sentinel f6db1c81 leads", "master keeper0 (db d51919e0, 127.0.0.1:25433) healthy", "Stolon would elect keeper1 (db 0e651c76), 0 B behind in WAL received"}, nil},
		// Stolon sees no lag when replay is paused: only the servers' check catches it.
		{"lagging", true, "keeper1", []string{"Stolon would elect keeper1"}, nil},
		{"sync", true, "keeper1", []string{"Stolon would elect keeper1"}, nil},
		// The plan does not look at proxies: with none alive it is ready.
		{"proxy-down", true, "keeper1", []string{"sentinel 81375632 leads"}, nil},
		{"no-sentinel", false, "keeper1", []string{"Stolon would elect keeper1"},
			[]string{"no sentinel alive: nobody would act on forceFail"}},
		{"standby-down", false, "", nil,
			[]string{"no standby Stolon would elect (keeper1: keeper keeper1 unhealthy): it would fail the master for nothing and elect it again"}},
		{"lagging-walrcv-stopped", false, "", nil,
			[]string{"no standby Stolon would elect (keeper1: 57881744 bytes behind, beyond maxStandbyLag (1232896))"}},
		{"no-eligible-standby", false, "", []string{"master keeper1 (db 0e651c76, 127.0.0.1:25434) healthy"},
			[]string{"no standby Stolon would elect (keeper0: 57105960 bytes behind"}},
		{"failover", false, "", nil,
			[]string{"no standby Stolon would elect (keeper0: its keeper has not applied its latest spec (converging))"}},
		{"failover-02", false, "keeper1", []string{"master keeper0 (db d51919e0, 127.0.0.1:25433) healthy"},
			[]string{"keeper keeper0 already has forceFail set: a failover is under way"}},
		{"failover-06", false, "", []string{"master keeper1 (db 0e651c76, 127.0.0.1:25434) healthy"},
			[]string{"keeper0: not a standby (role master)"}},
	}
	for _, tt := range tests {
		t.Run(tt.state, func(t *testing.T) {
			t.Parallel()
			st := capState(t, tt.state)
			c := &Cluster{Name: "main"}
			plan, master := c.planFrom(st)
			if plan.Ready() != tt.ready {
				t.Errorf("Ready() = %v, want %v; failed: %q", plan.Ready(), tt.ready, failedChecks(plan))
			}
			if master == nil || master != st.Data.MasterDB() {
				t.Fatalf("master %v, want the master db", master)
			}
			if plan.Cluster != "main" || plan.Leader != st.Leader || plan.MasterKeeper != st.Data.MasterKeeper() || plan.MasterDB != master.UID || plan.MasterAddr != master.Address() {
				t.Errorf("plan %s leader %q master %s/%s at %s", plan.Cluster, plan.Leader, plan.MasterKeeper, plan.MasterDB, plan.MasterAddr)
			}
			switch e := plan.Elected(); {
			case tt.elected == "" && e != nil:
				t.Errorf("elected %s, want none", e.DB.Spec.KeeperUID)
			case tt.elected != "" && (e == nil || e.DB.Spec.KeeperUID != tt.elected):
				t.Errorf("elected %v, want %s", e, tt.elected)
			}
			if len(plan.Eligible)+len(plan.Others) != len(st.Candidates()) {
				t.Errorf("eligible %d + others %d, candidates %d", len(plan.Eligible), len(plan.Others), len(st.Candidates()))
			}
			for _, o := range plan.Others {
				if o.Reason == "" {
					t.Errorf("%s among the others without a reason", o.DB.Spec.KeeperUID)
				}
			}
			for _, p := range tt.passed {
				if !hasCheck(plan, true, p) {
					t.Errorf("no passed check saying %q in %+v", p, plan.Checks)
				}
			}
			failed := failedChecks(plan)
			if len(failed) != len(tt.failed) {
				t.Errorf("failed checks %q, want %q", failed, tt.failed)
			}
			for _, f := range tt.failed {
				if !hasCheck(plan, false, f) {
					t.Errorf("no failed check saying %q in %q", f, failed)
				}
			}

			err := error(&RefusedError{Plan: plan})
			msg := err.Error()
			if !strings.HasPrefix(msg, "failover of main refused: ") {
				t.Errorf("refusal %q", msg)
			}
			for _, f := range failed {
				if !strings.Contains(msg, f) {
					t.Errorf("refusal %q does not say %q", msg, f)
				}
			}
			for _, c := range plan.Checks {
				if c.OK && strings.Contains(msg, c.Text) {
					t.Errorf("refusal %q lists the passed check %q", msg, c.Text)
				}
			}
		})
	}
}

// Edits of the normal capture, each refused by one check.
func TestPlanFromRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(t *testing.T, doc map[string]any)
		state  func(st *State)
		failed []string
		master bool // planFrom names a master
	}{
		{"phase initializing", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "cluster", "status")["phase"] = "initializing"
		}, nil, []string{`cluster phase "initializing"`}, true},
		{"no phase", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "cluster", "status"), "phase")
		}, nil, []string{`cluster phase ""`}, true},
		{"master unknown", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "cluster", "status")["master"] = "0badc0de"
		}, nil, []string{`no master known (cluster.status.master "0badc0de" has no db)`}, false},
		{"no master, initializing, synchronous", func(t *testing.T, doc map[string]any) {
			capObj(t, doc, "cluster", "status")["phase"] = "initializing"
			capObj(t, doc, "cluster", "status")["master"] = ""
			capObj(t, doc, "cluster", "spec")["synchronousReplication"] = true
		}, nil, []string{`cluster phase "initializing"`, `no master known (cluster.status.master "" has no db)`}, false},
		{"master keeper unhealthy", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "keepers", "keeper0", "status"), "healthy")
		}, nil, []string{"master keeper0 (db d51919e0, 127.0.0.1:25433) unhealthy: Stolon is already replacing it"}, true},
		{"master PostgreSQL unhealthy", func(t *testing.T, doc map[string]any) {
			delete(dbStatus(t, doc, "d51919e0"), "healthy")
		}, nil, []string{"master keeper0 (db d51919e0, 127.0.0.1:25433) unhealthy"}, true},
		{"master's keeper unknown", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "keepers"), "keeper0")
		}, nil, []string{"master keeper0 (db d51919e0, 127.0.0.1:25433) unhealthy"}, true},
		{"no standby at all", func(t *testing.T, doc map[string]any) {
			delete(capObj(t, doc, "dbs"), "0e651c76")
		}, nil, []string{"no standby Stolon would elect (there is no standby)"}, true},
		{"leader key naming a dead sentinel", nil, func(st *State) {
			st.Sentinels = []string{"81375632"}
		}, []string{"the sentinel-leader key names f6db1c81, which is not alive: nobody would act on forceFail"}, true},
		{"sentinels alive, none leads", nil, func(st *State) {
			st.Leader, st.LeaderHeld = "", false
		}, []string{"no sentinel leads"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			edit := func(map[string]any) {}
			if tt.edit != nil {
				edit = func(doc map[string]any) { tt.edit(t, doc) }
			}
			st := capEditState(t, "normal", edit)
			if tt.state != nil {
				tt.state(st)
			}
			plan, master := (&Cluster{Name: "main"}).planFrom(st)
			if plan.Ready() {
				t.Fatalf("ready: %+v", plan.Checks)
			}
			if (master != nil) != tt.master || (plan.MasterKeeper != "") != tt.master {
				t.Errorf("master %v, keeper %q", master, plan.MasterKeeper)
			}
			failed := failedChecks(plan)
			if len(failed) != len(tt.failed) {
				t.Errorf("failed checks %q, want %q", failed, tt.failed)
			}
			for _, f := range tt.failed {
				if !hasCheck(plan, false, f) {
					t.Errorf("no failed check saying %q in %q", f, failed)
				}
			}
			var refused *RefusedError
			if err := error(&RefusedError{Plan: plan}); !errors.As(err, &refused) || !strings.Contains(err.Error(), tt.failed[0]) {
				t.Errorf("refusal %v", err)
			}
		})
	}
}

func TestPlanReadyAndElected(t *testing.T) {
	t.Parallel()
	var p Plan
	if p.Ready() {
		t.Error("a plan without checks is ready")
	}
	if p.Elected() != nil {
		t.Error("elected without candidates")
	}
	p.check(true, "a %s", "pass")
	if !p.Ready() || p.Checks[0].Text != "a pass" {
		t.Errorf("one passed check: ready %v, %+v", p.Ready(), p.Checks)
	}
	if ok := p.check(false, "a failure"); ok || p.Ready() {
		t.Error("a failed check leaves the plan ready")
	}
	p.check(true, "another pass")
	if p.Ready() {
		t.Error("a later pass hides the failure")
	}
}
