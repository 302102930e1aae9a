package commands

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

type panics struct{}

func (panics) Spec() Spec { return Spec{Name: "boom", Access: Read, Summary: "panics"} }
func (panics) Run(context.Context, *Request) (render.Node, error) {
	panic("secret=hunter2 nil map")
}

type sleeps struct{}

func (sleeps) Spec() Spec {
	return Spec{Name: "sleep", Access: Read, Summary: "blocks until cancelled"}
}
func (sleeps) Run(ctx context.Context, _ *Request) (render.Node, error) {
	<-ctx.Done()
	return render.Node{}, ctx.Err()
}

type restart struct{ ran *int }

func (r restart) Spec() Spec {
	return Spec{Name: "restart", Access: Change, Summary: "restarts a job", Usage: "<job>", MinArgs: 1, MaxArgs: 1, Options: []string{"group"}}
}
func (r restart) Run(context.Context, *Request) (render.Node, error) {
	*r.ran++
	return render.Text("restarted"), nil
}

type failing struct{}

func (failing) Spec() Spec { return Spec{Name: "fail", Access: Read, Summary: "fails", MaxArgs: -1} }
func (failing) Run(_ context.Context, req *Request) (render.Node, error) {
	if len(req.Args) > 0 {
		return render.Node{}, Usagef("bad argument %q", req.Args[0])
	}
	return render.Node{}, errors.New("Nomad at http://127.0.0.1:4646 unreachable")
}

type allowAll struct{}

func (allowAll) Authorize(context.Context, *Request, Spec, Step) (Principal, error) {
	return Principal{DN: "uid=alice,ou=people,dc=example,dc=org"}, nil
}
func (allowAll) NeedsApproval(*Request, Spec) bool { return false }

type routerFixture struct {
	st      *store.Store
	router  *Router
	metrics *telemetry.Metrics
	ran     int
}

func newRouterFixture(t *testing.T, auth Authorizer) *routerFixture {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &routerFixture{st: st, metrics: telemetry.NewMetrics()}
	reg, err := NewRegistry(Ping{}, panics{}, sleeps{}, restart{ran: &f.ran}, failing{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(&Help{Registry: reg}); err != nil {
		t.Fatal(err)
	}
	f.router = NewRouter(RouterConfig{
		Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Authorizer: auth, Metrics: f.metrics,
		Timeout: 100 * time.Millisecond, MaxReplyBytes: 2000,
	})
	return f
}

var eventSeq int

// do runs one command and returns the replies queued for it.
func (f *routerFixture) do(t *testing.T, text string) []store.OutMessage {
	t.Helper()
	eventSeq++
	ev := fmt.Sprintf("$ev%d", eventSeq)
	f.router.Handle(t.Context(), Incoming{Transport: "test", Room: "!r", EventID: ev, Sender: "@alice:x", Text: text, Prefix: "!vigie"})
	f.router.Wait()
	pending, err := f.st.Pending(t.Context(), "test", 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.OutMessage
	for _, m := range pending {
		if m.ReplyTo == ev {
			out = append(out, m)
		}
	}
	return out
}

func (f *routerFixture) one(t *testing.T, text string) store.OutMessage {
	t.Helper()
	replies := f.do(t, text)
	if len(replies) != 1 {
		t.Fatalf("%q: %d replies, want 1", text, len(replies))
	}
	return replies[0]
}

func (f *routerFixture) lastAudit(t *testing.T) store.AuditRecord {
	log, err := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 1})
	if err != nil || len(log) != 1 {
		t.Fatalf("audit: %v %v", log, err)
	}
	return log[0]
}

func TestPingRepliesAndAudits(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, "ping")
	if m.Plain != "pong" || m.Room != "!r" || m.Transport != "test" {
		t.Fatalf("reply %+v", m)
	}
	if a := f.lastAudit(t); a.Command != "ping" || a.Outcome != "ok" || a.Actor != "@alice:x" || a.Access != "public" {
		t.Fatalf("audit %+v", a)
	}
	if v := testutil.ToFloat64(f.metrics.Commands.WithLabelValues("ping", "ok")); v != 1 {
		t.Fatalf("commands metric %v", v)
	}
	if n := testutil.CollectAndCount(f.metrics.CommandLatency); n != 1 {
		t.Fatalf("latency series %d", n)
	}
}

