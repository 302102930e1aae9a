package commands

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// bump is a confirmable command over a named thing.
type bump struct {
	mu      sync.Mutex
	applied []string
	hold    chan struct{} // when set, Apply waits on it
}

func (b *bump) Spec() Spec {
	return Spec{Name: "bump", Access: Change, Summary: "bump a thing", Usage: "<thing>", MinArgs: 1, MaxArgs: 1}
}

func (b *bump) Preview(_ context.Context, req *Request) (*Proposal, error) {
	if req.Args[0] == "missing" {
		return nil, Usagef("no thing %q", req.Args[0])
	}
	return &Proposal{Resource: "thing:" + req.Args[0], Summary: "bump " + req.Args[0], Preview: render.Text("1 → 2")}, nil
}

func (b *bump) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	if err := progress.Update(ctx, render.Text("⏳ bumping "+req.Args[0])); err != nil {
		return render.Node{}, err
	}
	if b.hold != nil {
		<-b.hold
	}
	if err := progress.Update(ctx, render.Text("✅ bumped "+req.Args[0])); err != nil {
		return render.Node{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.applied = append(b.applied, req.Args[0])
	return render.Text("done: " + p.Summary), nil
}

// policy allows public and read commands to all, the rest to users per
// step; approvers approve.
type policy struct {
	mu        sync.Mutex
	allowed   map[string]bool
	approvers map[string]bool
	entries   map[string]string // Matrix ID -> directory entry, when not uid=<localpart>
	twoPerson bool
	down      bool
}

func (p *policy) Authorize(_ context.Context, req *Request, spec Spec, step Step) (Principal, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if spec.Access == Public || spec.Access == Read {
		return Principal{}, nil
	}
	if p.down && step != StepRun {
		return Principal{}, ErrUnavailable
	}
	ok := p.allowed[req.Sender]
	if step == StepApprove {
		ok = p.approvers[req.Sender]
	}
	if !ok {
		return Principal{}, fmt.Errorf("%s is not in the group", req.Sender)
	}
	if dn, ok := p.entries[req.Sender]; ok {
		return Principal{DN: dn}, nil
	}
	return Principal{DN: "uid=" + strings.Trim(req.Sender, "@:x") + ",dc=x"}, nil
}

func (p *policy) NeedsApproval(*Request, Spec) bool { return p.twoPerson }

type confirmFixture struct {
	*routerFixture
	bump *bump
	pol  *policy
	now  *clock.Manual
	seq  int
}

func newConfirmFixture(t *testing.T) *confirmFixture {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &confirmFixture{routerFixture: &routerFixture{st: st, metrics: telemetry.NewMetrics()}, bump: &bump{},
		pol: &policy{allowed: map[string]bool{"@alice:x": true, "@carol:x": true}, approvers: map[string]bool{"@carol:x": true}},
		now: clock.NewManual(time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC))}
	reg, err := NewRegistry(Ping{}, f.bump)
	if err != nil {
		t.Fatal(err)
	}
	f.router = NewRouter(RouterConfig{Registry: reg, Replies: outbox.New(st), Seen: st, Audit: st, Authorizer: f.pol,
		Metrics: f.metrics, MaxReplyBytes: 4000, MutationsPerMin: 3, AuditTransport: "test", AuditRoom: "!audit", Clock: f.now})
	return f
}

// say sends a command as user and returns the messages it caused in !r.
func (f *confirmFixture) say(t *testing.T, user, text string) []store.OutMessage {
	t.Helper()
	return f.do(t, Incoming{Sender: user, Text: text})
}

func (f *confirmFixture) do(t *testing.T, in Incoming) []store.OutMessage {
	t.Helper()
	before, _ := f.st.OutboxCounts(t.Context(), "test")
	f.seq++
	in.Transport, in.Room, in.EventID, in.Prefix = "test", "!r", fmt.Sprintf("$c%d", f.seq), "!vigie"
	f.router.Handle(t.Context(), in)
	f.router.Wait()
	all, err := f.st.Pending(t.Context(), "test", 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.OutMessage
	for _, m := range all[before[store.StatePending]:] {
		if m.Room == "!r" {
			out = append(out, m)
		}
	}
	return out
}

var codeRE = regexp.MustCompile(`confirm (\d{6})`)

func code(t *testing.T, msgs []store.OutMessage) (string, int64) {
	t.Helper()
	for _, m := range msgs {
		if c := codeRE.FindStringSubmatch(m.Plain); c != nil {
			return c[1], m.ID
		}
	}
	t.Fatalf("no confirmation code in %v", msgs)
	return "", 0
}

func plains(msgs []store.OutMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		b.WriteString(m.Plain + "\n")
	}
	return b.String()
}

