package stolon

// Tests of the Stolon watcher (events.go) against the fake Consul loaded
// with states captured from a real Stolon cluster. Helpers are prefixed
// with ev: other internal tests of the package share the namespace.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/watchers"
)

// evT0 is where the manual clock of every test starts.
var evT0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// evMaxLag is Stolon's default maxStandbyLag, which the captures keep.
const evMaxLag = 1024 * 1204

// evPath is the path of the cluster's prefix listing.
const evPath = "/v1/kv/stolon/cluster/main/"

// evFences is a FenceStore in memory; err, when set, fails every call.
type evFences struct {
	mu  sync.Mutex
	m   map[string]string
	err error
}

func (f *evFences) Value(_ context.Context, key string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", false, f.err
	}
	v, ok := f.m[key]
	return v, ok, nil
}

func (f *evFences) SetValue(_ context.Context, key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.m[key] = value
	return nil
}

func (f *evFences) DeleteValue(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	delete(f.m, key)
	return nil
}

func (f *evFences) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// evSink hands the batches to the test.
type evSink struct{ ch chan watchers.Batch }

func (s *evSink) Consume(_ context.Context, b watchers.Batch) error {
	s.ch <- b
	return nil
}

// evLookout records what the watcher tells it.
type evLookout struct {
	mu    sync.Mutex
	seen  int
	lost  []error
	parts []string
}

func (l *evLookout) Seen() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen++
}

func (l *evLookout) Lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, err)
}

func (l *evLookout) Partial(missing string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.parts = append(l.parts, missing)
}

func (l *evLookout) seenCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen
}

// evHarness is a cluster "main" on a fake Consul, its service on a manual
// clock, and its watcher.
type evHarness struct {
	t      *testing.T
	fake   *fakeconsul.Server
	clk    *clock.Manual
	c      *Cluster
	svc    *Service
	ev     *Events
	fences *evFences
	sink   *evSink
	look   *evLookout
}

func newEvHarness(t *testing.T, state string, grace time.Duration) *evHarness {
	t.Helper()
	fake := fakeconsul.New()
	t.Cleanup(fake.Close)
	if err := fake.LoadKV(fakeconsul.StolonState(state)); err != nil {
		t.Fatal(err)
	}
	h := &evHarness{t: t, fake: fake, clk: clock.NewManual(evT0), fences: &evFences{m: map[string]string{}},
		sink: &evSink{ch: make(chan watchers.Batch, 100)}, look: &evLookout{}}
	h.c = &Cluster{Name: "main", KV: &KV{Address: fake.URL}, Grace: grace}
	h.svc = NewService([]*Cluster{h.c}, h.fences, h.clk)
	h.ev = h.svc.Events(h.c)
	return h
}

// run runs Watch until it returns (its error on the channel) or the test
// ends.
func (h *evHarness) run() <-chan error {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		done <- h.ev.Watch(ctx, h.sink, h.look)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			h.t.Error("Watch did not return when cancelled")
		}
	})
	return done
}

// ended waits for Watch to return and returns its error.
func (h *evHarness) ended(done <-chan error) error {
	h.t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Watch did not return")
		return nil
	}
}

// next is the next event delivered: one Stolon event in one batch.
func (h *evHarness) next() watchers.Event {
	h.t.Helper()
	select {
	case b := <-h.sink.ch:
		if len(b.Events) != 1 || b.Events[0].Stolon == nil {
			h.t.Fatalf("batch %+v, want one Stolon event", b)
		}
		return b.Events[0]
	case <-time.After(10 * time.Second):
		h.t.Fatal("no event delivered")
		return watchers.Event{}
	}
}

// quiet asserts that nothing was delivered.
func (h *evHarness) quiet(why string) {
	h.t.Helper()
	select {
	case b := <-h.sink.ch:
		h.t.Fatalf("%s: delivered %+v", why, evDescribe(b.Events[0].Stolon))
	default:
	}
}

// mark is where the requests received so far end.
func (h *evHarness) mark() int { return len(h.fake.Requests()) }