func TestSameEventRunsOnce(t *testing.T) {
	f := newRouterFixture(t, allowAll{})
	in := Incoming{Transport: "test", Room: "!r", EventID: "$dup", Sender: "@a:x", Text: "restart web"}
	for range 3 {
		f.router.Handle(t.Context(), in)
	}
	f.router.Wait()
	if f.ran != 1 {
		t.Fatalf("ran %d times", f.ran)
	}
	if p, _ := f.st.Pending(t.Context(), "test", 10); len(p) != 1 {
		t.Fatalf("%d replies", len(p))
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, "pnig")
	if !strings.Contains(m.Plain, "Unknown command pnig") || !strings.Contains(m.Plain, "Did you mean !vigie ping?") {
		t.Fatalf("reply %q", m.Plain)
	}
	if a := f.lastAudit(t); a.Outcome != "unknown" || a.Command != "" || a.Args != "pnig" {
		t.Fatalf("audit %+v", a)
	}
	if v := testutil.ToFloat64(f.metrics.Commands.WithLabelValues("unknown", "unknown")); v != 1 {
		t.Fatalf("metric %v", v)
	}
	if m := f.one(t, "<script>"); !strings.Contains(m.HTML, "&lt;script&gt;") || strings.Contains(m.HTML, "<script>") {
		t.Fatalf("unknown name not escaped: %s", m.HTML)
	}
}

func TestBrokenQuoting(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, `restart "web`)
	if !strings.Contains(m.Plain, "could not read that command: column 9: unterminated quote") {
		t.Fatalf("reply %q", m.Plain)
	}
	if f.lastAudit(t).Outcome != "invalid" {
		t.Fatal("not audited as invalid")
	}
}

func TestPanicBecomesErrorReply(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, "boom")
	if !strings.Contains(m.Plain, "boom failed: internal error") || strings.Contains(m.Plain, "hunter2") {
		t.Fatalf("reply %q", m.Plain)
	}
	if a := f.lastAudit(t); a.Outcome != "error" {
		t.Fatalf("audit %+v", a)
	}
	// The router still works afterwards.
	if m := f.one(t, "ping"); m.Plain != "pong" {
		t.Fatal("router broken after a panic")
	}
}

func TestTimeout(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, "sleep")
	if !strings.Contains(m.Plain, "did not finish within 100ms") {
		t.Fatalf("reply %q", m.Plain)
	}
	if f.lastAudit(t).Outcome != "timeout" {
		t.Fatal("not audited as timeout")
	}
}

func TestChangeCommandsFailClosedByDefault(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, "restart web")
	if !strings.Contains(m.Plain, "Not allowed") || f.ran != 0 {
		t.Fatalf("reply %q, ran %d", m.Plain, f.ran)
	}
	if a := f.lastAudit(t); a.Outcome != "denied" || a.Access != "change" || a.Detail == "" {
		t.Fatalf("audit %+v", a)
	}
}

func TestArgumentValidation(t *testing.T) {
	f := newRouterFixture(t, allowAll{})
	cases := map[string]string{
		"restart":               "restart needs at least 1 argument(s), got 0. Usage: !vigie restart <job>",
		"restart a b":           "at most 1 argument(s), got 2",
		"restart web grop=x":    `unknown option "grop" (did you mean "group"?)`,
		"ping extra":            "ping takes at most 0 argument(s)",
		"ping x=1":              "ping takes no key=value options",
		"fail oops":             `bad argument "oops". Usage: !vigie fail`,
		"fail":                  "fail failed: Nomad at http://127.0.0.1:4646 unreachable",
		"help pnig":             `no command "pnig" (did you mean "ping"?)`,
		"restart web group=api": "restarted",
		"RESTART web GROUP=api": "restarted",
		"":                      "Vigie commands",
		"help restart":          "Access: changes the infrastructure",
		"?":                     "Changing the infrastructure (audited; what destroys or replaces is previewed and confirmed):\n- restart <job> — restarts a job",
	}
	for in, want := range cases {
		if m := f.one(t, in); !strings.Contains(m.Plain, want) {
			t.Errorf("%q → %q, want it to contain %q", in, m.Plain, want)
		}
	}
}

func TestHugeMessageGetsBoundedReply(t *testing.T) {
	f := newRouterFixture(t, nil)
	m := f.one(t, strings.Repeat("x", 1<<20)+" arg")
	if len(m.Plain) > 2000 || len(m.HTML) > 2000 || !strings.Contains(m.Plain, "truncated") {
		t.Fatalf("reply of %d/%d bytes", len(m.Plain), len(m.HTML))
	}
	if a := f.lastAudit(t); len(a.Args) > maxAuditArgs+10 {
		t.Fatalf("audit kept %d bytes of args", len(a.Args))
	}
}
