package watchers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// The Nomad-registered service instance of the captures (job web).
const consulWebService = "_nomad-task-4e41c0d4-8722-608b-bdb1-6a3e4cfd23ec-server-web-http"

// consulSink hands batches to the test; Consume fails with err if set.
type consulSink struct {
	batches chan Batch
	err     error
}

func (s *consulSink) Consume(ctx context.Context, b Batch) error {
	if s.err != nil {
		return s.err
	}
	b.Events = slices.Clone(b.Events) // the watcher reuses them
	select {
	case s.batches <- b:
	case <-ctx.Done():
	}
	return nil
}

// consulLogs is a zerolog destination the test can read while the watcher writes.
type consulLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *consulLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *consulLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// entries returns the log entries of a level whose message contains msg.
func (l *consulLogs) entries(t *testing.T, level, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(l.String()) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if e["level"] == level && strings.Contains(e["message"].(string), msg) {
			out = append(out, e)
		}
	}
	return out
}

type consulHarness struct {
	fake    *fakeconsul.Server
	sink    *consulSink
	logs    *consulLogs
	lookout *lookoutLog
	stop    func() error // cancels Watch and returns its result
}

// startConsul runs a watcher against a fresh fake, prepared by setup before
// the first request, with short waits so that no test sleeps long.
func startConsul(t *testing.T, cfg ConsulConfig, setup func(*fakeconsul.Server)) *consulHarness {
	t.Helper()
	f := fakeconsul.New()
	t.Cleanup(f.Close)
	if setup != nil {
		setup(f)
	}
	return startConsulAt(t, cfg, f)
}

// startConsulAt runs a watcher of f, at cfg.Address if set (a proxy in
// front of f), else at f's.
func startConsulAt(t *testing.T, cfg ConsulConfig, f *fakeconsul.Server) *consulHarness {
	t.Helper()
	if cfg.Address == "" {
		cfg.Address = f.URL
	}
	if cfg.Wait == 0 {
		cfg.Wait = time.Second
	}
	if cfg.MinInterval == 0 {
		cfg.MinInterval = 10 * time.Millisecond
	}
	if cfg.Backoff == (Backoff{}) {
		cfg.Backoff = Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	}
	h := &consulHarness{fake: f, sink: &consulSink{batches: make(chan Batch, 100)}, logs: &consulLogs{}, lookout: &lookoutLog{}}
	ctx, cancel := context.WithCancel(zerolog.New(h.logs).Level(zerolog.DebugLevel).WithContext(t.Context()))
	done := make(chan error, 1)
	w := NewConsul(cfg)
	go func() { done <- w.Watch(ctx, h.sink, h.lookout) }()
	var once sync.Once
	var err error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Watch did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("Watch returned %v after cancel, want nil", err)
		}
	})
	return h
}

// next returns the next batch delivered.
func (h *consulHarness) next(t *testing.T) Batch {
	t.Helper()
	select {
	case b := <-h.sink.batches:
		return b
	case <-time.After(10 * time.Second):
		t.Fatalf("no batch delivered; requests %v", h.fake.Requests())
		return Batch{}
	}
}

// nextAt returns the first batch delivered at index or later, skipping
// earlier ones (two quick changes may arrive as one snapshot or two).
func (h *consulHarness) nextAt(t *testing.T, index uint64) Batch {
	t.Helper()
	for {
		if b := h.next(t); b.Cursor.Index >= index {
			return b
		}
	}
}

// noBatch fails if a batch is waiting.
func (h *consulHarness) noBatch(t *testing.T) {
	t.Helper()
	select {
	case b := <-h.sink.batches:
		t.Fatalf("unexpected batch at index %d: %+v", b.Cursor.Index, b.Events)
	default:
	}
}

