package incidents

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// scripted is a test rule: a Check event's Output says what to signal,
// "fire:<key>:<reason>", "resolve:<key>", "notice:<key>", "detail:<key>:<text>".
type scripted struct{}

func (scripted) Name() string { return "scripted" }

func (scripted) Evaluate(ev *watchers.Event) []Signal {
	if ev.Check == nil || ev.Check.CheckID != "" {
		return nil
	}
	parts := strings.SplitN(ev.Check.Output, ":", 3)
	sig := Signal{Key: parts[1], Severity: Critical, Title: "problem " + parts[1], Labels: Labels{Job: ev.Check.ServiceName, Node: ev.Check.Node}}
	switch parts[0] {
	case "fire", "detail":
		sig.Status = Firing
		if len(parts) > 2 {
			sig.Reason = parts[2]
		}
		if parts[0] == "detail" {
			sig.Detail = &Detail{Text: "detail " + parts[2], Pre: "stderr <b>"}
		}
	case "warn":
		sig.Status, sig.Severity = Firing, Warning
	case "resolve":
		sig.Status, sig.Reason = Resolved, "fixed"
	case "notice":
		sig.Status, sig.Severity = Notice, Info
	}
	return []Signal{sig}
}

// checkRule fires on a real-looking Consul check (for holds and snapshots).
type checkRule struct{}

func (checkRule) Name() string { return "check" }

func (checkRule) Evaluate(ev *watchers.Event) []Signal {
	if ev.Check == nil || ev.Check.CheckID == "" {
		return nil
	}
	c := ev.Check
	sig := Signal{Key: checkKeyPrefix + c.Node + "/" + c.CheckID, Severity: Critical, Title: "check " + c.CheckID,
		Reason: c.Output, Labels: Labels{Node: c.Node, Check: c.CheckID, Service: "web"}}
	if c.Status == "passing" {
		sig.Status = Resolved
	} else {
		sig.Status = Firing
	}
	return []Signal{sig}
}

type fixture struct {
	t     *testing.T
	st    *store.Store
	e     *Engine
	clock *clock.Manual // the store's and so the engine's
	idx   uint64
}

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	clk := clock.NewManual(time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC))
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "data"), clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := Config{
		Rules:  []Rule{scripted{}, checkRule{}},
		Routes: []Route{{Transport: "test", Room: "!ops"}},
	}
	if mod != nil {
		mod(&cfg)
	}
	f := &fixture{t: t, st: st, clock: clk}
	f.e = New(cfg, st)
	return f
}

func (f *fixture) feed(outputs ...string) {
	f.t.Helper()
	var evs []watchers.Event
	for _, o := range outputs {
		f.idx++
		evs = append(evs, watchers.Event{Source: "test", Index: f.idx, Check: &watchers.Check{Node: "n1", Output: o, ServiceName: "web"}})
	}
	if err := f.e.Consume(f.t.Context(), watchers.Batch{Cursor: watchers.Cursor{Name: "test", Index: f.idx}, Events: evs}); err != nil {
		f.t.Fatal(err)
	}
}

