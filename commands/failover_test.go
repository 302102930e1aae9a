package commands

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakestolon"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/stolon"
	"github.com/vigie/vigie/store"
)

var _ Confirmable = (*Failover)(nil)

func TestFailoverSpec(t *testing.T) {
	s := (&Failover{Timeout: 7 * time.Minute}).Spec()
	if s.Name != "failover" || s.Access != Change || !s.TwoPerson || s.MaxArgs != 1 || s.Timeout != 7*time.Minute {
		t.Fatalf("spec %+v: want a change command, two-person, one optional cluster, the configured timeout", s)
	}
}

// A failover the keys already show cannot lose nothing, or would do
// nothing, is refused by its preview, every check listed; nothing is
// written, nothing is pending.
func TestFailoverPreviewRefused(t *testing.T) {
	for _, tc := range []struct {
		state string
		want  string
	}{
		{"no-eligible-standby", `failover of main refused:
✅ cluster phase "normal"
✅ sentinel 81375632 leads
✅ master keeper1 (db 0e651c76, 127.0.0.1:25434) healthy
❌ no standby Stolon would elect (keeper0: 57105960 bytes behind, beyond maxStandbyLag (1232896)): it would fail the master for nothing and elect it again`},
		{"no-sentinel", `failover of main refused:
✅ cluster phase "normal"
❌ no sentinel alive: nobody would act on forceFail
✅ master keeper0 (db d51919e0, 127.0.0.1:25433) healthy
✅ Stolon would elect keeper1 (db 0e651c76), 0 B behind in WAL received`},
		{"standby-down", `failover of main refused:
✅ cluster phase "normal"
✅ sentinel f6db1c81 leads
✅ master keeper0 (db d51919e0, 127.0.0.1:25433) healthy
❌ no standby Stolon would elect (keeper1: keeper keeper1 unhealthy): it would fail the master for nothing and elect it again`},
		{"failover-02", `failover of main refused:
✅ cluster phase "normal"
✅ sentinel 81375632 leads
✅ master keeper0 (db d51919e0, 127.0.0.1:25433) healthy
❌ keeper keeper0 already has forceFail set: a failover is under way
✅ Stolon would elect keeper1 (db 0e651c76), 0 B behind in WAL received`},
		{"failover-06", `failover of main refused:
✅ cluster phase "normal"
✅ sentinel 81375632 leads
✅ master keeper1 (db 0e651c76, 127.0.0.1:25434) healthy
❌ no standby Stolon would elect (keeper0: not a standby (role master)): it would fail the master for nothing and elect it again`},
	} {
		svc, fake := newStolonService(t, stolonCapture(t, tc.state, nil))
		before := fake.KVIndex()
		_, err := (&Failover{Stolon: svc}).Preview(t.Context(), &Request{Invocation: Invocation{Name: "failover", Args: []string{"main"}}})
		var usage *UsageError
		if !errors.As(err, &usage) {
			t.Errorf("%s: %v, want a refusal", tc.state, err)
			continue
		}
		if usage.Msg != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.state, usage.Msg, tc.want)
		}
		if fake.KVIndex() != before {
			t.Errorf("%s: the preview wrote to Consul", tc.state)
		}
	}

	// Through the router: refused, audited as such, nothing to confirm.
	svc, _ := newStolonService(t, stolonCapture(t, "no-sentinel", nil))
	f := newStolonFixture(t, svc)
	msgs := f.say(t, "@alice:x", "failover main")
	out := plains(msgs)
	if len(msgs) != 1 || !strings.Contains(out, "⚠️ failover of main refused:\n✅ cluster phase") ||
		!strings.Contains(out, "❌ no sentinel alive: nobody would act on forceFail") || codeRE.MatchString(out) {
		t.Fatalf("refused failover:\n%s", out)
	}
	if log, _ := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 1, Command: "failover"}); len(log) != 1 || log[0].Outcome != "invalid" {
		t.Errorf("audit %+v", log)
	}
}

func TestFailoverUnknownCluster(t *testing.T) {
	svc, _ := newStolonService(t, stolonCapture(t, "normal", nil))
	fo := &Failover{Stolon: svc}
	_, err := fo.Preview(t.Context(), &Request{Invocation: Invocation{Args: []string{"mian"}}})
	var usage *UsageError
	if !errors.As(err, &usage) || usage.Msg != `unknown Stolon cluster "mian" (did you mean "main"?); configured: main, analytics` {
		t.Errorf("mistyped: %v", err)
	}
	_, err = fo.Preview(t.Context(), &Request{})
	if err == nil || err.Error() != "several Stolon clusters are configured: name one of main, analytics" {
		t.Errorf("no name: %v", err)
	}
	_, err = fo.Preview(t.Context(), &Request{Invocation: Invocation{Args: []string{"analytics"}}})
	if err == nil || err.Error() != "no Stolon cluster at stolon/cluster/analytics/clusterdata (check the cluster name and store prefix)" {
		t.Errorf("no keys: %v", err)
	}

	f := newStolonFixture(t, svc)
	if out := plains(f.say(t, "@alice:x", "failover mian")); !strings.Contains(out, `did you mean "main"?`) || codeRE.MatchString(out) {
		t.Errorf("mistyped through the router:\n%s", out)
	}
}