// waitRequests waits until n requests matching ok have reached the fake.
func (h *consulHarness) waitRequests(t *testing.T, n int, ok func(fakeconsul.Request) bool) []fakeconsul.Request {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []fakeconsul.Request
		for _, r := range h.fake.Requests() {
			if ok(r) {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d matching requests, want %d; requests %v", len(got), n, h.fake.Requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func atIndex(i uint64) func(fakeconsul.Request) bool {
	return func(r fakeconsul.Request) bool { return r.Index() == i }
}

func consulCheck(t *testing.T, b Batch, node, checkID string) *Check {
	t.Helper()
	for _, e := range b.Events {
		if e.Check.Node == node && e.Check.CheckID == checkID {
			return e.Check
		}
	}
	t.Fatalf("no check %s/%s at index %d", node, checkID, b.Cursor.Index)
	return nil
}

func TestConsulFirstSnapshotThenTTLExpiry(t *testing.T) {
	h := startConsul(t, ConsulConfig{Datacenter: "dc1"}, nil)
	b := h.next(t)
	if !b.Snapshot || b.Cursor != (Cursor{Name: "consul", Index: 48}) || len(b.Events) != 7 {
		t.Fatalf("first batch: snapshot %v, cursor %+v, %d events", b.Snapshot, b.Cursor, len(b.Events))
	}
	for _, e := range b.Events {
		if e.Source != "consul" || e.Topic != "Check" || e.Index != 48 || e.Check == nil || e.Type != e.Check.Status ||
			e.Alloc != nil || e.Node != nil || e.Job != nil || e.Check.Maintenance != "" {
			t.Errorf("event %+v, check %+v", e, e.Check)
		}
	}
	// Nomad's own agent checks, Consul's serfHealth, the Nomad-registered
	// web service and the node-level TTL check, as captured.
	for id, service := range map[string]string{
		"_nomad-check-1bd878f3855d5015fb7b3b0f7502795324160bc9": "nomad",
		"_nomad-check-5a069097f072e2ffe283e5dd51c3083f921c810f": "nomad",
		"_nomad-check-883ea018c9192d1b8e982928e271cb986bba167b": "nomad",
		"_nomad-check-b0c7f8e2e6faccad4ebcffe175f3c1fe246ab65c": "nomad-client",
		"_nomad-check-da884b9ce3171c30ebdcc868196e4801d70d13ba": "web",
		"chatops-ttl": "",
		"serfHealth":  "",
	} {
		if c := consulCheck(t, b, "vm", id); c.ServiceName != service || c.Status != "passing" {
			t.Errorf("%s: %+v", id, c)
		}
	}
	if web := consulCheck(t, b, "vm", "_nomad-check-da884b9ce3171c30ebdcc868196e4801d70d13ba"); web.ServiceID != consulWebService ||
		web.Name != "web-alive" || !slices.Equal(web.ServiceTags, []string{"chatops", "v2"}) {
		t.Errorf("web check %+v", web)
	}

	first := h.fake.Requests()[0]
	if first.Path != "/v1/health/state/any" || first.Index() != 0 || first.Query.Has("wait") || first.Query.Get("dc") != "dc1" {
		t.Fatalf("first request %s, want a plain read", first)
	}
	blocking := h.waitRequests(t, 1, atIndex(48))[0]
	if blocking.Query.Get("wait") != "1s" {
		t.Fatalf("blocking request %s", blocking)
	}

	h.fake.ExpireTTL() // the captured transition: index 50, TTL expired
	b = h.next(t)
	if !b.Snapshot || b.Cursor.Index != 50 || len(b.Events) != 7 {
		t.Fatalf("after TTL: cursor %+v, %d events", b.Cursor, len(b.Events))
	}
	ttl := consulCheck(t, b, "vm", "chatops-ttl")
	if ttl.Status != "critical" || ttl.Output != "TTL expired (last output before timeout follows): heartbeat ok" {
		t.Fatalf("chatops-ttl %+v", ttl)
	}
	for _, e := range b.Events {
		if e.Type != e.Check.Status || e.Index != 50 {
			t.Errorf("event %+v", e)
		}
	}
	h.waitRequests(t, 1, atIndex(50))
}

func TestConsulUnchangedStateDeliversNothing(t *testing.T) {
	h := startConsul(t, ConsulConfig{Wait: 200 * time.Millisecond}, nil)
	h.next(t)
	// Three queries at 48: at least two came back with the wait elapsed.
	for _, r := range h.waitRequests(t, 3, atIndex(48)) {
		if r.Query.Get("wait") != "200ms" {
			t.Fatalf("request %s", r)
		}
	}
	h.noBatch(t)

	// A new index with the same content (a check rewritten as it was) is
	// no change either: Consul's index says "maybe", the diff decides.
	if err := h.fake.UpdateCheck("vm", "serfHealth", "passing", "Agent alive and reachable"); err != nil {
		t.Fatal(err)
	}
	h.waitRequests(t, 1, atIndex(49))
	h.noBatch(t)
}

func TestConsulIndexBackwardsResets(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, nil)
	h.next(t)
	h.waitRequests(t, 1, atIndex(48))
	// A snapshot restore: the same checks at a lower index.
	if err := h.fake.SetChecksJSON(30, fakeconsul.StateBefore()); err != nil {
		t.Fatal(err)
	}
	b := h.next(t)
	if !b.Snapshot || b.Cursor.Index != 30 || len(b.Events) != 7 {
		t.Fatalf("after the reset: cursor %+v, %d events (the reset must deliver even an unchanged state)", b.Cursor, len(b.Events))
	}
	h.waitRequests(t, 1, atIndex(30))
	rs := h.fake.Requests()
	var seq []uint64
	for _, r := range rs {
		seq = append(seq, r.Index())
	}
	// 0 (first read), 48 (answered 30 at once: the whole new state, taken
	// as is), 30 (blocking on the new index).
	if !slices.Equal(seq[:3], []uint64{0, 48, 30}) {
		t.Fatalf("request indexes %v, want 0 48 30; %v", seq, rs)
	}
}

// A Consul agent that goes down and comes back as a new agent (fresh data,
// lower index) is read again at once: after an error the watcher never
// blocks on an index from before it, which the new agent would take the
// whole wait (5 min here) to reach.
func TestConsulOutageEndsInSeconds(t *testing.T) {
	h := startConsul(t, ConsulConfig{Wait: 5 * time.Minute}, nil)
	h.next(t)
	h.waitRequests(t, 1, atIndex(48))
	before := len(h.fake.Requests())
	h.fake.Stop()
	waitFor(t, "the outage to be noticed", func() bool {
		return len(h.logs.entries(t, "warn", "Consul health watch failing")) > 0
	})
	// A check went critical meanwhile; the new agent's index is far lower.
	restarted := time.Now()
	if err := h.fake.Restart(5, fakeconsul.StateTTLExpired()); err != nil {
		t.Fatal(err)
	}
	b := h.next(t) // within 10 s, not 5 min
	t.Logf("FIGURE Consul back as a new agent → its state delivered: %v", time.Since(restarted))
	if b.Cursor.Index != 5 || consulCheck(t, b, "vm", "chatops-ttl").Status != "critical" {
		t.Fatalf("after the restart: cursor %+v", b.Cursor)
	}
	if seen, lost := h.lookout.counts(); seen < 2 || lost == 0 {
		t.Fatalf("lookout told %d answers, %d failures", seen, lost)
	}
	after := h.fake.Requests()[before:]
	if len(after) == 0 || after[0].Index() != 0 || after[0].Query.Has("wait") {
		t.Fatalf("first request after the outage %v, want a plain read", after)
	}
}

func TestConsulNeverBlocksOnZero(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, func(f *fakeconsul.Server) {
		if err := f.SetChecksJSON(0, fakeconsul.StateBefore()); err != nil {
			t.Fatal(err)
		}
	})
	if b := h.next(t); b.Cursor.Index != 0 || len(b.Events) != 7 {
		t.Fatalf("cursor %+v, %d events", b.Cursor, len(b.Events))
	}
	r := h.waitRequests(t, 1, func(r fakeconsul.Request) bool { return r.Query.Has("wait") })[0]
	if r.Index() != 1 {
		t.Fatalf("blocking request %s, want index=1", r)
	}
}