// consume hands events to the engine as one batch, without a cursor.
func (f *fixture) consume(evs ...watchers.Event) {
	f.t.Helper()
	if err := f.e.Consume(f.t.Context(), watchers.Batch{Events: evs}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) advance(d time.Duration) {
	f.t.Helper()
	f.clock.Advance(d)
	if err := f.e.Tick(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
}

// messages returns what is queued for the room, classified.
func (f *fixture) messages(room string) (roots, edits, threads []store.OutMessage) {
	f.t.Helper()
	all, err := f.st.Pending(f.t.Context(), "test", 100000)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, m := range all {
		switch {
		case m.Room != room:
		case m.EditOf != 0:
			edits = append(edits, m)
		case m.ThreadRoot != 0:
			threads = append(threads, m)
		default:
			roots = append(roots, m)
		}
	}
	return
}

func (f *fixture) incident(key string) store.Incident {
	f.t.Helper()
	var in store.Incident
	err := f.st.InTx(f.t.Context(), func(tx *store.Tx) error {
		var ok bool
		var err error
		in, ok, err = tx.LatestIncident(f.t.Context(), key)
		if err == nil && !ok {
			err = fmt.Errorf("no incident %s", key)
		}
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return in
}

func TestIncidentLifecycle(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("detail:k1:exit code 1")
	roots, edits, threads := f.messages("!ops")
	if len(roots) != 1 || len(edits) != 0 || len(threads) != 1 {
		t.Fatalf("after open: %d roots %d edits %d threads", len(roots), len(edits), len(threads))
	}
	if !strings.Contains(roots[0].Plain, "🔴 CRITICAL · problem k1") || !strings.Contains(roots[0].Plain, "Latest: exit code 1") ||
		!strings.Contains(roots[0].Plain, "1 event · open for 0s") {
		t.Fatalf("root message:\n%s", roots[0].Plain)
	}
	if threads[0].ThreadRoot != roots[0].ID || !strings.Contains(threads[0].HTML, "stderr &lt;b&gt;") {
		t.Fatalf("thread detail: %+v", threads[0])
	}

	// Updates within the edit interval are folded into one later edit.
	f.clock.Advance(time.Second)
	f.feed("fire:k1:exit code 2", "fire:k1:exit code 3")
	if _, edits, _ := f.messages("!ops"); len(edits) != 0 {
		t.Fatalf("edited before the interval: %d", len(edits))
	}
	f.advance(5 * time.Second)
	_, edits, _ = f.messages("!ops")
	if len(edits) != 1 || edits[0].EditOf != roots[0].ID || !strings.Contains(edits[0].Plain, "3 events") || !strings.Contains(edits[0].Plain, "exit code 3") {
		t.Fatalf("debounced edit: %d %v", len(edits), edits)
	}
	f.advance(5 * time.Second)
	if _, edits, _ := f.messages("!ops"); len(edits) != 1 {
		t.Fatalf("edited again without a change: %d", len(edits))
	}

	f.clock.Advance(time.Minute)
	f.feed("resolve:k1")
	_, edits, threads = f.messages("!ops")
	last := edits[len(edits)-1]
	if len(edits) != 2 || !strings.Contains(last.Plain, "✅ RESOLVED · problem k1") || !strings.Contains(last.Plain, "lasted 1m11s") {
		t.Fatalf("resolution edit: %v", last.Plain)
	}
	if len(threads) != 2 || !strings.Contains(threads[1].Plain, "Resolved after 1m11s: fixed") {
		t.Fatalf("resolution reply: %v", threads)
	}
	if in := f.incident("k1"); in.State != store.IncidentResolved || in.Events != 3 {
		t.Fatalf("incident: %+v", in)
	}
	// A second resolution of a resolved key says nothing.
	f.feed("resolve:k1")
	if r, e, th := f.messages("!ops"); len(r)+len(e)+len(th) != 5 {
		t.Fatal("resolving a resolved incident posted something")
	}
	if idx, _, ok, _ := f.st.Cursor(t.Context(), "test"); !ok || idx != f.idx {
		t.Fatalf("cursor %d, want %d", idx, f.idx)
	}
}

func TestFlappingUpdatesOnlyTheMessage(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.FlapThreshold = 3 })
	f.feed("fire:k:down")
	for range 3 {
		f.clock.Advance(10 * time.Second)
		f.feed("resolve:k")
		f.clock.Advance(10 * time.Second)
		f.feed("fire:k:down again")
	}
	roots, edits, threads := f.messages("!ops")
	if len(roots) != 1 {
		t.Fatalf("a flapping key opened %d messages", len(roots))
	}
	in := f.incident("k")
	if !in.Flapping || in.State != store.IncidentOpen {
		t.Fatalf("incident %+v", in)
	}
	// 2 changes before flapping got thread replies; after that only edits.
	if len(threads) != 2 || len(edits) != 6 || !strings.Contains(edits[5].Plain, "flapping") {
		t.Fatalf("%d threads, %d edits; last edit:\n%s", len(threads), len(edits), edits[len(edits)-1].Plain)
	}
	f.advance(11 * time.Minute)
	if in := f.incident("k"); in.Flapping {
		t.Fatal("still flapping after a quiet window")
	}
}

func TestStormIsBoundedAndCountsAddUp(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RoomCap = 10 })
	var outputs []string
	for i := range 50 {
		outputs = append(outputs, fmt.Sprintf("fire:k%02d:boom", i))
	}
	f.feed(outputs...)
	roots, _, _ := f.messages("!ops")
	if len(roots) != 11 || !strings.Contains(roots[10].Plain, "Alert storm: 1 more incident") {
		t.Fatalf("%d root messages; last:\n%s", len(roots), roots[len(roots)-1].Plain)
	}
	f.advance(5 * time.Second)
	_, edits, _ := f.messages("!ops")
	if len(edits) != 1 || edits[0].EditOf != roots[10].ID || !strings.Contains(edits[0].Plain, "40 more incidents") || !strings.Contains(edits[0].Plain, "40 still open") {
		t.Fatalf("summary edit: %v", edits)
	}
	// Every incident exists and is shown somewhere: counts add up.
	live, err := f.e.Live(t.Context())
	if err != nil || len(live) != 50 {
		t.Fatalf("%d live incidents, %v", len(live), err)
	}
	// A minute later the room may post again.
	f.clock.Advance(time.Minute)
	f.feed("fire:late:boom")
	if roots, _, _ := f.messages("!ops"); len(roots) != 12 {
		t.Fatalf("after the window: %d roots", len(roots))
	}
	// Resolving an incident of the summary edits the summary, not a message of its own.
	f.feed("resolve:k30")
	f.advance(5 * time.Second)
	_, edits, _ = f.messages("!ops")
	if last := edits[len(edits)-1]; last.EditOf != roots[10].ID || !strings.Contains(last.Plain, "39 still open") {
		t.Fatalf("summary after a resolution:\n%s", last.Plain)
	}
}