// waitQuery waits for a blocking query of the prefix at index received
// after mark: the watcher is done with every answer before it, including
// delivering (or not) its event.
func (h *evHarness) waitQuery(mark int, index uint64) fakeconsul.Request {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rs := h.fake.Requests()
		for _, r := range rs[min(mark, len(rs)):] {
			if r.Method == "GET" && r.Path == evPath && r.Index() == index {
				return r
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Fatalf("the watcher never blocked on index %d; requests: %v", index, h.fake.Requests()[min(mark, len(h.fake.Requests())):])
	return fakeconsul.Request{}
}

// settled waits until the watcher has read index (a query blocking on it
// received after mark) and asserts it delivered nothing.
func (h *evHarness) settled(mark int, index uint64, why string) fakeconsul.Request {
	h.t.Helper()
	r := h.waitQuery(mark, index)
	h.quiet(why)
	return r
}

// load loads a captured state and returns the index the prefix listing
// answers with (its highest ModifyIndex).
func (h *evHarness) load(state string) uint64 {
	h.t.Helper()
	if err := h.fake.LoadKV(fakeconsul.StolonState(state)); err != nil {
		h.t.Fatal(err)
	}
	return evTop(h.t, state)
}

// editData rewrites clusterdata as a sentinel does (same flags), edited
// by edit, and returns the index of the write.
func (h *evHarness) editData(edit func(doc map[string]any)) uint64 {
	h.t.Helper()
	const key = "stolon/cluster/main/clusterdata"
	v, flags, _, ok := h.fake.KV(key)
	if !ok {
		h.t.Fatal("no clusterdata")
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		h.t.Fatal(err)
	}
	edit(doc)
	b, err := json.Marshal(doc)
	if err != nil {
		h.t.Fatal(err)
	}
	h.fake.SetKV(key, b, flags)
	return h.fake.KVIndex()
}

// sentinelRewrite is the sentinel's rewrite every few seconds: nothing but
// changeTime changes.
func (h *evHarness) sentinelRewrite() uint64 {
	return h.editData(func(doc map[string]any) {
		doc["changeTime"] = h.clk.Now().Add(time.Duration(h.fake.KVIndex())).Format(time.RFC3339Nano)
	})
}

// evTop is the highest ModifyIndex of a captured state.
func evTop(t *testing.T, state string) uint64 {
	t.Helper()
	var es []struct{ ModifyIndex uint64 }
	if err := json.Unmarshal(fakeconsul.StolonState(state), &es); err != nil {
		t.Fatal(err)
	}
	var top uint64
	for _, e := range es {
		top = max(top, e.ModifyIndex)
	}
	return top
}

// evObj is the object at keys in a decoded document.
func evObj(t *testing.T, m map[string]any, keys ...string) map[string]any {
	t.Helper()
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("no object %q in %v", k, keys)
		}
		m = next
	}
	return m
}

func evDescribe(s *watchers.Stolon) string {
	if s == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", *s)
}

// evCheck compares an event's state with want.
func evCheck(t *testing.T, what string, got, want *watchers.Stolon) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, evDescribe(got), evDescribe(want))
	}
}

// evNormal is what the watcher makes of the "normal" capture.
func evNormal(grace time.Duration) *watchers.Stolon {
	return &watchers.Stolon{
		Cluster: "main", Phase: "normal", MasterKeeper: "keeper0", MasterDB: "d51919e0", Timeline: 1,
		Keepers: []watchers.StolonKeeper{
			{UID: "keeper0", Healthy: true, DB: "d51919e0", Role: "master", Address: "127.0.0.1:25433", PGHealthy: true, Timeline: 1},
			{UID: "keeper1", Healthy: true, DB: "0e651c76", Role: "standby", Address: "127.0.0.1:25434", PGHealthy: true, Timeline: 1},
		},
		Sentinels: []string{"f6db1c81"}, Leader: "f6db1c81", LeaderAlive: true,
		Proxies: []watchers.StolonProxy{{UID: "5a6b1224"}},
		MaxLag:  evMaxLag, Grace: grace,
	}
}