func TestConsulMaintenance(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, nil)
	h.next(t)
	f := h.fake
	f.AddCheck(api.HealthCheck{Node: "vm2", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable"})
	h.nextAt(t, f.Index())

	const webCheck = "_nomad-check-da884b9ce3171c30ebdcc868196e4801d70d13ba"
	if err := f.AddMaintenance("vm", consulWebService); err != nil {
		t.Fatal(err)
	}
	b := h.nextAt(t, f.Index())
	for _, e := range b.Events {
		c := e.Check
		want := ""
		if c.Node == "vm" && c.ServiceID == consulWebService {
			want = MaintenanceService
		}
		if c.Maintenance != want {
			t.Errorf("service maintenance: %s/%s Maintenance %q, want %q", c.Node, c.CheckID, c.Maintenance, want)
		}
	}
	if m := consulCheck(t, b, "vm", "_service_maintenance:"+consulWebService); m.Status != "critical" || m.ServiceName != "web" ||
		m.Maintenance != MaintenanceService || !strings.HasPrefix(m.Notes, "Maintenance mode is enabled for this service") {
		t.Errorf("service maintenance check %+v", m)
	}
	if web := consulCheck(t, b, "vm", webCheck); web.Status != "passing" {
		t.Errorf("web check %+v", web)
	}

	if err := f.AddMaintenance("vm", ""); err != nil {
		t.Fatal(err)
	}
	b = h.nextAt(t, f.Index())
	for _, e := range b.Events {
		if c := e.Check; (c.Maintenance == MaintenanceNode) != (c.Node == "vm") {
			t.Errorf("node maintenance: %s/%s Maintenance %q", c.Node, c.CheckID, c.Maintenance)
		}
	}
	if m := consulCheck(t, b, "vm", "_node_maintenance"); m.Status != "critical" || m.ServiceID != "" {
		t.Errorf("node maintenance check %+v", m)
	}

	f.RemoveMaintenance("vm", "")
	f.RemoveMaintenance("vm", consulWebService)
	b = h.nextAt(t, f.Index())
	if len(b.Events) != 8 {
		t.Fatalf("%d events after maintenance, want 8", len(b.Events))
	}
	for _, e := range b.Events {
		if e.Check.Maintenance != "" {
			t.Errorf("still in maintenance: %+v", e.Check)
		}
	}
}

func TestConsulRateLimit(t *testing.T) {
	const interval = 100 * time.Millisecond
	h := startConsul(t, ConsulConfig{Wait: 5 * time.Second, MinInterval: interval}, nil)
	h.next(t)
	h.waitRequests(t, 1, atIndex(48))

	// Churn: every write wakes the blocked query, so an unlimited loop
	// would send hundreds of requests in this window.
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			_ = h.fake.UpdateCheck("vm", "chatops-ttl", "passing", strings.Repeat("beat ", i%7+1))
		}
	})
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	window := time.Since(start)

	n := 0
	for _, r := range h.fake.Requests() {
		if !r.At.Before(start) {
			n++
		}
	}
	// The bucket allows its burst of 2 plus one per interval; allow a
	// little more for timer granularity.
	limit := 2 + int(window/interval) + 2
	t.Logf("%d requests in %s (limit %d)", n, window, limit)
	if n > limit || n < 3 {
		t.Fatalf("%d requests in %s, want between 3 and %d", n, window, limit)
	}
	if len(h.sink.batches) == 0 {
		t.Fatal("no snapshot delivered during the churn")
	}
}