func TestThreadCap(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ThreadCap = 3 })
	for i := range 10 {
		f.feed(fmt.Sprintf("detail:k:%d", i))
	}
	_, _, threads := f.messages("!ops")
	if len(threads) != 3 {
		t.Fatalf("%d thread replies, want the cap of 3", len(threads))
	}
	f.advance(5 * time.Second)
	_, edits, _ := f.messages("!ops")
	if !strings.Contains(edits[len(edits)-1].Plain, "7 details not posted") || !strings.Contains(edits[len(edits)-1].Plain, "10 events") {
		t.Fatalf("edit does not account for skipped details:\n%s", edits[len(edits)-1].Plain)
	}
	f.clock.Advance(time.Minute)
	f.feed("detail:k:later")
	if _, _, threads := f.messages("!ops"); len(threads) != 4 {
		t.Fatalf("cap did not reset after a minute: %d", len(threads))
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Routes = []Route{
			{Transport: "test", Room: "!all"},
			{Transport: "test", Room: "!web", Jobs: []string{"web*"}},
			{Transport: "test", Room: "!critical", MinSeverity: Critical},
			{Transport: "test", Room: "!other", Jobs: []string{"db"}},
		}
	})
	f.feed("fire:k:boom", "warn:w")
	counts := map[string]int{}
	for _, room := range []string{"!all", "!web", "!critical", "!other"} {
		roots, _, _ := f.messages(room)
		counts[room] = len(roots)
	}
	if fmt.Sprint(counts) != "map[!all:2 !critical:1 !other:0 !web:2]" {
		t.Fatalf("routing %v", counts)
	}
}