// evAfterFailover is the "failover" capture: keeper1 master on timeline 2,
// keeper0's new DB resyncing (no position yet: its lag is not known, and
// its unhealthy PostgreSQL tells), a new sentinel and proxy.
func evAfterFailover(grace time.Duration) *watchers.Stolon {
	return &watchers.Stolon{
		Cluster: "main", Phase: "normal", MasterKeeper: "keeper1", MasterDB: "0e651c76", Timeline: 2,
		Keepers: []watchers.StolonKeeper{
			{UID: "keeper0", Healthy: true, DB: "476ec92d", Role: "standby", Address: "127.0.0.1:25433"},
			{UID: "keeper1", Healthy: true, DB: "0e651c76", Role: "master", Address: "127.0.0.1:25434", PGHealthy: true, Timeline: 2},
		},
		Sentinels: []string{"81375632"}, Leader: "81375632", LeaderAlive: true,
		Proxies: []watchers.StolonProxy{{UID: "52329865"}},
		MaxLag:  evMaxLag, Grace: grace,
	}
}

// Each captured state, loaded one after the other as the cluster went
// through them, is delivered with the fields the rules judge, and with
// what only the sequence tells: since when, who was master, what is gone.
func TestEventsFollowCapturedStates(t *testing.T) {
	t.Parallel()
	const grace = 30 * time.Second
	h := newEvHarness(t, "normal", grace)
	h.run()

	ev := h.next()
	if ev.Source != "stolon-main" || ev.Topic != watchers.TopicStolon || ev.Type != watchers.StolonState || ev.Index != 101 || !ev.Time.Equal(evT0) {
		t.Fatalf("envelope %s %s %s index %d at %s", ev.Source, ev.Topic, ev.Type, ev.Index, ev.Time)
	}
	evCheck(t, "normal", ev.Stolon, evNormal(grace))

	steps := []struct {
		state string
		want  func(now time.Time) *watchers.Stolon
	}{
		{"standby-down", func(time.Time) *watchers.Stolon {
			// keeper1 killed: unhealthy, its DB too; a little behind, within max lag.
			w := evNormal(grace)
			w.Keepers[1].Healthy, w.Keepers[1].PGHealthy, w.Keepers[1].Lag = false, false, 50733528-50709824
			return w
		}},
		{"lagging", func(time.Time) *watchers.Stolon {
			// Replay paused with 57 MB written: Stolon counts WAL
			// received, so nothing shows.
			return evNormal(grace)
		}},
		{"lagging-walrcv-stopped", func(now time.Time) *watchers.Stolon {
			w := evNormal(grace)
			w.Keepers[1].Lag, w.Keepers[1].LagSince = 165612616-107730872, now
			return w
		}},
		{"sync", func(time.Time) *watchers.Stolon {
			w := evNormal(grace)
			w.SyncWanted, w.SyncStandbys = 1, []string{"keeper1"}
			return w
		}},
		{"no-sentinel", func(time.Time) *watchers.Stolon {
			w := evNormal(grace)
			w.Sentinels, w.LeaderAlive = nil, false // the leader key outlives its sentinel
			return w
		}},
		{"proxy-down", func(now time.Time) *watchers.Stolon {
			w := evNormal(grace)
			w.Sentinels, w.Leader = []string{"81375632"}, "81375632"
			w.Proxies, w.GoneProxies, w.NoProxySince = nil, []string{"5a6b1224"}, now
			return w
		}},
		{"failover", func(now time.Time) *watchers.Stolon {
			w := evAfterFailover(grace)
			w.PreviousMasterKeeper, w.PreviousMasterDB = "keeper0", "d51919e0"
			return w
		}},
		{"normal", func(time.Time) *watchers.Stolon {
			// Loaded last, it is a snapshot restore: the index goes
			// backwards, and the watcher starts again from this answer.
			w := evNormal(grace)
			w.PreviousMasterKeeper, w.PreviousMasterDB = "keeper1", "0e651c76"
			w.GoneProxies = []string{"52329865"}
			return w
		}},
	}
	h.waitQuery(0, 101)
	for _, s := range steps {
		h.clk.Advance(5 * time.Second)
		mark := h.mark()
		top := h.load(s.state)
		ev := h.next()
		if ev.Index != top || !ev.Time.Equal(h.clk.Now()) {
			t.Fatalf("%s: index %d at %s, want %d at %s", s.state, ev.Index, ev.Time, top, h.clk.Now())
		}
		evCheck(t, s.state, ev.Stolon, s.want(h.clk.Now()))
		// Blocked again before the next state: a restore (the last
		// state) abandons the queries under way, as Consul does; one
		// started after it waits for the next write.
		h.waitQuery(mark, top)
	}
	// Each answer was seen by the lookout: the first read and one per state.
	if n := h.look.seenCount(); n < len(steps)+1 {
		t.Errorf("lookout saw %d answers, want at least %d", n, len(steps)+1)
	}
}