func TestConsulServerErrorsBackOffAndLogOnce(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, func(f *fakeconsul.Server) {
		f.FailNext(3, 500)
		f.FailNext(1, 429)
	})
	b := h.next(t)
	if b.Cursor.Index != 48 || len(b.Events) != 7 {
		t.Fatalf("after recovery: cursor %+v, %d events", b.Cursor, len(b.Events))
	}
	rs := h.fake.Requests()
	if len(rs) < 5 {
		t.Fatalf("requests %v", rs)
	}
	for i := 1; i < 5; i++ {
		if gap := rs[i].At.Sub(rs[i-1].At); gap < 3*time.Millisecond || rs[i].Index() != 0 {
			t.Errorf("retry %d after %s with index %d: no backoff, or not a plain read", i, gap, rs[i].Index())
		}
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	warns := h.logs.entries(t, "warn", "Consul health watch failing")
	if len(warns) != 1 || warns[0]["address"] != h.fake.URL ||
		!strings.Contains(warns[0]["error"].(string), "Consul at "+h.fake.URL+" answered 500 Internal Server Error: No cluster leader") {
		t.Fatalf("outage logs %v\n%s", warns, h.logs)
	}
	rec := h.logs.entries(t, "info", "Consul health watch recovered")
	if len(rec) != 1 || rec[0]["down_for"] == nil || rec[0]["failures"] != 4.0 {
		t.Fatalf("recovery logs %v\n%s", rec, h.logs)
	}
}

