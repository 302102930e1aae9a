package commands

import (
	"fmt"
	"os"
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
// and the stateful fake Nomad holding the docker job "shop"; deploy takes
// jobspecs from the directory jobspecs, "" for none.
func newNomadFixture(t *testing.T, jobspecs string) (*confirmFixture, *fakenomad.Server) {
	fake := fakenomad.New(t, fakenomad.Config{})
	fake.SetDeploymentStep(20 * time.Millisecond)
	fake.AddJob(fakenomad.ShopJob())
	nomad, err := nomadops.New(nomadops.Config{Address: fake.URL, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &confirmFixture{routerFixture: &routerFixture{st: st, metrics: telemetry.NewMetrics()},
		pol: &policy{allowed: map[string]bool{"@alice:x": true}}}
	reg, err := NewRegistry(&Deploy{Nomad: nomad, JobspecsDir: jobspecs}, &Rollback{Nomad: nomad}, &Promote{Nomad: nomad}, &Status{Nomad: nomad, Sources: sources{
		{Name: "nomad", Display: "Nomad", Address: "http://127.0.0.1:4646", Up: true},
		{Name: "consul", Display: "Consul", Address: "http://127.0.0.1:8500", Blind: true, Since: time.Date(2026, 11, 26, 12, 3, 0, 0, time.UTC), Reason: "not reached yet"},
	}}, &Jobs{Nomad: nomad},
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
	f, fake := newNomadFixture(t, "")
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
	f, fake := newNomadFixture(t, "")
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
	f, _ := newNomadFixture(t, "")
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
	// The deployment's description and the versions stay on lines of their own.
	if out := plains(f.say(t, "@alice:x", "job web")); !strings.Contains(out, "Deployment completed successfully\nVersions: ") {
		t.Errorf("job web:\n%s", out)
	}
	if out := plains(f.say(t, "@alice:x", "status")); !strings.Contains(out, "Vigie's watch") ||
		!strings.Contains(out, "🔴 Vigie cannot see Consul since 12:03 UTC: not reached yet (http://127.0.0.1:8500)") {
		t.Errorf("status does not say what Vigie cannot see:\n%s", out)
	}
}

func TestDeployJobspec(t *testing.T) {
	dir := t.TempDir()
	web, err := os.ReadFile("../internal/fakenomad/testdata/jobs/web.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"web.nomad.hcl": string(web), // the fake runs web-v2.hcl: this goes back to release v1
		"api.hcl":       string(web),
		"crasher.hcl":   `job "crasher" {`,
		"README.md":     "not a jobspec",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, fake := newNomadFixture(t, dir)
	msgs := f.say(t, "@alice:x", "deploy web")
	out := plains(msgs)
	for _, want := range []string{"⚠️ deploy: web: from web.nomad.hcl", "Job web, version 1 → 2, from web.nomad.hcl:",
		`web/server: Env.RELEASE: "v2" → "v1"`, "web: 1 replaced"} {
		if !strings.Contains(out, want) {
			t.Fatalf("preview lacks %q:\n%s", want, out)
		}
	}
	c, _ := code(t, msgs)
	msgs = f.say(t, "@alice:x", "confirm "+c)
	if last := msgs[len(msgs)-1].Plain; !strings.HasPrefix(last, "✅ web version 2 deployed in") || !strings.HasSuffix(last, ": from web.nomad.hcl") {
		t.Fatalf("result %q of:\n%s", last, plains(msgs))
	}
	if env := fake.Job("web").TaskGroups[0].Tasks[0].Env["RELEASE"]; env != "v1" {
		t.Fatalf("registered RELEASE=%s", env)
	}

	for in, want := range map[string]string{
		"deploy ../etc/passwd":     `"../etc/passwd" is not a job name`,
		"deploy .hidden":           `".hidden" is not a job name`,
		"deploy shop":              "no jobspec for job shop (shop.nomad.hcl or shop.hcl); there are: api, crasher, web. Usage:",
		"deploy web task=server":   "task= goes with image=",
		"deploy web":               "nothing to change: job web already runs this jobspec (version 2)",
		"deploy api":               `deploy failed: api.hcl: it declares job "web"`,
		"deploy crasher":           "deploy failed: crasher.hcl: Nomad cannot parse it: Failed to parse job: input.hcl:",
		"deploy web image=nginx:1": "job web has no docker task",
	} {
		if out := plains(f.say(t, "@alice:x", in)); !strings.Contains(out, want) {
			t.Errorf("%q → %q, want %q", in, out, want)
		}
	}
}

// A count beyond policy.max_scale is refused before Nomad is asked, and a
// request refused as invalid does not use up the user's budget of changes.
func TestScaleIsBoundedAndInvalidRequestsAreFree(t *testing.T) {
	f, _ := newNomadFixture(t, "")
	f.router.limits.perMin = 2
	for range 4 {
		if out := plains(f.say(t, "@alice:x", "scale shop frontend 99999999999")); !strings.Contains(out, "99999999999 is more allocations than Vigie scales to (100, policy.max_scale)") {
			t.Fatalf("scale to 10^11:\n%s", out)
		}
		if out := plains(f.say(t, "@alice:x", "scale shop frontend many")); !strings.Contains(out, `"many" is not a count`) {
			t.Fatalf("scale to many:\n%s", out)
		}
	}
	if out := plains(f.say(t, "@alice:x", "scale shop frontend 3")); !strings.Contains(out, "shop/frontend: 2 → 3 allocations") {
		t.Fatalf("a valid scale after invalid ones:\n%s", out)
	}
}

// A deployment being followed holds neither its job nor the transport that
// waits for its answer: the promotion its canary waits for goes through
// (observed: promote queued behind the deploy it was meant to promote).
func TestFollowedDeploymentHoldsNothing(t *testing.T) {
	f, fake := newNomadFixture(t, "")
	fake.AddJob(fakenomad.CanaryJob())
	in := func(text string) Incoming {
		f.seq++
		return Incoming{Transport: "test", Room: "!r", EventID: fmt.Sprintf("$f%d", f.seq), Sender: "@alice:x", Text: text, Prefix: "!vigie"}
	}
	// ask waits for a command as the console does, until it settles, and
	// returns the messages queued meanwhile.
	ask := func(text string) []store.OutMessage {
		t.Helper()
		before, _ := f.st.Pending(t.Context(), "test", 1000)
		select {
		case <-f.router.Handle(t.Context(), in(text)):
		case <-time.After(10 * time.Second):
			t.Fatalf("%q did not settle", text)
		}
		all, _ := f.st.Pending(t.Context(), "test", 1000)
		return all[len(before):]
	}
	c, _ := code(t, f.say(t, "@alice:x", "deploy checkout image=registry.example.org/checkout/api:2.1.0"))
	// The confirmation settles once the job is registered, while the
	// deployment is followed: its canary waits for promotion.
	ask("confirm " + c)
	var out string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out, "requires manual promotion"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the canary never waited for promotion:\n%s", out)
		}
		all, _ := f.st.Pending(t.Context(), "test", 1000)
		out = plains(all)
	}
	pc, _ := code(t, ask("promote checkout"))
	ask("confirm " + pc)
	f.router.Wait() // the followed deployment ends
	all, _ := f.st.Pending(t.Context(), "test", 1000)
	if out := plains(all); !strings.Contains(out, "✅ Promoted.") || !strings.Contains(out, "✅ checkout version 1 deployed") {
		t.Fatalf("promotion during the followed deployment:\n%s", out)
	}
}