// The 1 s capture series of stolonctl failkeeper keeper0: only the
// captures where something the rules judge changed are delivered; the
// times the sequence alone knows (since when the proxy strays, since when
// the resyncing standby lags) carry over from one event to the next.
func TestEventsFailoverSeries(t *testing.T) {
	t.Parallel()
	const grace = time.Minute
	h := newEvHarness(t, "failover-00", grace)
	h.run()
	first := h.next()
	if first.Stolon.MasterKeeper != "keeper0" || first.Stolon.PreviousMasterKeeper != "" || first.Index != 591 {
		t.Fatalf("failover-00: %s at %d", evDescribe(first.Stolon), first.Index)
	}

	got := map[int]watchers.Event{}
	top := evTop(t, "failover-00")
	for i := 1; i <= 20; i++ {
		h.clk.Advance(time.Second)
		mark := h.mark()
		name := fmt.Sprintf("failover-%02d", i)
		if next := h.load(name); next != top {
			top = next
			h.waitQuery(mark, top)
		}
		select {
		case b := <-h.sink.ch:
			got[i] = b.Events[0]
		default:
		}
	}
	var at []int
	for i := 1; i <= 20; i++ {
		if _, ok := got[i]; ok {
			at = append(at, i)
		}
	}
	// -02 sets forceFail (clusterdata 592), which no rule judges; -06
	// elects keeper1; -11 has keeper0 resyncing on a new DB; -16 has the
	// proxy following and keeper0's PostgreSQL up.
	if fmt.Sprint(at) != "[6 11 16]" {
		t.Fatalf("events delivered at captures %v, want [6 11 16]", at)
	}
	t06 := evT0.Add(6 * time.Second)

	w := &watchers.Stolon{
		Cluster: "main", Phase: "normal", MasterKeeper: "keeper1", MasterDB: "0e651c76", Timeline: 1,
		PreviousMasterKeeper: "keeper0", PreviousMasterDB: "d51919e0",
		Keepers: []watchers.StolonKeeper{
			// The old master is still "master" in its DB's spec, its keeper unhealthy.
			{UID: "keeper0", DB: "d51919e0", Role: "master", Address: "127.0.0.1:25433", Timeline: 1},
			{UID: "keeper1", Healthy: true, DB: "0e651c76", Role: "master", Address: "127.0.0.1:25434", PGHealthy: true, Timeline: 1},
		},
		Sentinels: []string{"81375632"}, Leader: "81375632", LeaderAlive: true,
		// The sentinel removed masterDbUid: the proxy routes nowhere.
		Proxies: []watchers.StolonProxy{{UID: "52329865", BehindSince: t06}},
		MaxLag:  evMaxLag, Grace: grace,
	}
	if ev := got[6]; ev.Index != 597 || !ev.Time.Equal(t06) {
		t.Errorf("failover-06 delivered at index %d, %s", ev.Index, ev.Time)
	}
	evCheck(t, "failover-06", got[6].Stolon, w)

	w.PreviousMasterKeeper, w.PreviousMasterDB, w.Timeline = "", "", 2
	// keeper0's new DB has no status yet: no address, no position (its
	// lag is not known).
	w.Keepers[0] = watchers.StolonKeeper{UID: "keeper0", Healthy: true, DB: "476ec92d", Role: "standby"}
	w.Keepers[1].Timeline = 2
	evCheck(t, "failover-11", got[11].Stolon, w) // the proxy has applied generation 11 of 12: still behind since -06

	w.Keepers[0].PGHealthy, w.Keepers[0].Address = true, "127.0.0.1:25433"
	w.Proxies = []watchers.StolonProxy{{UID: "52329865"}}
	evCheck(t, "failover-16", got[16].Stolon, w)
}