func TestConsulRefusedToken(t *testing.T) {
	const right, wrong = "right-5e1f0c7a-token", "wrong-9b2d4e61-token"
	h := startConsul(t, ConsulConfig{Token: wrong}, func(f *fakeconsul.Server) { f.SetToken(right) })
	for _, r := range h.waitRequests(t, 3, func(fakeconsul.Request) bool { return true }) {
		if r.Token != wrong || r.Query.Has("token") {
			t.Fatalf("request %s sent token %q, want it in X-Consul-Token only", r, r.Token)
		}
	}
	h.noBatch(t)
	h.fake.SetToken(wrong) // the operator fixes the ACL
	if b := h.next(t); len(b.Events) != 7 {
		t.Fatalf("%d events after the fix", len(b.Events))
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}

	errs := h.logs.entries(t, "error", "Consul health watch failing")
	want := "Consul at " + h.fake.URL + " refused the token (403): ACL not found"
	if len(errs) != 1 || errs[0]["error"] != want {
		t.Fatalf("want one error %q, got %v\n%s", want, errs, h.logs)
	}
	if len(h.logs.entries(t, "info", "recovered")) != 1 {
		t.Fatalf("no single recovery log\n%s", h.logs)
	}
	if s := h.logs.String(); strings.Contains(s, "5e1f0c7a") || strings.Contains(s, "9b2d4e61") {
		t.Fatalf("a token leaked into the logs:\n%s", s)
	}
}

func TestConsulGarbageBody(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, func(f *fakeconsul.Server) { f.CorruptNext(1) })
	// The first batch is the good answer after the corrupt one, complete.
	if b := h.next(t); b.Cursor.Index != 48 || len(b.Events) != 7 {
		t.Fatalf("cursor %+v, %d events", b.Cursor, len(b.Events))
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	errs := h.logs.entries(t, "error", "Consul health watch failing")
	if len(errs) != 1 || !strings.Contains(errs[0]["error"].(string), "Consul at "+h.fake.URL+" sent an invalid health response at index 48") {
		t.Fatalf("error logs %v\n%s", errs, h.logs)
	}
	if len(h.logs.entries(t, "info", "recovered")) != 1 {
		t.Fatalf("no single recovery log\n%s", h.logs)
	}
}

