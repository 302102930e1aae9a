package outbox

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// recorder is a scripted transport: it records what it was asked to send
// and fails according to the script, keyed by message text.
type recorder struct {
	mu       sync.Mutex
	sent     []Delivery
	attempts map[string]int
	failures map[string][]error // errors returned on successive attempts
}

func newRecorder() *recorder {
	return &recorder{attempts: map[string]int{}, failures: map[string][]error{}}
}

func (r *recorder) Deliver(_ context.Context, d Delivery) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.attempts[d.Plain]
	r.attempts[d.Plain]++
	if script := r.failures[d.Plain]; n < len(script) && script[n] != nil {
		return "", script[n]
	}
	r.sent = append(r.sent, d)
	return "$" + d.TxnID, nil
}

func (r *recorder) tries(text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[text]
}

func (r *recorder) delivered() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.sent...)
}

type fixture struct {
	st      *store.Store
	box     *Outbox
	rec     *recorder
	metrics *telemetry.Metrics
	dir     string
}

func newFixture(t *testing.T) *fixture {
	dir := filepath.Join(t.TempDir(), "data")
	st, err := store.Open(t.Context(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fixture{st: st, box: New(st), rec: newRecorder(), metrics: telemetry.NewMetrics(), dir: dir}
}

var fastRetries = SenderConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Poll: 10 * time.Millisecond}

// start runs a sender until the test ends.
func (f *fixture) start(t *testing.T, cfg SenderConfig) *Sender {
	s := f.box.NewSender("matrix", f.st, f.rec, cfg, f.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (f *fixture) send(t *testing.T, room, text string, editOf int64) int64 {
	ids, err := f.box.Send(t.Context(), Message{Transport: "matrix", Room: room, Content: render.Render(render.Text(text)), EditOf: editOf})
	if err != nil {
		t.Fatal(err)
	}
	return ids[0]
}

func (f *fixture) waitState(t *testing.T, id int64, state string) store.OutMessage {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := f.st.Message(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if m.State == state {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("message %d stayed %s (want %s), last error %q", id, m.State, state, m.LastError)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeliversInOrderAndResolvesEdits(t *testing.T) {
	f := newFixture(t)
	// Queue before the sender runs, as after a restart.
	a1 := f.send(t, "!a", "a1", 0)
	b1 := f.send(t, "!b", "b1", 0)
	a2 := f.send(t, "!a", "a1 edited", a1)
	f.start(t, fastRetries)
	f.waitState(t, a2, store.StateSent)
	f.waitState(t, b1, store.StateSent)

	got := f.rec.delivered()
	var order []string
	for _, d := range got {
		order = append(order, d.Plain)
	}
	if fmt.Sprint(order) != "[a1 b1 a1 edited]" {
		t.Fatalf("delivery order %v", order)
	}
	orig := f.waitState(t, a1, store.StateSent)
	if got[2].EditOfRemote != orig.RemoteID || orig.RemoteID != "$"+orig.TxnID {
		t.Fatalf("edit resolved to %q, original sent as %q", got[2].EditOfRemote, orig.RemoteID)
	}
}

func TestTransientFailureRetriesWithSameTxnAndDoesNotBlockOtherRooms(t *testing.T) {
	f := newFixture(t)
	f.rec.failures["a1"] = []error{errors.New("502 bad gateway"), errors.New("connection refused")}
	a1 := f.send(t, "!a", "a1", 0)
	a2 := f.send(t, "!a", "a2", 0)
	b1 := f.send(t, "!b", "b1", 0)
	f.start(t, fastRetries)
	f.waitState(t, a2, store.StateSent)
	f.waitState(t, b1, store.StateSent)

	m := f.waitState(t, a1, store.StateSent)
	if m.Attempts != 3 || m.AttemptedAt.IsZero() {
		t.Errorf("attempts recorded %d (last at %v), want 3", m.Attempts, m.AttemptedAt)
	}
	got := f.rec.delivered()
	if got[0].Plain != "b1" {
		t.Errorf("room !b waited behind room !a's failing message: %v", got[0].Plain)
	}
	if got[1].Plain != "a1" || got[2].Plain != "a2" {
		t.Errorf("room !a out of order")
	}
	if f.rec.tries("a1") != 3 {
		t.Errorf("a1 attempted %d times", f.rec.tries("a1"))
	}
	if v := counter(f.metrics, "transient"); v != 2 {
		t.Errorf("retried metric %v", v)
	}
}

func TestRateLimitPausesTheTransport(t *testing.T) {
	f := newFixture(t)
	f.rec.failures["a1"] = []error{RateLimited(errors.New("M_LIMIT_EXCEEDED"), 300*time.Millisecond)}
	a1 := f.send(t, "!a", "a1", 0)
	b1 := f.send(t, "!b", "b1", 0)
	start := time.Now()
	cfg := fastRetries
	cfg.Poll = time.Minute // the pause, not the poll interval, must end the wait
	f.start(t, cfg)
	f.waitState(t, a1, store.StateSent)
	f.waitState(t, b1, store.StateSent)
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("delivered after %v, before retry_after elapsed", el)
	}
	if v := counter(f.metrics, "rate_limited"); v != 1 {
		t.Errorf("rate-limited metric %v", v)
	}
}

func TestPermanentFailureFailsDependentEdits(t *testing.T) {
	f := newFixture(t)
	f.rec.failures["a1"] = []error{Permanent(errors.New("M_FORBIDDEN: not in room"))}
	a1 := f.send(t, "!a", "a1", 0)
	edit := f.send(t, "!a", "a1 edited", a1)
	a3 := f.send(t, "!a", "a3", 0)
	f.start(t, fastRetries)
	f.waitState(t, a3, store.StateSent)
	if m := f.waitState(t, a1, store.StateFailed); m.LastError != "M_FORBIDDEN: not in room" {
		t.Errorf("reason %q", m.LastError)
	}
	if m := f.waitState(t, edit, store.StateFailed); m.LastError == "" {
		t.Error("edit of a failed message failed without a reason")
	}
	if f.rec.tries("a1 edited") != 0 {
		t.Error("edit of a failed message was sent")
	}
}

func TestGivesUpAfterDeadline(t *testing.T) {
	f := newFixture(t)
	f.rec.failures["a1"] = []error{errors.New("timeout"), errors.New("timeout"), errors.New("timeout"), errors.New("timeout")}
	a1 := f.send(t, "!a", "a1", 0)
	cfg := fastRetries
	cfg.GiveUpAfter = 30 * time.Millisecond
	f.start(t, cfg)
	m := f.waitState(t, a1, store.StateFailed)
	if m.Attempts == 0 {
		t.Error("gave up without recording attempts")
	}
}

// A sender stopped mid-way (the process died) leaves messages pending; the
// next sender on the same store resends them with their original txn IDs.
func TestRestartResendsWithSameTxnID(t *testing.T) {
	f := newFixture(t)
	hang := make(chan struct{})
	first := &blockingDeliverer{hang: hang, called: make(chan struct{})}
	id := f.send(t, "!a", "a1", 0)
	orig, _ := f.st.Message(t.Context(), id)

	s1 := f.box.NewSender("matrix", f.st, first, fastRetries, f.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s1.Run(ctx) }()
	<-first.called
	cancel() // "crash" while the request is in flight
	close(hang)
	<-done
	if m, _ := f.st.Message(t.Context(), id); m.State != store.StatePending {
		t.Fatalf("message left %s after an interrupted send", m.State)
	}

	f.start(t, fastRetries)
	sent := f.waitState(t, id, store.StateSent)
	got := f.rec.delivered()
	if len(got) != 1 || got[0].TxnID != orig.TxnID || first.txn != orig.TxnID || sent.RemoteID != "$"+orig.TxnID {
		t.Fatalf("resend used txn %v, first attempt %q, original %q", got, first.txn, orig.TxnID)
	}
}

type blockingDeliverer struct {
	hang   chan struct{}
	called chan struct{}
	txn    string
	once   sync.Once
}

func (b *blockingDeliverer) Deliver(ctx context.Context, d Delivery) (string, error) {
	b.txn = d.TxnID
	b.once.Do(func() { close(b.called) })
	<-b.hang
	return "", ctx.Err()
}

func TestDrain(t *testing.T) {
	f := newFixture(t)
	s := f.start(t, fastRetries)
	for i := range 20 {
		f.send(t, "console", fmt.Sprint(i), 0)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.rec.delivered()); n != 20 {
		t.Fatalf("drained with %d of 20 delivered", n)
	}
}

func counter(m *telemetry.Metrics, reason string) float64 {
	mfs, _ := m.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "vigie_messages_retried_total" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return metric.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A long backlog behind a failing message in one room must not delay other
// rooms, nor make the sender spin.
func TestBacklogInOneRoomDoesNotStarveOthers(t *testing.T) {
	f := newFixture(t)
	failures := make([]error, 1000)
	for i := range failures {
		failures[i] = errors.New("503 service unavailable")
	}
	f.rec.failures["a0"] = failures
	msgs := make([]Message, 600)
	for i := range msgs {
		msgs[i] = Message{Transport: "matrix", Room: "!a", Content: render.Render(render.Textf("a%d", i))}
	}
	if _, err := f.box.Send(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	b := f.send(t, "!b", "b0", 0)
	cfg := fastRetries
	cfg.MinBackoff, cfg.MaxBackoff = 50*time.Millisecond, 100*time.Millisecond
	f.start(t, cfg)
	f.waitState(t, b, store.StateSent)
	time.Sleep(300 * time.Millisecond)
	if n := f.rec.tries("a0"); n < 2 || n > 10 {
		t.Fatalf("head of the blocked room attempted %d times in ~300ms with 50-100ms backoff", n)
	}
	if f.rec.tries("a1") != 0 {
		t.Fatal("a message was sent ahead of its room's head")
	}
}

// reconciling is a transport that remembers what reached the room, like a
// homeserver whose answer was lost: it can tell afterwards.
type reconciling struct {
	*recorder
	room       map[string]string // txn ID -> remote ID
	reconciled []string
}

func (r *reconciling) Reconcile(_ context.Context, d Delivery) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reconciled = append(r.reconciled, d.TxnID)
	id, ok := r.room[d.TxnID]
	return id, ok, nil
}

// An attempt cut short after the message reached the room is not repeated:
// the transport finds it and the message is marked sent with its ID.
func TestInterruptedAttemptIsReconciledNotResent(t *testing.T) {
	f := newFixture(t)
	reached := f.send(t, "!a", "reached", 0)
	lost := f.send(t, "!b", "lost", 0)
	for _, id := range []int64{reached, lost} {
		if err := f.st.StartAttempt(t.Context(), id); err != nil { // the process died during these
			t.Fatal(err)
		}
	}
	m, _ := f.st.Message(t.Context(), reached)
	tr := &reconciling{recorder: f.rec, room: map[string]string{m.TxnID: "$already"}}
	s := f.box.NewSender("matrix", f.st, tr, fastRetries, f.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	if got := f.waitState(t, reached, store.StateSent); got.RemoteID != "$already" || got.Attempts != 1 {
		t.Fatalf("reconciled message: %+v", got)
	}
	f.waitState(t, lost, store.StateSent)
	if f.rec.tries("reached") != 0 || f.rec.tries("lost") != 1 {
		t.Fatalf("sent again: %d, %d", f.rec.tries("reached"), f.rec.tries("lost"))
	}
	fresh := f.send(t, "!a", "fresh", 0)
	f.waitState(t, fresh, store.StateSent)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.reconciled) != 2 {
		t.Fatalf("reconciled %d messages; a message never tried needs no reconciliation", len(tr.reconciled))
	}
}

// Only an attempt whose outcome is unknown is looked for before a retry: a
// rate limit or an HTTP 500 is a clear "not taken".
func TestOnlyUnknownOutcomesAreReconciled(t *testing.T) {
	f := newFixture(t)
	f.rec.failures["limited"] = []error{RateLimited(errors.New("M_LIMIT_EXCEEDED"), 10*time.Millisecond)}
	f.rec.failures["refused"] = []error{Refused(errors.New("HTTP 500"))}
	f.rec.failures["unknown"] = []error{errors.New("read: connection reset")}
	tr := &reconciling{recorder: f.rec, room: map[string]string{}}
	ids := []int64{f.send(t, "!a", "limited", 0), f.send(t, "!b", "refused", 0), f.send(t, "!c", "unknown", 0)}
	s := f.box.NewSender("matrix", f.st, tr, fastRetries, f.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for _, id := range ids {
		f.waitState(t, id, store.StateSent)
	}
	unknown, _ := f.st.Message(t.Context(), ids[2])
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.reconciled) != 1 || tr.reconciled[0] != unknown.TxnID {
		t.Fatalf("reconciled %v, want only the unknown outcome %s", tr.reconciled, unknown.TxnID)
	}
}

// countingLedger counts the sender's reads of pending heads.
type countingLedger struct {
	Ledger
	mu    sync.Mutex
	heads int
}

func (c *countingLedger) PendingHeads(ctx context.Context, transport string) ([]store.OutMessage, error) {
	c.mu.Lock()
	c.heads++
	c.mu.Unlock()
	return c.Ledger.PendingHeads(ctx, transport)
}

func (c *countingLedger) reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heads
}

// An idle sender reads the store once per Poll, not more: neither a pass
// that finds nothing nor the wake-ups of messages it already delivered make
// it go again at once. Commits wake it: delivery does not wait for the poll.
func TestIdleSenderPollsAtItsPace(t *testing.T) {
	f := newFixture(t)
	ledger := &countingLedger{Ledger: f.st}
	const poll = 500 * time.Millisecond
	s := f.box.NewSender("matrix", ledger, f.rec, SenderConfig{MinBackoff: time.Second, Poll: poll}, f.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	start := time.Now()
	ids := []int64{f.send(t, "!a", "one", 0), f.send(t, "!b", "two", 0), f.send(t, "!a", "three", 0)}
	for _, id := range ids {
		f.waitState(t, id, store.StateSent)
	}
	if took := time.Since(start); took >= poll {
		t.Fatalf("delivery took %v: the sender waited for its poll instead of being woken", took)
	}
	settled, base := time.Now(), ledger.reads()
	time.Sleep(2 * poll)
	// At most the pass that found the queue empty, then one per poll.
	if n, most := ledger.reads()-base, 1+int(time.Since(settled)/poll); n > most {
		t.Fatalf("idle sender read pending messages %d times in %v (poll %v), want at most %d", n, time.Since(settled), poll, most)
	}
}

// A pass reads what was committed before the wake-ups already sent: it
// consumes them, so the wait after it is not cut short for nothing.
func TestPassConsumesWakeUps(t *testing.T) {
	f := newFixture(t)
	s := f.box.NewSender("matrix", f.st, f.rec, SenderConfig{Poll: time.Hour}, f.metrics)
	f.send(t, "!a", "one", 0) // wakes the sender
	if wait, err := s.pass(t.Context()); err != nil || wait != 0 {
		t.Fatalf("first pass: wait %v, %v; want progress", wait, err)
	}
	if wait, err := s.pass(t.Context()); err != nil || wait != time.Hour {
		t.Fatalf("second pass: wait %v, %v; want the poll interval", wait, err)
	}
	select {
	case <-s.wake:
		t.Fatal("a wake-up for a message already delivered is still pending")
	default:
	}
}