// The sentinel rewrites clusterdata every few seconds, keepers their
// info keys, and lag figures move all the time: none of that is news. A
// change the rules judge is, with the lag figures of the moment.
func TestEventsIgnoreRewrites(t *testing.T) {
	t.Parallel()
	h := newEvHarness(t, "normal", 30*time.Second)
	h.run()
	evCheck(t, "normal", h.next().Stolon, evNormal(30*time.Second))

	mark := h.mark()
	h.settled(mark, h.sentinelRewrite(), "clusterdata rewritten with a new changeTime")

	mark = h.mark()
	const info = "stolon/cluster/main/keepers/info/keeper1"
	v, flags, _, _ := h.fake.KV(info)
	h.fake.SetKV(info, bytes.Replace(v, []byte(`"infoUID":"`), []byte(`"infoUID":"x`), 1), flags)
	h.settled(mark, h.fake.KVIndex(), "keeper info rewritten")

	mark = h.mark()
	idx := h.editData(func(doc map[string]any) {
		evObj(t, doc, "dbs", "d51919e0", "status")["xLogPos"] = json.Number("50710824") // the standby 1000 bytes behind
	})
	h.settled(mark, idx, "the standby's lag moved within max lag")

	idx = h.editData(func(doc map[string]any) {
		delete(evObj(t, doc, "keepers", "keeper1", "status"), "healthy")
	})
	ev := h.next()
	w := evNormal(30 * time.Second)
	w.Keepers[1].Healthy, w.Keepers[1].Lag = false, 1000
	if ev.Index != idx {
		t.Errorf("index %d, want %d", ev.Index, idx)
	}
	evCheck(t, "keeper1 unhealthy", ev.Stolon, w)
}

// A state that lasts is delivered again when its grace period runs out,
// once, even though nothing else changed; the blocking query is cut short
// to that moment, and waits the whole 5 min again once no period runs.
func TestEventsGracePeriodEnds(t *testing.T) {
	t.Parallel()
	const grace = time.Minute
	h := newEvHarness(t, "lagging-walrcv-stopped", grace)
	mark := h.mark()
	h.run()
	ev := h.next()
	lagging := evNormal(grace)
	lagging.Keepers[1].Lag, lagging.Keepers[1].LagSince = 57881744, evT0
	evCheck(t, "lagging", ev.Stolon, lagging)
	if q := h.waitQuery(mark, 341); q.Query.Get("wait") != "1m0s" {
		t.Errorf("blocking query %s, want wait=1m0s: until the grace period ends", q)
	}

	h.clk.Advance(30 * time.Second)
	mark = h.mark()
	if q := h.settled(mark, h.sentinelRewrite(), "half the grace period"); q.Query.Get("wait") != "30s" {
		t.Errorf("blocking query %s, want wait=30s", q)
	}

	h.clk.Advance(30 * time.Second)
	mark = h.mark()
	idx := h.sentinelRewrite()
	ev = h.next()
	if ev.Index != idx || !ev.Time.Equal(evT0.Add(grace)) {
		t.Fatalf("grace end delivered at index %d, %s; want %d, %s", ev.Index, ev.Time, idx, evT0.Add(grace))
	}
	evCheck(t, "grace ended", ev.Stolon, lagging) // LagSince still evT0: the rule compares it with the event's time
	if q := h.waitQuery(mark, idx); q.Query.Get("wait") != "5m0s" {
		t.Errorf("blocking query %s, want wait=5m0s: no grace period runs any more", q)
	}

	h.clk.Advance(30 * time.Second)
	h.settled(h.mark(), h.sentinelRewrite(), "the grace period already ended")
}