func TestHeldDuringDeploymentThenPosted(t *testing.T) {
	f := newFixture(t, nil)
	deploy := func(status string) {
		f.idx++
		ev := watchers.Event{Source: "nomad", Index: f.idx, Namespace: "default", Deployment: &watchers.Deployment{ID: "d1", Job: "web", Status: status}}
		if err := f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(status string) {
		f.idx++
		ev := watchers.Event{Source: "consul", Index: f.idx, Check: &watchers.Check{Node: "n1", CheckID: "c1", Status: status, Output: "HTTP 502", ServiceName: "web", ServiceID: "_nomad-task-xyz"}}
		if err := f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
	// The check's service is named like the job: during its deployment it waits.
	deploy("running")
	check("critical")
	if roots, _, _ := f.messages("!ops"); len(roots) != 0 {
		t.Fatal("posted during the deployment")
	}
	if in := f.incident("check/n1/c1"); in.State != store.IncidentHeld || in.HoldReason != "deployment of default/web" {
		t.Fatalf("incident %+v", in)
	}
	deploy("successful")
	roots, _, _ := f.messages("!ops")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "still failing after the deployment of default/web ended") {
		t.Fatalf("after the deployment: %v", roots)
	}
	// A check that recovers during the deployment is never posted.
	deploy("running")
	f.idx++
	ev := watchers.Event{Check: &watchers.Check{Node: "n2", CheckID: "c2", Status: "critical", ServiceName: "web"}}
	f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}})
	ev.Check.Status = "passing"
	f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}})
	deploy("successful")
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("a check that recovered during the deployment was posted")
	}
}

func TestSilences(t *testing.T) {
	f := newFixture(t, nil)
	ms, err := ParseMatchers("job=web*,node=n?")
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.e.AddSilence(t.Context(), ms, 10*time.Minute, "maintenance", "@alice:x")
	if err != nil {
		t.Fatal(err)
	}
	f.feed("fire:k:boom")
	if roots, _, _ := f.messages("!ops"); len(roots) != 0 {
		t.Fatal("a silenced incident was posted")
	}
	if in := f.incident("k"); !strings.Contains(in.SilencedBy, fmt.Sprintf("silence #%d", s.ID)) {
		t.Fatalf("silenced by %q", in.SilencedBy)
	}
	f.advance(11 * time.Minute)
	roots, _, _ := f.messages("!ops")
	if len(roots) != 1 {
		t.Fatalf("not posted after the silence expired: %d", len(roots))
	}
	// 🔇 on a posted incident: quiet until resolved, then the silence ends.
	in, err := f.e.SilenceIncident(t.Context(), f.incident("k").ID, "@bob:x")
	if err != nil || in.SilencedBy != "@bob:x" {
		t.Fatalf("silence incident: %+v %v", in, err)
	}
	f.feed("detail:k:more")
	if _, _, threads := f.messages("!ops"); len(threads) != 0 {
		t.Fatal("silenced incident still posts details")
	}
	f.feed("resolve:k")
	if active, _ := f.e.Silences(t.Context()); len(active) != 0 {
		t.Fatalf("silences after resolution: %+v", active)
	}
	for _, bad := range []string{"", "jb=web", "job", "job=[", "severity"} {
		if _, err := ParseMatchers(bad); err == nil {
			t.Errorf("ParseMatchers(%q) accepted", bad)
		}
	}
	if _, err := ParseMatchers("jb=web"); !strings.Contains(fmt.Sprint(err), `did you mean "job"`) {
		t.Errorf("no suggestion: %v", err)
	}
}

