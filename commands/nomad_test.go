package commands

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// newNomadFixture runs the Nomad commands through a router, on nomadops
// and the stateful fake Nomad holding the docker job "shop".
func newNomadFixture(t *testing.T) (*confirmFixture, *fakenomad.Server) {
	fake := fakenomad.New(t, fakenomad.Config{})
	fake.SetDeploymentStep(20 * time.Millisecond)
	fake.AddJob(fakenomad.ShopJob())
	nomad, err := nomadops.New(nomadops.Config{Address: fake.URL, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &confirmFixture{routerFixture: &routerFixture{st: st, metrics: telemetry.NewMetrics()},
		pol: &policy{allowed: map[string]bool{"@alice:x": true}}, now: time.Now()}
	reg, err := NewRegistry(&Deploy{Nomad: nomad}, &Rollback{Nomad: nomad}, &Status{Nomad: nomad}, &Jobs{Nomad: nomad},
		&Job{Nomad: nomad}, &Logs{Nomad: nomad}, &Scale{Nomad: nomad})
	if err != nil {
		t.Fatal(err)
	}
	f.router = NewRouter(RouterConfig{Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Authorizer: f.pol,
		Metrics: f.metrics, MaxReplyBytes: 8000, MutationsPerMin: 50})
	return f, fake
}

const newShop = "registry.example.org/shop/app:1.5.0"

func TestDeployPreviewConfirmFollow(t *testing.T) {
	f, fake := newNomadFixture(t)
	if out := plains(f.say(t, "@alice:x", "deploy shop image="+newShop)); !strings.Contains(out, "several Docker tasks (frontend/app, frontend/proxy, worker/worker): say which with task=") {
		t.Fatalf("ambiguous deploy:\n%s", out)
	}
	msgs := f.say(t, "@alice:x", "deploy shop image="+newShop+" task=app")
	out := plains(msgs)
	if !strings.Contains(out, "⚠️ deploy: shop: frontend/app: "+fakenomad.ShopImage+" → "+newShop) || !strings.Contains(out, "Nomad's plan:") ||
		!strings.Contains(out, "frontend: 1 replaced") {
		t.Fatalf("preview:\n%s", out)
	}
	c, _ := code(t, msgs)
	msgs = f.say(t, "@alice:x", "confirm "+c)
	out = plains(msgs)
	last := msgs[len(msgs)-1].Plain
	if !strings.HasPrefix(last, "✅ shop version 1 deployed in") {
		t.Fatalf("result %q of:\n%s", last, out)
	}
	edits := 0
	for _, m := range msgs {
		if m.EditOf != 0 {
			edits++
		}
	}
	if edits < 2 || !strings.Contains(out, "deployment") || !strings.Contains(out, "successful") {
		t.Fatalf("live progress (%d edits):\n%s", edits, out)
	}
	job := fake.Job("shop")
	if img := job.TaskGroups[0].Tasks[0].Config["image"]; img != newShop {
		t.Fatalf("registered image %v", img)
	}
	if img := job.TaskGroups[0].Tasks[1].Config["image"]; img != fakenomad.ProxyImage {
		t.Fatalf("the proxy changed too: %v", img)
	}
}

func TestDeployRefusals(t *testing.T) {
	f, fake := newNomadFixture(t)
	for in, want := range map[string]string{
		"deploy shop image=NGINX task=app":   "NGINX",
		"deploy shpo image=nginx:1 task=app": `did you mean "shop"`,
		"deploy shop task=app":               "say which image",
		"deploy shop image=nginx:1 task=db":  "db",
	} {
		if out := plains(f.say(t, "@alice:x", in)); !strings.Contains(out, want) {
			t.Errorf("%q → %q, want %q", in, out, want)
		}
	}
	// Changed under our feet between preview and confirmation.
	c, _ := code(t, f.say(t, "@alice:x", "deploy shop image="+newShop+" task=app"))
	fake.BumpJob("shop")
	if out := plains(f.say(t, "@alice:x", "confirm "+c)); !strings.Contains(out, "changed since the preview") {
		t.Fatalf("stale preview:\n%s", out)
	}
	// A failing image: the failure is reported with the way back.
	fake.FailImage("registry.example.org/shop/app:bad")
	c, _ = code(t, f.say(t, "@alice:x", "deploy shop image=registry.example.org/shop/app:bad task=app"))
	out := plains(f.say(t, "@alice:x", "confirm "+c))
	if !strings.Contains(out, "failed") || !strings.Contains(out, "roll back with !vigie rollback shop") {
		t.Fatalf("failed deployment:\n%s", out)
	}
	if log, _ := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 1, Command: "deploy"}); log[0].Outcome != "failed" {
		t.Fatalf("audit %+v", log[0])
	}
	if out := plains(f.say(t, "@bob:x", "deploy shop image="+newShop+" task=app")); !strings.Contains(out, "⛔ Not allowed") {
		t.Fatalf("outsider:\n%s", out)
	}
}

func TestNomadReadCommands(t *testing.T) {
	f, _ := newNomadFixture(t)
	for in, want := range map[string]string{
		"status":              "Nodes: 1 ready of 1",
		"jobs":                "Job      Type     Status",
		"jobs cr*":            "crasher",
		"job shop":            "frontend: 2/2 running",
		"job wbe":             `did you mean "web"`,
		"logs crasher stderr": "crashing on purpose",
		"logs crasher 500":    "give 1 to 200",
	} {
		if out := plains(f.say(t, "@alice:x", in)); !strings.Contains(out, want) {
			t.Errorf("%q → %q, want %q", in, out, want)
		}
	}
}