// With nothing written, the watcher wakes by itself when a grace period
// ends: for a standby lagging, for a proxy not routing to the master, for
// no proxy at all.
func TestEventsWakeWhenGraceEnds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		state string
		since func(s *watchers.Stolon) time.Time
	}{
		{"lagging-walrcv-stopped", func(s *watchers.Stolon) time.Time { return s.Keepers[1].LagSince }},
		{"failover-06", func(s *watchers.Stolon) time.Time { return s.Proxies[0].BehindSince }},
		{"proxy-down", func(s *watchers.Stolon) time.Time { return s.NoProxySince }},
	} {
		t.Run(tc.state, func(t *testing.T) {
			t.Parallel()
			h := newEvHarness(t, tc.state, time.Second)
			top := evTop(t, tc.state)
			mark := h.mark()
			h.run()
			first := h.next()
			if got := tc.since(first.Stolon); !got.Equal(evT0) {
				t.Fatalf("since %s, want %s: %s", got, evT0, evDescribe(first.Stolon))
			}
			if q := h.waitQuery(mark, top); q.Query.Get("wait") != "1s" {
				t.Fatalf("blocking query %s, want wait=1s", q)
			}
			mark = h.mark()
			h.clk.Advance(time.Second)
			ev := h.next()
			if ev.Index != top || !ev.Time.Equal(evT0.Add(time.Second)) || !tc.since(ev.Stolon).Equal(evT0) {
				t.Fatalf("grace end: index %d at %s, since %s", ev.Index, ev.Time, tc.since(ev.Stolon))
			}
			if !reflect.DeepEqual(first.Stolon, ev.Stolon) {
				t.Errorf("the state changed:\n got %s\nwant %s", evDescribe(ev.Stolon), evDescribe(first.Stolon))
			}
			// Told once: then the query waits the whole wait again.
			deadline := time.Now().Add(10 * time.Second)
			for {
				var waits []string
				for _, r := range h.fake.Requests()[mark:] {
					if r.Path == evPath {
						waits = append(waits, r.Query.Get("wait"))
					}
				}
				if len(waits) > 0 && waits[len(waits)-1] == "5m0s" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("blocking queries after the grace end wait %v, want the last 5m0s", waits)
				}
				time.Sleep(2 * time.Millisecond)
			}
			h.quiet("after the grace end")
		})
	}
}

// A failover by Vigie starting or ending wakes the watcher, which reads
// the keys again and tells whether one runs; a fence left shows once the
// failover is over.
func TestEventsWakeOnFailoverStartAndEnd(t *testing.T) {
	t.Parallel()
	h := newEvHarness(t, "normal", 30*time.Second)
	h.run()
	evCheck(t, "normal", h.next().Stolon, evNormal(30*time.Second))
	// Each step waits for the watcher to block again: it is woken from
	// its blocking query.
	h.waitQuery(0, 101)

	mark := h.mark()
	if !h.svc.begin("main") {
		t.Fatal("begin refused")
	}
	ev := h.next()
	w := evNormal(30 * time.Second)
	w.Failover = true
	if ev.Index != 101 {
		t.Errorf("index %d: nothing was written", ev.Index)
	}
	evCheck(t, "failover started", ev.Stolon, w)

	// The failover records its fence, then ends without lifting it.
	f := &Fence{Cluster: "main", Keeper: "keeper0", DB: "d51919e0", Address: "127.0.0.1:25433", Databases: []string{"app"}, At: evT0}
	if err := saveFence(t.Context(), h.fences, f); err != nil {
		t.Fatal(err)
	}
	h.waitQuery(mark, 101)
	mark = h.mark()
	h.svc.end("main")
	ev = h.next()
	w.Failover = false
	w.FenceLeft = "Vigie's fence is still set: master keeper0 (db d51919e0, 127.0.0.1:25433) fenced since 2026-11-30 12:00:00 UTC; " +
		"Vigie retries lifting it every 30s"
	evCheck(t, "failover ended, fence left", ev.Stolon, w)

	// Another cluster's failover wakes it too; it reads again and has
	// nothing to tell.
	h.waitQuery(mark, 101)
	mark = h.mark()
	h.svc.begin("other")
	defer h.svc.end("other")
	h.settled(mark, 101, "another cluster's failover")
	var plain int
	for _, r := range h.fake.Requests()[mark:] {
		if r.Path == evPath && r.Query.Get("index") == "" {
			plain++
		}
	}
	if plain != 1 {
		t.Errorf("%d plain reads after the wake-up, want 1", plain)
	}
}