func TestAcknowledgeAndReminders(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ReminderInterval = 30 * time.Minute })
	f.feed("fire:k:boom", "fire:k2:boom")
	f.advance(31 * time.Minute)
	_, edits, threads := f.messages("!ops")
	if len(threads) != 2 || !strings.Contains(threads[0].Plain, "Still open after 31m00s and not acknowledged") {
		t.Fatalf("reminders: %v", threads)
	}
	in, err := f.e.Acknowledge(t.Context(), f.incident("k").ID, "@alice:x")
	if err != nil || in.AckedBy != "@alice:x" {
		t.Fatal(err)
	}
	_, edits2, _ := f.messages("!ops")
	if len(edits2) != len(edits)+1 || !strings.Contains(edits2[len(edits2)-1].Plain, "acknowledged by @alice:x") {
		t.Fatal("acknowledgement not shown")
	}
	if _, err := f.e.Acknowledge(t.Context(), in.ID, "@bob:x"); err == nil {
		t.Fatal("acknowledged twice")
	}
	f.advance(31 * time.Minute)
	_, _, threads = f.messages("!ops")
	if len(threads) != 3 {
		t.Fatalf("want one more reminder, for the unacknowledged incident only: %d", len(threads))
	}
	if _, err := f.e.Acknowledge(t.Context(), 999, "@a:x"); err == nil {
		t.Fatal("acknowledged a missing incident")
	}
}

// An incident opened from an old event (Vigie catching up) is dated by
// the event, but reminded an interval after it was posted, not at once.
func TestRemindersCountFromThePost(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.ReminderInterval = 30 * time.Minute
		c.Rules = []Rule{SourceBlind{Severity: Critical}}
	})
	old := f.clock.Now().Add(-72 * time.Hour)
	f.consume(sightEvent(watchers.SightBlind, watchers.Sight{Source: "Nomad", Address: "http://n:4646", Since: old, Reason: "refused"}))
	f.advance(time.Minute)
	if _, _, threads := f.messages("!ops"); len(threads) != 0 {
		t.Fatalf("reminded at once: %v", threads)
	}
	f.advance(30 * time.Minute)
	if _, _, threads := f.messages("!ops"); len(threads) != 1 || !strings.Contains(threads[0].Plain, "Still open after 3d0h") {
		t.Fatalf("reminder: %v", threads)
	}
}

func TestNoticesAreDeduplicated(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("notice:job/web")
	f.clock.Advance(2 * time.Second)
	f.feed("notice:job/web")
	roots, _, _ := f.messages("!ops")
	if len(roots) != 1 || !strings.HasPrefix(roots[0].Plain, "ℹ️ problem job/web") {
		t.Fatalf("notices: %v", roots)
	}
}