func TestPreviewConfirmApply(t *testing.T) {
	f := newConfirmFixture(t)
	msgs := f.say(t, "@alice:x", "bump web")
	if len(msgs) != 1 || !strings.Contains(msgs[0].Plain, "⚠️ bump: bump web") || !strings.Contains(msgs[0].Plain, "1 → 2") {
		t.Fatalf("preview: %s", plains(msgs))
	}
	c, _ := code(t, msgs)
	if len(f.bump.applied) != 0 {
		t.Fatal("applied before confirmation")
	}
	msgs = f.say(t, "@alice:x", "confirm "+c)
	// progress message, its edit, the result.
	if len(msgs) != 3 || msgs[1].EditOf != msgs[0].ID || !strings.Contains(msgs[1].Plain, "✅ bumped web") || msgs[2].Plain != "done: bump web" {
		t.Fatalf("apply: %s", plains(msgs))
	}
	if fmt.Sprint(f.bump.applied) != "[web]" {
		t.Fatalf("applied %v", f.bump.applied)
	}
	log, _ := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 10, Command: "bump"})
	if len(log) != 2 || log[0].Outcome != "applied" || log[0].Principal != "uid=alice,dc=x" || log[1].Outcome != "previewed" || log[1].Detail != "bump web" {
		t.Fatalf("audit: %+v", log)
	}
	// Used codes are gone.
	if msgs := f.say(t, "@alice:x", "confirm "+c); !strings.Contains(plains(msgs), "no pending change with code "+c) {
		t.Fatalf("reused code: %s", plains(msgs))
	}
	// The audit room got the change lines.
	all, _ := f.st.Pending(t.Context(), "test", 1000)
	mirrored := 0
	for _, m := range all {
		if m.Room == "!audit" {
			mirrored++
		}
	}
	if mirrored < 2 {
		t.Fatalf("%d lines mirrored to the audit room", mirrored)
	}
}

func TestConfirmationRules(t *testing.T) {
	f := newConfirmFixture(t)
	c, _ := code(t, f.say(t, "@alice:x", "bump web"))
	if msgs := f.say(t, "@bob:x", "confirm "+c); !strings.Contains(plains(msgs), "only @alice:x, who asked for it, can confirm") {
		t.Fatalf("other user: %s", plains(msgs))
	}
	// Still pending for alice after bob's attempt; but anything else she sends cancels it.
	if msgs := f.say(t, "@alice:x", "ping"); !strings.Contains(plains(msgs), "Cancelled the pending bump (bump web)") {
		t.Fatalf("cancel by another command: %s", plains(msgs))
	}
	if msgs := f.say(t, "@alice:x", "confirm "+c); !strings.Contains(plains(msgs), "no pending change") {
		t.Fatalf("confirm after cancel: %s", plains(msgs))
	}

	c, _ = code(t, f.say(t, "@alice:x", "bump web"))
	f.now.Advance(3 * time.Minute)
	if msgs := f.say(t, "@alice:x", "confirm "+c); !strings.Contains(plains(msgs), "expired") {
		t.Fatalf("expired: %s", plains(msgs))
	}

	// Re-checked at confirmation: the directory down means no.
	c, _ = code(t, f.say(t, "@alice:x", "bump web"))
	f.pol.down = true
	if msgs := f.say(t, "@alice:x", "confirm "+c); !strings.Contains(plains(msgs), "not applied: cannot check your groups right now; try again in a moment") {
		t.Fatalf("directory down: %s", plains(msgs))
	}
	f.pol.down = false
	if len(f.bump.applied) != 0 {
		t.Fatalf("applied %v", f.bump.applied)
	}

	if msgs := f.say(t, "@bob:x", "bump web"); !strings.Contains(plains(msgs), "⛔ Not allowed: bump — @bob:x is not in the group") {
		t.Fatalf("outsider: %s", plains(msgs))
	}
	if log, _ := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 1, Actor: "@bob:x"}); len(log) != 1 || log[0].Outcome != "denied" {
		t.Fatalf("refusal not audited: %+v", log)
	}
	if msgs := f.say(t, "@alice:x", "bump missing"); !strings.Contains(plains(msgs), `no thing "missing"`) {
		t.Fatalf("bad argument: %s", plains(msgs))
	}
}