// An answer that breaks off is told as such, whatever its index or
// bytes; a whole one with a bad index or bad bytes as malformed.
func TestConsulBrokenAndMalformedAnswers(t *testing.T) {
	good := string(consulMarshal(t, consulTestChecks()))
	for _, tc := range []struct {
		name, index, body string
		length            int // Content-Length, if more than the body: it breaks off
		want              string
	}{
		{"bad index", "x", good, 0, `X-Consul-Index "x" is not an index`},
		{"bad bytes", "7", "[{}]]", 0, "invalid health response at index 7 (5 bytes): unexpected ']' at byte 4 after the array"},
		{"bad check", "7", `[{"Node":1}]`, 0, "invalid health response at index 7 (12 bytes): check 0 (byte 1)"},
		{"broken", "7", good[:100], len(good), "broke off its answer: unexpected EOF"},
		{"broken after bad bytes", "7", "[{}]]", 100, "broke off its answer: unexpected EOF"},
		{"broken with a bad index", "x", good[:100], len(good), "broke off its answer: unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Consul-Index", tc.index)
				w.Header().Set("Content-Length", strconv.Itoa(max(tc.length, len(tc.body))))
				_, _ = io.WriteString(w, tc.body) // a body shorter than announced breaks off
			}))
			defer srv.Close()
			_, err := NewConsul(ConsulConfig{Address: srv.URL}).fetch(context.Background(), 0, newConsulMemory())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestConsulAnonymousUnderDenyPolicyWarns(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, func(f *fakeconsul.Server) { f.SetToken("some-token") })
	// Consul answers 200 and an empty list: the watcher cannot tell it from
	// a healthy, empty cluster, so it says why, once.
	if b := h.next(t); !b.Snapshot || len(b.Events) != 0 {
		t.Fatalf("%+v", b)
	}
	h.waitRequests(t, 1, atIndex(48))
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if w := h.logs.entries(t, "warn", "no token is configured"); len(w) != 1 {
		t.Fatalf("warnings %v\n%s", w, h.logs)
	}
	if p := h.lookout.partials(); len(p) != 1 || !strings.Contains(p[0], "anonymous token") {
		t.Fatalf("told the lookout %q", p)
	}
}

// A token that may read only some services: Consul answers 200 without the
// other services' checks and says so in a header. The watcher tells its
// lookout (the room hears of it) and logs it once, and says when the
// token reads everything again.
func TestConsulFilteredByACLIsTold(t *testing.T) {
	var fake *fakeconsul.Server
	h := startConsul(t, ConsulConfig{Token: "nomad-only"}, func(f *fakeconsul.Server) {
		f.SetToken("admin")
		f.SetScopedToken("nomad-only", "nomad")
		fake = f
	})
	b := h.next(t)
	for _, ev := range b.Events {
		if ev.Check.ServiceName == "web" {
			t.Fatalf("the web check was not filtered: %+v", ev.Check)
		}
	}
	h.waitRequests(t, 1, atIndex(48)) // blocking: more answers, all filtered
	// The token's new rights apply from the next query, as in Consul,
	// which resolves a token once per request, before it blocks.
	fake.SetScopedToken("nomad-only", "")
	fake.ExpireTTL()
	h.next(t)
	waitFor(t, "the lookout told that Consul shows everything", func() bool { return len(h.lookout.partials()) == 2 })
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if warns := h.logs.entries(t, "warn", "leaves out the health checks the token may not read"); len(warns) != 1 {
		t.Fatalf("warnings %v\n%s", warns, h.logs)
	}
	if p := h.lookout.partials(); !strings.Contains(p[0], "needs read on every node and service") || p[1] != "" {
		t.Fatalf("told the lookout %q", p)
	}
}

func TestConsulSinkFailureEndsWatch(t *testing.T) {
	f := fakeconsul.New()
	defer f.Close()
	disk := errors.New("disk full")
	w := NewConsul(ConsulConfig{Address: f.URL, MinInterval: 10 * time.Millisecond})
	if w.Name() != "consul" {
		t.Fatalf("name %q", w.Name())
	}
	err := w.Watch(t.Context(), &consulSink{err: disk}, &lookoutLog{})
	if !errors.Is(err, disk) {
		t.Fatalf("Watch returned %v, want the sink's error", err)
	}
}