func TestSnapshotResolvesVanishedChecks(t *testing.T) {
	f := newFixture(t, nil)
	snap := func(checks ...*watchers.Check) {
		var evs []watchers.Event
		for _, c := range checks {
			evs = append(evs, watchers.Event{Source: "consul", Check: c})
		}
		if err := f.e.Consume(t.Context(), watchers.Batch{Snapshot: true, Cursor: watchers.Cursor{Name: "consul", Index: 50}, Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	snap(&watchers.Check{Node: "n1", CheckID: "a", Status: "critical", ServiceName: "web"}, &watchers.Check{Node: "n1", CheckID: "b", Status: "passing", ServiceName: "web"})
	f.advance(10 * time.Second)
	snap(&watchers.Check{Node: "n1", CheckID: "a", Status: "critical", ServiceName: "web"})
	f.advance(10 * time.Second)
	if in := f.incident("check/n1/a"); in.State != store.IncidentOpen || in.Events != 1 {
		t.Fatalf("a repeated identical state counted as a new event: %+v", in)
	}
	if _, edits, _ := f.messages("!ops"); len(edits) != 0 {
		t.Fatalf("a repeated identical state edited the message %d times", len(edits))
	}
	snap() // an ACL hiding everything: nothing is concluded from it
	if in := f.incident("check/n1/a"); in.State != store.IncidentOpen {
		t.Fatalf("an empty snapshot resolved an incident: %+v", in)
	}
	snap(&watchers.Check{Node: "n1", CheckID: "b", Status: "passing", ServiceName: "web"})
	if in := f.incident("check/n1/a"); in.State != store.IncidentResolved || in.Resolution != "check no longer registered in Consul" {
		t.Fatalf("%+v", in)
	}
}

// failingCommit does a transaction's work, then fails its commit.
type failingCommit struct{ *store.Store }

func (f failingCommit) InTx(ctx context.Context, fn func(*store.Tx) error) error {
	return f.Store.InTx(ctx, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return errors.New("disk full")
	})
}

// A batch whose effects cannot be stored leaves nothing behind, cursor
// included, and the engine keeps no state of its own: the same batch
// again gives exactly what it should have.
func TestBatchIsAtomic(t *testing.T) {
	f := newFixture(t, nil)
	f.feed("fire:k:boom")
	batch := watchers.Batch{Cursor: watchers.Cursor{Name: "test", Index: 99}, Events: []watchers.Event{{Check: &watchers.Check{Output: "fire:k9:x"}}}}
	broken := New(f.e.cfg, failingCommit{f.st})
	if err := broken.Consume(t.Context(), batch); err == nil {
		t.Fatal("consume with a failing commit succeeded")
	}
	if idx, _, _, _ := f.st.Cursor(t.Context(), "test"); idx != f.idx {
		t.Fatalf("cursor moved to %d", idx)
	}
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("%d messages", len(roots))
	}
	if err := f.e.Consume(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if roots, _, _ := f.messages("!ops"); len(roots) != 2 {
		t.Fatalf("replayed batch: %d messages, want 2", len(roots))
	}
	if idx, _, _, _ := f.st.Cursor(t.Context(), "test"); idx != 99 {
		t.Fatalf("cursor %d after the replay", idx)
	}
}

// Allocation facts (alloc ID -> job, for holds) are forgotten once long
// unseen, so they do not pile up forever.
func TestAllocFactsArePruned(t *testing.T) {
	f := newFixture(t, nil)
	ev := watchers.Event{Source: "nomad", Namespace: "default", Alloc: &watchers.Alloc{ID: "a1", Job: "web", Group: "g", ClientStatus: "running", DesiredStatus: "run"}}
	if err := f.e.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	known := func() bool {
		var ok bool
		if err := f.st.InTx(t.Context(), func(tx *store.Tx) error {
			var err error
			_, ok, err = tx.Fact(t.Context(), factAlloc, "a1")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	f.advance(24 * time.Hour)
	if !known() {
		t.Fatal("a recent allocation fact was pruned")
	}
	f.advance(allocFactTTL)
	if known() {
		t.Fatal("an allocation fact unseen for longer than the TTL was kept")
	}
}

// wakeLog records the transports the engine wakes.
type wakeLog struct {
	mu  sync.Mutex
	got []string
}

func (w *wakeLog) Wake(transport string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, transport)
}

func (w *wakeLog) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.got)
}

// Alerts leave at once: the sender of a transport is woken once the pass
// that queued its messages has committed, not at its next poll; a pass
// that queued nothing, or failed to commit, wakes no one.
func TestSendersAreWokenAfterTheCommit(t *testing.T) {
	wakes := &wakeLog{}
	f := newFixture(t, func(c *Config) { c.Waker = wakes })
	f.feed("fire:k:boom")
	if wakes.count() != 1 || wakes.got[0] != "test" {
		t.Fatalf("woken %v after an incident opened", wakes.got)
	}
	f.feed("resolve:nothing-open")
	if wakes.count() != 1 {
		t.Fatalf("woken %v by a pass that queued nothing", wakes.got)
	}
	broken := New(f.e.cfg, failingCommit{f.st})
	if err := broken.Consume(t.Context(), watchers.Batch{Events: []watchers.Event{{Check: &watchers.Check{Output: "fire:k2:x"}}}}); err == nil {
		t.Fatal("consume with a failing commit succeeded")
	}
	if wakes.count() != 1 {
		t.Fatalf("woken %v by a pass that did not commit", wakes.got)
	}
	f.clock.Advance(time.Minute)
	f.feed("resolve:k")
	if wakes.count() != 2 {
		t.Fatalf("woken %v after a resolution", wakes.got)
	}
}