// On a healthy cluster over real PostgreSQL servers, the preview checks
// the servers, names the standby Stolon would elect and how far behind it
// is, and asks for a confirmation (by a second person); it changes
// nothing.
func TestFailoverPreviewNormal(t *testing.T) {
	primary := testenv.StartPostgres(t)
	standby := testenv.StartStandby(t, primary)
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	sim := fakestolon.New(t, consul, primary, standby) // the "normal" capture, pointed at the servers; not started
	// The standby 4 KiB behind in WAL received, as the keeper told the sentinel.
	sim.Edit(t, func(doc map[string]any) {
		st := doc["dbs"].(map[string]any)[fakestolon.DB0].(map[string]any)["status"].(map[string]any)
		pos, err := st["xLogPos"].(json.Number).Int64()
		if err != nil {
			t.Fatal(err)
		}
		doc["dbs"].(map[string]any)[fakestolon.DB1].(map[string]any)["status"].(map[string]any)["xLogPos"] = json.Number(strconv.FormatInt(pos-4096, 10))
	})
	c := &stolon.Cluster{Name: "main", KV: &stolon.KV{Address: consul.URL},
		Postgres: pgserver.Server{Host: "127.0.0.1", Port: sim.Proxy.Port, User: primary.User, Password: primary.Password, SSLMode: "disable"},
		Database: "postgres"}
	svc := stolon.NewService([]*stolon.Cluster{c}, nil, nil)
	_, _, before, _ := consul.KV(fakestolon.Prefix + "clusterdata")

	p, err := (&Failover{Stolon: svc}).Preview(t.Context(), &Request{Invocation: Invocation{Name: "failover"}})
	if err != nil {
		t.Fatalf("preview: %v", err)
	}
	if p.Resource != "stolon:main" || p.Summary != "fail Stolon cluster main over from keeper0 to keeper1" {
		t.Errorf("proposal %q: %q", p.Resource, p.Summary)
	}
	plan, ok := p.State.(*stolon.Plan)
	if !ok || plan.Elected() == nil || plan.Elected().DB.UID != fakestolon.DB1 || plan.Elected().Lag != 4096 || !plan.Ready() {
		t.Fatalf("state %#v", p.State)
	}
	preview := render.Render(p.Preview).Plain
	for _, want := range []string{
		"Preflight:",
		`✅ cluster phase "normal"`,
		"✅ sentinel f6db1c81 leads",
		"✅ master keeper0 (db d51919e0, " + primary.Addr() + ") healthy",
		"✅ Stolon would elect keeper1 (db 0e651c76), 4.00 KiB behind in WAL received",
		"✅ master keeper0 reachable at " + primary.Addr() + " to be fenced",
		"✅ standby keeper1 (db 0e651c76, " + standby.Addr() + ") replays ",
		"Then: fence keeper0 (its databases read-only for new sessions, open sessions ended)",
		"until keeper1 takes writes through the proxy and keeper0 is back as a standby",
	} {
		if !strings.Contains(preview, want) {
			t.Errorf("preview lacks %q:\n%s", want, preview)
		}
	}
	if strings.Contains(preview, "❌") {
		t.Errorf("a failed check in a ready plan:\n%s", preview)
	}

	// Through the router: a pending change, the two-person rule.
	f := newStolonFixture(t, svc)
	msgs := f.say(t, "@alice:x", "failover main")
	out := plains(msgs)
	if len(msgs) != 1 || !strings.Contains(out, "⚠️ failover: fail Stolon cluster main over from keeper0 to keeper1") ||
		!strings.Contains(out, "4.00 KiB behind in WAL received") || !strings.Contains(out, "Two-person rule: someone else from the approvers confirms with !vigie confirm ") {
		t.Fatalf("preview message:\n%s", out)
	}
	code(t, msgs)
	// Previewing wrote nothing: no forceFail, no fence.
	if _, _, after, _ := consul.KV(fakestolon.Prefix + "clusterdata"); after != before {
		t.Errorf("clusterdata written by the preview (ModifyIndex %d → %d)", before, after)
	}
	if got := primary.QueryValue(t, "postgres", "SELECT count(*) FROM pg_db_role_setting WHERE 'default_transaction_read_only=on' = ANY (setconfig)"); got != "0" {
		t.Errorf("the preview fenced the master: %s read-only database setting(s)", got)
	}
}