// A fence store that cannot be read is told as such.
func TestEventsFenceStoreFailure(t *testing.T) {
	t.Parallel()
	h := newEvHarness(t, "normal", 30*time.Second)
	h.fences.fail(errors.New("the store is closed"))
	h.run()
	w := evNormal(30 * time.Second)
	w.FenceLeft = "the store is closed"
	evCheck(t, "fence store failing", h.next().Stolon, w)
}

// A failed read ends the run with an error naming Consul and what it
// wants; the lookout is told of each answer.
func TestEventsReadFailures(t *testing.T) {
	t.Parallel()
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		h := newEvHarness(t, "normal", time.Minute)
		h.fake.SetToken("management")
		h.c.KV.Token = "stolon-reader" // unknown to Consul: 403 ACL not found
		err := h.ended(h.run())
		var kvErr *KVError
		if !errors.As(err, &kvErr) || kvErr.Status != 403 {
			t.Fatalf("err %v, want a 403 KVError", err)
		}
		want := "stolon main: Consul at " + h.fake.URL + ` refused to read stolon/cluster/main/ (403): ACL not found (the token needs key_prefix "stolon/cluster/main/" { policy = "read" })`
		if err.Error() != want {
			t.Errorf("err\n %s\nwant\n %s", err, want)
		}
		if h.look.seenCount() != 0 {
			t.Errorf("lookout told of %d answers", h.look.seenCount())
		}
		h.quiet("refused")
	})
	t.Run("no leader", func(t *testing.T) {
		t.Parallel()
		h := newEvHarness(t, "normal", time.Minute)
		done := h.run()
		h.next()
		h.waitQuery(0, 101)
		h.fake.FailNextKV(1, 500)
		h.sentinelRewrite()
		err := h.ended(done)
		if err == nil || !strings.Contains(err.Error(), "refused to read stolon/cluster/main/ (500): No cluster leader") {
			t.Fatalf("err %v", err)
		}
		if n := h.look.seenCount(); n != 2 {
			t.Errorf("lookout told of %d answers, want 2", n)
		}
	})
	t.Run("down", func(t *testing.T) {
		t.Parallel()
		h := newEvHarness(t, "normal", time.Minute)
		done := h.run()
		h.next()
		h.waitQuery(0, 101)
		h.fake.Stop() // cuts the blocked query
		err := h.ended(done)
		if err == nil || !strings.HasPrefix(err.Error(), "stolon main: Consul at "+h.fake.URL+" is unreachable: ") {
			t.Fatalf("err %v", err)
		}
		if n := h.look.seenCount(); n != 1 {
			t.Errorf("lookout told of %d answers, want 1", n)
		}
	})
	t.Run("no cluster", func(t *testing.T) {
		t.Parallel()
		h := newEvHarness(t, "normal", time.Minute)
		h.c.Name = "other"
		err := h.ended(h.run())
		if err == nil || err.Error() != "stolon other: no Stolon cluster at stolon/cluster/other/clusterdata (check the cluster name and store prefix)" {
			t.Fatalf("err %v", err)
		}
	})
}