// consulIdentity names a check of a batch.
type consulIdentity struct{ namespace, node, checkID string }

func consulByIdentity(t *testing.T, b Batch) map[consulIdentity]Event {
	t.Helper()
	out := map[consulIdentity]Event{}
	for _, e := range b.Events {
		id := consulIdentity{e.Namespace, e.Check.Node, e.Check.CheckID}
		if _, dup := out[id]; dup {
			t.Fatalf("check %v twice at index %d", id, b.Cursor.Index)
		}
		out[id] = e
	}
	return out
}

// consulChanged returns the checks of b not marked Unchanged, and fails
// if one marked Unchanged differs from its event in before in any field
// of its Check.
func consulChanged(t *testing.T, before, b Batch) []consulIdentity {
	t.Helper()
	was := consulByIdentity(t, before)
	var changed []consulIdentity
	for id, e := range consulByIdentity(t, b) {
		if !e.Unchanged {
			changed = append(changed, id)
			continue
		}
		old, ok := was[id]
		switch {
		case !ok:
			t.Errorf("%v marked Unchanged, but it was not in the snapshot before", id)
		case !reflect.DeepEqual(*e.Check, *old.Check) || e.Type != old.Type || e.Namespace != old.Namespace:
			t.Errorf("%v marked Unchanged, but %+v was %+v", id, *e.Check, *old.Check)
		}
		if e.Index != b.Cursor.Index || e.Source != "consul" || e.Topic != "Check" {
			t.Errorf("unchanged event %+v at index %d", e, b.Cursor.Index)
		}
	}
	slices.SortFunc(changed, func(a, b consulIdentity) int { return strings.Compare(a.node+"/"+a.checkID, b.node+"/"+b.checkID) })
	return changed
}