func TestReactionConfirms(t *testing.T) {
	f := newConfirmFixture(t)
	_, preview := code(t, f.say(t, "@alice:x", "bump web"))
	msgs := f.do(t, Incoming{Sender: "@alice:x", Text: "confirm", ReactsTo: preview})
	if len(f.bump.applied) != 1 || !strings.Contains(plains(msgs), "done: bump web") {
		t.Fatalf("✅: %s", plains(msgs))
	}
	if msgs := f.do(t, Incoming{Sender: "@alice:x", Text: "confirm", ReactsTo: preview}); len(msgs) != 0 {
		t.Fatalf("✅ on a used preview answered: %s", plains(msgs))
	}
}

func TestTwoPersonRule(t *testing.T) {
	f := newConfirmFixture(t)
	f.pol.twoPerson = true
	msgs := f.say(t, "@alice:x", "bump db")
	if !strings.Contains(plains(msgs), "Two-person rule") {
		t.Fatalf("preview: %s", plains(msgs))
	}
	c, _ := code(t, msgs)
	if msgs := f.say(t, "@alice:x", "confirm "+c); !strings.Contains(plains(msgs), "needs a second person") {
		t.Fatalf("self-approval: %s", plains(msgs))
	}
	if msgs := f.say(t, "@bob:x", "confirm "+c); !strings.Contains(plains(msgs), "not approved: @bob:x is not in the group") {
		t.Fatalf("non-approver: %s", plains(msgs))
	}
	// The requester's second Matrix ID (another homeserver, the same
	// directory entry) is the same person.
	f.pol.mu.Lock()
	f.pol.approvers["@alice:other.org"], f.pol.entries = true, map[string]string{"@alice:other.org": "UID=alice,DC=x"}
	f.pol.mu.Unlock()
	if msgs := f.say(t, "@alice:other.org", "confirm "+c); !strings.Contains(plains(msgs), "not approved: @alice:other.org is the directory entry (uid=alice,dc=x) that asked for this bump") {
		t.Fatalf("self-approval through a second Matrix ID: %s", plains(msgs))
	}
	// A refused approver does not burn the code: the real approver can still confirm.
	if msgs := f.say(t, "@carol:x", "confirm "+c); !strings.Contains(plains(msgs), "done: bump db") {
		t.Fatalf("approval: %s", plains(msgs))
	}
	log, _ := f.st.AuditLog(t.Context(), store.AuditFilter{Limit: 1, Command: "bump"})
	if log[0].Outcome != "applied" || !strings.Contains(log[0].Detail, "approved by @carol:x") || log[0].Actor != "@alice:x" {
		t.Fatalf("audit %+v", log[0])
	}
}

func TestOneChangePerResourceAndRateLimit(t *testing.T) {
	f := newConfirmFixture(t)
	f.bump.hold = make(chan struct{})
	c1, _ := code(t, f.say(t, "@alice:x", "bump web"))
	c2, _ := code(t, f.say(t, "@carol:x", "bump web"))
	f.seq++
	f.router.Handle(t.Context(), Incoming{Transport: "test", Room: "!r", EventID: "$slow", Sender: "@alice:x", Text: "confirm " + c1})
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.router.locks.mu.Lock()
		_, busy := f.router.locks.held["thing:web"]
		f.router.locks.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first change never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	f.router.Handle(ctx, Incoming{Transport: "test", Room: "!r", EventID: "$second", Sender: "@carol:x", Text: "confirm " + c2})
	for {
		all, _ := f.st.Pending(t.Context(), "test", 1000)
		if strings.Contains(plains(all), "thing:web is busy: bump by @alice:x") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("second change not refused: %s", plains(all))
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(f.bump.hold)
	f.router.Wait()
	if fmt.Sprint(f.bump.applied) != "[web]" {
		t.Fatalf("applied %v", f.bump.applied)
	}
	// Three changes a minute each (per user); the fourth waits.
	for i := range 2 {
		f.say(t, "@carol:x", fmt.Sprintf("bump x%d", i))
	}
	if msgs := f.say(t, "@carol:x", "bump x9"); !strings.Contains(plains(msgs), "too many changes: at most 3 per minute") {
		t.Fatalf("rate limit: %s", plains(msgs))
	}
}
