package commands

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
	"github.com/vigie/vigie/watchers"
)

// newIncidentFixture runs the alert commands on a real engine and store;
// nodes go down through the real node-down rule. alice and bob may change
// Vigie's state (ack, silence), carol may not.
func newIncidentFixture(t *testing.T) (*routerFixture, *incidents.Engine) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rules, err := incidents.Rules(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := incidents.New(incidents.Config{Rules: rules, Routes: []incidents.Route{{Transport: "alerts", Room: "!ops"}}}, st)
	reg, err := NewRegistry(&Alerts{Book: eng}, &Ack{Book: eng}, &Silence{Book: eng}, &Silences{Book: eng}, &Unsilence{Book: eng})
	if err != nil {
		t.Fatal(err)
	}
	f := &routerFixture{st: st, metrics: telemetry.NewMetrics()}
	f.router = NewRouter(RouterConfig{Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Metrics: f.metrics, MaxReplyBytes: 16000,
		Authorizer: &policy{allowed: map[string]bool{"@alice:x": true, "@bob:x": true}}})
	return f, eng
}

func nodeEvent(t *testing.T, eng *incidents.Engine, name, status string) {
	t.Helper()
	ev := watchers.Event{Source: "nomad", Topic: "Node", Type: "NodeRegistration", Node: &watchers.Node{ID: name + "-id", Name: name, Status: status, Eligibility: "eligible"}}
	if err := eng.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}}); err != nil {
		t.Fatal(err)
	}
}

func TestAlertCommands(t *testing.T) {
	f, eng := newIncidentFixture(t)
	if m := f.one(t, "alerts"); m.Plain != "✅ No open incident." {
		t.Fatalf("empty: %q", m.Plain)
	}
	// Acknowledging and silencing change what the room is told: by rule.
	for _, cmd := range []string{"ack 1", "silence node=* 1h", "unsilence 1"} {
		f.router.Handle(t.Context(), Incoming{Transport: "test", Room: "!r", EventID: "$carol-" + cmd, Sender: "@carol:x", Text: cmd})
		f.router.Wait()
		if a := f.lastAudit(t); a.Outcome != "denied" || a.Access != "state" {
			t.Fatalf("%s by an outsider: %+v", cmd, a)
		}
	}
	nodeEvent(t, eng, "worker-1", "down")
	nodeEvent(t, eng, "worker-<2>", "down")
	m := f.one(t, "alerts")
	if !strings.Contains(m.Plain, "2 open incident(s)") || !strings.Contains(m.Plain, "#1 CRITICAL") || !strings.Contains(m.HTML, "worker-&lt;2&gt;") {
		t.Fatalf("alerts:\n%s\n%s", m.Plain, m.HTML)
	}

	if m := f.one(t, "ack #1"); !strings.Contains(m.Plain, "👀 Acknowledged #1") {
		t.Fatalf("ack: %q", m.Plain)
	}
	if m := f.one(t, "ack 1"); !strings.Contains(m.Plain, "already acknowledged by @alice:x") {
		t.Fatalf("ack twice: %q", m.Plain)
	}
	if m := f.one(t, "ack 99"); !strings.Contains(m.Plain, "incident #99: not found") {
		t.Fatalf("ack missing: %q", m.Plain)
	}
	if m := f.one(t, "ack one"); !strings.Contains(m.Plain, `"one" is not an incident number`) {
		t.Fatalf("ack bad id: %q", m.Plain)
	}
	if m := f.one(t, "alerts"); !strings.Contains(m.Plain, "👀 @alice:x") {
		t.Fatalf("alerts after ack:\n%s", m.Plain)
	}

	m = f.one(t, "silence node=worker-* 2h kernel upgrade")
	if !strings.Contains(m.Plain, "🔇 Silence #1: node=worker-* until") || !strings.Contains(m.Plain, "(kernel upgrade)") {
		t.Fatalf("silence: %q", m.Plain)
	}
	if m := f.one(t, "silences"); !strings.Contains(m.Plain, "#1 node=worker-* · until") || !strings.Contains(m.Plain, "by @alice:x · kernel upgrade") {
		t.Fatalf("silences: %q", m.Plain)
	}
	if m := f.one(t, "alerts"); strings.Count(m.Plain, "🔇 silence #1") != 2 {
		t.Fatalf("open incidents not marked silenced:\n%s", m.Plain)
	}
	for in, want := range map[string]string{
		"silence nod=x 1h":       `unknown option "nod" (did you mean "node"?)`,
		"silence node=x soon":    `"soon" is not a duration`,
		"silence node=x":         "silence needs at least 1 argument(s)",
		"silence 1h":             "at least one label=glob",
		"silence node=[ 1h":      "bad glob",
		"silence node=x 99999d":  "a silence lasts 30d at most (policy.max_silence)",
		"silence node=x 300000d": `"300000d" is too long a duration`, // once the year 2263
		"silence node=x 744h":    "a silence lasts 30d at most",
		"unsilence 7":            "silence #7: not found",
	} {
		if m := f.one(t, in); !strings.Contains(m.Plain, want) {
			t.Errorf("%q → %q, want %q", in, m.Plain, want)
		}
	}
	if m := f.one(t, "silence #2"); !strings.Contains(m.Plain, "🔇 Silenced #2 CRITICAL node worker-<2> down until it resolves") {
		t.Fatalf("silence incident: %q", m.Plain)
	}
	if m := f.one(t, "silences"); !strings.Contains(m.Plain, "#2 incident #2 · until resolved") {
		t.Fatalf("silences with an incident silence: %q", m.Plain)
	}
	if m := f.one(t, "unsilence #1"); m.Plain != "🔔 Silence #1 ended." {
		t.Fatalf("unsilence: %q", m.Plain)
	}
	if m := f.one(t, "silences"); strings.Contains(m.Plain, "node=worker") {
		t.Fatalf("silences after: %q", m.Plain)
	}
}