// Under the supervisor, the lookout hears of Consul refusing the token or
// down, and of it answering again; the source shows as down, then up.
func TestEventsSupervisedSight(t *testing.T) {
	t.Parallel()
	h := newEvHarness(t, "normal", time.Minute)
	h.fake.SetToken("management")
	h.c.KV.Token = "stolon-reader"
	vis := watchers.NewVisibility(nil, time.Hour)
	sink := &evSink{ch: make(chan watchers.Batch, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchers.Supervise(ctx, sink, watchers.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, vis, h.ev)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Supervise did not return")
		}
	})
	status := func(what string, ok func(watchers.SourceStatus) bool) watchers.SourceStatus {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var st watchers.SourceStatus
			if all := vis.Statuses(); len(all) == 1 {
				st = all[0]
				if ok(st) {
					return st
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %+v", what, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stolonEvent := func() *watchers.Stolon {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case b := <-sink.ch:
				if ev := b.Events[0]; ev.Stolon != nil {
					return ev.Stolon
				}
			case <-deadline:
				t.Fatal("no Stolon event")
				return nil
			}
		}
	}

	st := status("refused", func(s watchers.SourceStatus) bool { return !s.Up && strings.Contains(s.Reason, "(403)") })
	if st.Name != "stolon-main" || st.Display != "Stolon main" || st.Address != h.fake.URL+"/v1/kv/stolon/cluster/main/" ||
		!strings.Contains(st.Reason, `key_prefix "stolon/cluster/main/" { policy = "read" }`) {
		t.Errorf("refused: %+v", st)
	}

	h.fake.SetKVPrefixes("stolon-reader", false, "stolon/")
	status("granted", func(s watchers.SourceStatus) bool { return s.Up })
	evCheck(t, "granted", stolonEvent(), evNormal(time.Minute))

	h.fake.Stop()
	status("down", func(s watchers.SourceStatus) bool {
		return !s.Up && strings.Contains(s.Reason, "Consul at "+h.fake.URL+" is unreachable")
	})
	if err := h.fake.Restart(h.fake.Index(), fakeconsul.StateBefore()); err != nil {
		t.Fatal(err)
	}
	status("back", func(s watchers.SourceStatus) bool { return s.Up && s.Reason == "" })
	// The first event of each run is delivered: the pipeline reconciles
	// against it.
	evCheck(t, "back", stolonEvent(), evNormal(time.Minute))
}

// A failed read restarts the watch, but what the sequence told so far is
// kept: a master that changed while Consul was away is told as a change,
// and a grace period under way goes on rather than starting again.
func TestEventsRememberAcrossRuns(t *testing.T) {
	t.Parallel()
	const grace = time.Minute
	h := newEvHarness(t, "lagging-walrcv-stopped", grace)
	done := h.run()
	lagging := evNormal(grace)
	lagging.Keepers[1].Lag, lagging.Keepers[1].LagSince = 57881744, evT0
	evCheck(t, "lagging", h.next().Stolon, lagging)
	h.waitQuery(0, 341)

	restart := func() {
		t.Helper()
		h.fake.Stop()
		if err := h.ended(done); err == nil {
			t.Fatal("Watch returned nil when Consul went down")
		}
		if err := h.fake.Restart(h.fake.Index(), fakeconsul.StateBefore()); err != nil {
			t.Fatal(err)
		}
		done = h.run() // as the supervisor does
	}

	h.clk.Advance(20 * time.Second)
	restart()
	ev := h.next()
	if !ev.Time.Equal(evT0.Add(20 * time.Second)) {
		t.Errorf("delivered at %s", ev.Time)
	}
	evCheck(t, "the same lag after a restart", ev.Stolon, lagging)
	h.waitQuery(0, 341)

	h.fake.Stop()
	if err := h.ended(done); err == nil {
		t.Fatal("Watch returned nil when Consul went down")
	}
	h.load("failover") // the sentinel failed over meanwhile
	if err := h.fake.Restart(h.fake.Index(), fakeconsul.StateBefore()); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(20 * time.Second)
	h.run()
	w := evAfterFailover(grace)
	w.PreviousMasterKeeper, w.PreviousMasterDB = "keeper0", "d51919e0"
	w.GoneProxies = []string{"5a6b1224"}
	evCheck(t, "master changed during the outage", h.next().Stolon, w)
}