func TestConsulUnchangedChecksAreMarked(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, nil)
	first := h.next(t)
	if changed := consulChanged(t, Batch{}, first); len(changed) != 7 {
		t.Fatalf("first snapshot: %d checks changed, want all 7", len(changed))
	}
	h.waitRequests(t, 1, atIndex(48))

	// One check changed: it alone is news.
	h.fake.ExpireTTL()
	second := h.next(t)
	if changed := consulChanged(t, first, second); !slices.Equal(changed, []consulIdentity{{"", "vm", "chatops-ttl"}}) {
		t.Fatalf("after the TTL expired, changed %v, want only chatops-ttl", changed)
	}
	if ttl := consulCheck(t, second, "vm", "chatops-ttl"); ttl.Status != "critical" {
		t.Fatalf("chatops-ttl %+v", ttl)
	}

	// A check gone: the snapshot is smaller, and what remains unchanged.
	if err := h.fake.RemoveCheck("vm", "serfHealth"); err != nil {
		t.Fatal(err)
	}
	third := h.nextAt(t, h.fake.Index())
	if changed := consulChanged(t, second, third); len(third.Events) != 6 || len(changed) != 0 {
		t.Fatalf("after serfHealth was removed: %d events, changed %v; want 6, none", len(third.Events), changed)
	}

	// A new check: it alone is news.
	h.fake.AddCheck(api.HealthCheck{Node: "vm2", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable"})
	fourth := h.nextAt(t, h.fake.Index())
	if changed := consulChanged(t, third, fourth); len(fourth.Events) != 7 || !slices.Equal(changed, []consulIdentity{{"", "vm2", "serfHealth"}}) {
		t.Fatalf("after vm2 joined: %d events, changed %v", len(fourth.Events), changed)
	}

	// Node maintenance: every check of the node changes (its Maintenance),
	// the other node's does not.
	if err := h.fake.AddMaintenance("vm", ""); err != nil {
		t.Fatal(err)
	}
	fifth := h.nextAt(t, h.fake.Index())
	changed := consulChanged(t, fourth, fifth)
	if len(changed) != 7 || slices.Contains(changed, consulIdentity{"", "vm2", "serfHealth"}) || !slices.Contains(changed, consulIdentity{"", "vm", consulNodeMaint}) {
		t.Fatalf("node maintenance: changed %v, want the 6 checks of vm and its maintenance check", changed)
	}
	for _, e := range fifth.Events {
		if want := e.Check.Node == "vm"; (e.Check.Maintenance == MaintenanceNode) != want {
			t.Errorf("%s/%s Maintenance %q", e.Check.Node, e.Check.CheckID, e.Check.Maintenance)
		}
	}

	// Maintenance over: vm's checks change back.
	h.fake.RemoveMaintenance("vm", "")
	sixth := h.nextAt(t, h.fake.Index())
	if changed := consulChanged(t, fifth, sixth); len(sixth.Events) != 7 || len(changed) != 6 {
		t.Fatalf("maintenance over: %d events, changed %v; want 7 events, vm's 6 changed", len(sixth.Events), changed)
	}
}

// A snapshot after an index reset is delivered even if unchanged, with
// every check changed: the pipeline may have lost its memory.
func TestConsulIndexResetMarksAllChanged(t *testing.T) {
	h := startConsul(t, ConsulConfig{}, nil)
	h.next(t)
	h.waitRequests(t, 1, atIndex(48))
	if err := h.fake.SetChecksJSON(30, fakeconsul.StateBefore()); err != nil {
		t.Fatal(err)
	}
	b := h.next(t)
	if b.Cursor.Index != 30 {
		t.Fatalf("cursor %+v", b.Cursor)
	}
	if changed := consulChanged(t, Batch{}, b); len(changed) != 7 {
		t.Fatalf("after the reset, changed %v, want all 7", changed)
	}
	// The next change is told against that snapshot.
	h.waitRequests(t, 1, atIndex(30))
	h.fake.ExpireTTL()
	next := h.next(t)
	if changed := consulChanged(t, b, next); !slices.Equal(changed, []consulIdentity{{"", "vm", "chatops-ttl"}}) {
		t.Fatalf("after the reset and a change, changed %v", changed)
	}
}

// failingSink fails the Consume calls whose numbers (from 1) fail lists.
type failingSink struct {
	consulSink
	calls int
	fail  []int
	err   error
}

func (s *failingSink) Consume(ctx context.Context, b Batch) error {
	s.calls++
	if slices.Contains(s.fail, s.calls) {
		return s.err
	}
	return s.consulSink.Consume(ctx, b)
}

// After a snapshot the sink failed to take, the next delivery is all news:
// the sink may have kept nothing of it.
func TestConsulFailedConsumeMarksAllChanged(t *testing.T) {
	f := fakeconsul.New()
	defer f.Close()
	disk := errors.New("disk full")
	sink := &failingSink{consulSink: consulSink{batches: make(chan Batch, 100)}, fail: []int{2}, err: disk}
	w := NewConsul(ConsulConfig{Address: f.URL, Wait: time.Second, MinInterval: 10 * time.Millisecond})
	ctx := zerolog.Nop().WithContext(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Watch(ctx, sink, &lookoutLog{}) }()
	first := <-sink.batches
	waitFor(t, "the blocking query", func() bool {
		return slices.ContainsFunc(f.Requests(), func(r fakeconsul.Request) bool { return r.Index() == 48 })
	})
	f.ExpireTTL() // delivered, and refused
	select {
	case err := <-done:
		if !errors.Is(err, disk) {
			t.Fatalf("Watch returned %v, want the sink's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not end on the sink's failure")
	}
	// The supervisor runs the watcher again.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { done <- w.Watch(ctx, sink, &lookoutLog{}) }()
	var b Batch
	select {
	case b = <-sink.batches:
	case <-time.After(10 * time.Second):
		t.Fatal("no batch after the restart")
	}
	if changed := consulChanged(t, first, b); len(changed) != 7 {
		t.Fatalf("after the failed delivery, changed %v, want all 7", changed)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Watch returned %v after cancel", err)
	}
}