func TestQuietCommandRepliesOnlyOnFailure(t *testing.T) {
	f, eng := newIncidentFixture(t)
	nodeEvent(t, eng, "worker-1", "down")
	for i, text := range []string{"ack 1", "ack 1"} {
		f.router.Handle(t.Context(), Incoming{Transport: "test", Room: "!r", EventID: "$react" + string(rune('a'+i)), Sender: "@bob:x", Text: text, Quiet: true})
		f.router.Wait()
	}
	pending, _ := f.st.Pending(t.Context(), "test", 10)
	if len(pending) != 1 || !strings.Contains(pending[0].Plain, "already acknowledged by @bob:x") {
		t.Fatalf("replies: %+v", pending)
	}
	if a := f.lastAudit(t); a.Command != "ack" || a.Outcome != "error" {
		t.Fatalf("audit %+v", a)
	}
}

// sources is a fixed view of Vigie's sources.
type sources []watchers.SourceStatus

func (s sources) Statuses() []watchers.SourceStatus { return s }

// An empty incident list says what Vigie sees; a blind source is named, so
// "no open incident" is never said while Vigie cannot see.
func TestAlertsSaysWhatVigieCannotSee(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	eng := incidents.New(incidents.Config{Routes: []incidents.Route{{Transport: "alerts", Room: "!ops"}}}, st)
	since := time.Date(2026, 11, 26, 12, 3, 0, 0, time.UTC)
	src := sources{
		{Name: "nomad", Display: "Nomad", Address: "http://10.0.0.1:4646", Up: false, Blind: true, Since: since, Reason: "connection refused"},
		{Name: "consul", Display: "Consul", Address: "http://10.0.0.1:8500", Up: true},
	}
	reg, err := NewRegistry(&Alerts{Book: eng, Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	f := &routerFixture{st: st, metrics: telemetry.NewMetrics()}
	f.router = NewRouter(RouterConfig{Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Metrics: f.metrics, MaxReplyBytes: 16000})
	m := f.one(t, "alerts")
	if strings.Contains(m.Plain, "✅") || !strings.Contains(m.Plain, "Vigie cannot see Nomad since 12:03 UTC: connection refused (http://10.0.0.1:4646)") ||
		!strings.Contains(m.Plain, "No open incident among what it sees") {
		t.Fatalf("alerts while blind:\n%s", m.Plain)
	}
	src[0].Up, src[0].Blind = true, false
	if m := f.one(t, "alerts"); m.Plain != "✅ No open incident; Vigie sees Nomad, Consul." {
		t.Fatalf("alerts while seeing: %q", m.Plain)
	}
	// A source that hides part of its state is named too.
	src[1].Missing = "Consul leaves out the health checks the token may not read (ACL)"
	if m := f.one(t, "alerts"); strings.Contains(m.Plain, "✅") ||
		!strings.Contains(m.Plain, "Vigie sees only part of Consul: Consul leaves out the health checks the token may not read (ACL) (http://10.0.0.1:8500)") {
		t.Fatalf("alerts while partial:\n%s", m.Plain)
	}
}
