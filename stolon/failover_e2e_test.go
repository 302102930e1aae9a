package stolon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakestolon"
	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/stolon"
	"github.com/vigie/vigie/store"
)

// e2e is a Stolon cluster simulated over a real primary and standby, a
// fake Consul holding its keys, and a writer through its proxy.
type e2e struct {
	primary, standby *testenv.Postgres
	consul           *fakeconsul.Server
	sim              *fakestolon.Cluster
	cluster          *stolon.Cluster
	store            *store.Store
	svc              *stolon.Service
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	e := &e2e{primary: testenv.StartPostgres(t)}
	e.primary.Exec(t, "postgres", "CREATE TABLE writes (id bigserial PRIMARY KEY, token bigint NOT NULL UNIQUE)")
	e.standby = testenv.StartStandby(t, e.primary)
	e.consul = fakeconsul.New()
	t.Cleanup(e.consul.Close)
	e.sim = fakestolon.New(t, e.consul, e.primary, e.standby)
	e.cluster = &stolon.Cluster{
		Name: "main", KV: &stolon.KV{Address: e.consul.URL},
		Postgres: pgserver.Server{Host: "127.0.0.1", Port: e.sim.Proxy.Port, User: e.primary.User, Password: e.primary.Password, SSLMode: "disable"},
		Database: "postgres", CatchUpTimeout: 10 * time.Second, FailoverTimeout: 30 * time.Second, RejoinTimeout: time.Minute,
	}
	st, err := store.Open(t.Context(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	e.svc = stolon.NewService([]*stolon.Cluster{e.cluster}, st, nil)
	return e
}

// writer inserts rows through the proxy as fast as it can, reconnecting
// after errors, and records the token of every row whose commit returned.
// Tokens, not ids: a new master reissues the ids of the sequence values
// it never received, which would hide a lost row.
type writer struct {
	mu        sync.Mutex
	committed []int64
	failures  int
	stop      context.CancelFunc
	done      chan struct{}
}

func startWriter(t *testing.T, url string) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var conn *pgx.Conn
		var token int64
		for ctx.Err() == nil {
			if conn == nil {
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					w.fail(ctx)
					continue
				}
				conn = c
			}
			token++
			if _, err := conn.Exec(ctx, "INSERT INTO writes (token) VALUES ($1)", token); err != nil {
				conn.Close(context.Background())
				conn = nil
				w.fail(ctx)
				continue
			}
			w.mu.Lock()
			w.committed = append(w.committed, token)
			w.mu.Unlock()
		}
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t.Cleanup(w.end)
	return w
}

func (w *writer) fail(ctx context.Context) {
	w.mu.Lock()
	w.failures++
	w.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(20 * time.Millisecond):
	}
}

func (w *writer) end() {
	w.stop()
	<-w.done
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.committed)
}

// waitWrites waits for the writer to commit n more rows.
func (w *writer) waitWrites(t *testing.T, n int) {
	t.Helper()
	want := w.count() + n
	deadline := time.Now().Add(30 * time.Second)
	for w.count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the writer committed %d rows, want %d", w.count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lost lists the tokens the writer saw committed that the server lacks.
func (w *writer) lost(t *testing.T, pg *testenv.Postgres) (lost []int64, total int) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), "SELECT token FROM writes")
	if err != nil {
		t.Fatal(err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(have)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range w.committed {
		if _, found := slices.BinarySearch(have, id); !found {
			lost = append(lost, id)
		}
	}
	return lost, len(w.committed)
}

// The captured failkeeper behaviour, reproduced: forceFail set without a
// fence loses the writes the old master takes until the proxy moves.
// This is what makes the no-loss test below mean something.
func TestFailkeeperLosesWrites(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.sim.Start(t)
	w := startWriter(t, e.primary.URLVia(e.sim.Proxy.Addr, "postgres"))
	w.waitWrites(t, 50)

	client, err := api.NewClient(&api.Config{Address: e.consul.URL})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.Drive(t, func() {
		// stolonctl failkeeper keeper0: one CAS of forceFail.
		e.sim.Edit(t, func(doc map[string]any) {
			doc["keepers"].(map[string]any)[fakestolon.Keeper0].(map[string]any)["status"].(map[string]any)["forceFail"] = true
		})
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			p, _, err := client.KV().Get(fakestolon.Prefix+"clusterdata", nil)
			if err == nil && p != nil && e.sim.Elections() == 1 && e.sim.Proxy.Target() == e.standby.Addr() {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if e.sim.Proxy.Target() != e.standby.Addr() {
		t.Fatalf("the simulated failkeeper did not fail over: proxy target %q", e.sim.Proxy.Target())
	}
	w.waitWrites(t, 50)
	w.end()
	lost, total := w.lost(t, e.standby)
	if len(lost) == 0 {
		t.Fatalf("no committed write lost: the simulation does not reproduce failkeeper's loss, so it cannot show that Vigie's failover avoids it")
	}
	t.Logf("failkeeper: %d of %d committed writes lost (tokens %d to %d)", len(lost), total, lost[0], lost[len(lost)-1])
}

func TestFailoverLosesNoWrite(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.sim.Start(t)
	w := startWriter(t, e.primary.URLVia(e.sim.Proxy.Addr, "postgres"))
	w.waitWrites(t, 50)

	plan, err := e.svc.Preflight(t.Context(), "main")
	if err != nil {
		t.Fatalf("preflight: %v", err)
	}
	if got := plan.Elected(); got == nil || got.DB.UID != fakestolon.DB1 {
		t.Fatalf("elected %+v, want db %s", got, fakestolon.DB1)
	}
	var res *stolon.Result
	var progress []stolon.Progress
	e.sim.Drive(t, func() {
		res, err = e.svc.Failover(t.Context(), plan, func(p stolon.Progress) { progress = append(progress, p) })
	})
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	for _, s := range res.Steps {
		t.Logf("%-14s +%-8s %s", s.Name, s.Took.Round(time.Millisecond), s.Detail)
	}
	t.Logf("writes unavailable through the proxy: %s in %d outage(s); %d probes, %d failed; timeline %d; warnings %v",
		res.WritesDown().Round(time.Millisecond), len(res.Outages), res.Probes, res.ProbeFailures, res.Timeline, res.Warnings)

	var names []string
	for _, s := range res.Steps {
		if s.Failed {
			t.Errorf("step %s failed: %s", s.Name, s.Detail)
		}
		names = append(names, s.Name)
	}
	want := []string{"checked", "fenced", "caught up", "forceFail set", "elected", "promoted", "proxies follow", "writes", "post-check", "rejoined"}
	if !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	if res.NewKeeper != fakestolon.Keeper1 || res.NewDB != fakestolon.DB1 || res.OldKeeper != fakestolon.Keeper0 {
		t.Errorf("from %s to %s (db %s)", res.OldKeeper, res.NewKeeper, res.NewDB)
	}
	if res.PostCheck != nil || !res.Rejoined || res.FenceLeft != nil || len(res.Warnings) > 0 {
		t.Errorf("post-check %v, rejoined %t, fence left %v, warnings %v", res.PostCheck, res.Rejoined, res.FenceLeft, res.Warnings)
	}
	if res.Timeline < 2 {
		t.Errorf("new timeline %d", res.Timeline)
	}
	if res.WritesDown() <= 0 || res.Probes == 0 {
		t.Errorf("no outage measured: %+v", res.Outages)
	}
	if len(progress) < len(want) {
		t.Errorf("%d progress reports for %d steps", len(progress), len(want))
	}

	w.waitWrites(t, 50) // writes go on, on the new master
	w.end()
	lost, total := w.lost(t, e.standby)
	t.Logf("%d committed writes, %d lost, %d failed attempts", total, len(lost), w.failures)
	if len(lost) > 0 {
		t.Fatalf("%d of %d committed writes lost: tokens %v", len(lost), total, lost[:min(len(lost), 20)])
	}
	// The fence is gone everywhere, and forgotten.
	if got := e.standby.QueryValue(t, "postgres", "SELECT count(*) FROM pg_db_role_setting WHERE 'default_transaction_read_only=on' = ANY (setconfig)"); got != "0" {
		t.Errorf("the new master still has %s read-only database setting(s)", got)
	}
	if f, err := stolon.LoadFence(t.Context(), e.store, "main"); err != nil || f != nil {
		t.Errorf("fence still recorded: %v, %v", f, err)
	}
	if got := e.standby.QueryValue(t, "postgres", "SHOW transaction_read_only"); got != "off" {
		t.Errorf("a new session on the new master is read-only: %s", got)
	}
}

// The sentinel rewrites clusterdata every few seconds: a check-and-set
// that loses that race re-reads and tries again, with libkv's flags kept.
func TestFailoverRetriesCASConflict(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	client, err := api.NewClient(&api.Config{Address: e.consul.URL})
	if err != nil {
		t.Fatal(err)
	}
	key := fakestolon.Prefix + "clusterdata"
	target, _ := url.Parse(e.consul.URL)
	forward := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var casFlags []string
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Has("cas") {
			mu.Lock()
			casFlags = append(casFlags, r.URL.Query().Get("flags"))
			first := len(casFlags) == 1
			mu.Unlock()
			if first { // a sentinel cycle lands between Vigie's read and its write
				p, _, err := client.KV().Get(key, nil)
				if err == nil && p != nil {
					p.Value, err = sentinelRewrite(p.Value)
				}
				if err == nil && p != nil {
					_, err = client.KV().Put(p, nil)
				}
				if err != nil || p == nil {
					http.Error(w, "test: could not rewrite the key", http.StatusInternalServerError)
					return
				}
			}
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	e.cluster.KV = &stolon.KV{Address: front.URL}
	e.sim.Start(t)

	plan, err := e.svc.Preflight(t.Context(), "main")
	if err != nil {
		t.Fatalf("preflight: %v", err)
	}
	var res *stolon.Result
	e.sim.Drive(t, func() {
		res, err = e.svc.Failover(t.Context(), plan, func(stolon.Progress) {})
	})
	if err != nil {
		t.Fatalf("failover: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(casFlags) < 2 {
		t.Fatalf("%d check-and-set writes, want a retry after the conflict", len(casFlags))
	}
	for _, f := range casFlags {
		if f != strconv.FormatUint(fakestolon.LibkvFlags, 10) {
			t.Errorf("check-and-set with flags %q, want libkv's %d", f, uint64(fakestolon.LibkvFlags))
		}
	}
	i := slices.IndexFunc(res.Steps, func(s stolon.Step) bool { return s.Name == "forceFail set" })
	if i < 0 || !strings.Contains(res.Steps[i].Detail, "attempt 2") {
		t.Errorf("steps %+v: forceFail set without a second attempt", res.Steps)
	}
	if res.NewDB != fakestolon.DB1 {
		t.Errorf("new master db %q, want %s", res.NewDB, fakestolon.DB1)
	}
}

// sentinelRewrite is clusterdata as the sentinel writes it each cycle:
// the same, with a new changeTime. (Consul does not move a key's
// ModifyIndex for a write of the value it already holds.)
func sentinelRewrite(data []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var doc map[string]any
	if err := d.Decode(&doc); err != nil {
		return nil, err
	}
	doc["changeTime"] = time.Now().UTC().Format(time.RFC3339Nano)
	return json.Marshal(doc)
}

// A sentinel that never acts: the failover times out, clears forceFail,
// lifts the fence, and the master takes writes again.
func TestFailoverSentinelNeverActs(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.cluster.FailoverTimeout = 3 * time.Second
	plan, err := e.svc.Preflight(t.Context(), "main")
	if err != nil {
		t.Fatalf("preflight: %v", err)
	}
	res, err := e.svc.Failover(t.Context(), plan, func(stolon.Progress) {})
	var fe *stolon.FailoverError
	if !errors.As(err, &fe) {
		t.Fatalf("err %v, want a FailoverError", err)
	}
	t.Logf("%v", err)
	var names []string
	for _, s := range res.Steps {
		names = append(names, s.Name)
	}
	if want := []string{"checked", "fenced", "caught up", "forceFail set", "election", "unfenced"}; !slices.Equal(names, want) {
		t.Errorf("steps %v, want %v", names, want)
	}
	doc := e.sim.ClusterData(t)
	if ff := doc["keepers"].(map[string]any)[fakestolon.Keeper0].(map[string]any)["status"].(map[string]any)["forceFail"]; ff != nil {
		t.Errorf("forceFail left: %v", ff)
	}
	e.primary.Exec(t, "postgres", "INSERT INTO writes (token) VALUES (1)") // a new session writes again
	if f, err := stolon.LoadFence(t.Context(), e.store, "main"); err != nil || f != nil {
		t.Errorf("fence still recorded: %v, %v", f, err)
	}
}

// Replay paused on the standby: Stolon sees no lag (it counts WAL
// received); the preflight asks the standby and refuses.
func TestPreflightRefusesPausedReplay(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.standby.Exec(t, "postgres", "SELECT pg_wal_replay_pause()")
	_, err := e.svc.Preflight(t.Context(), "main")
	var refused *stolon.RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("err %v, want a refusal", err)
	}
	if !containsCheck(refused.Plan, "replay paused") {
		t.Errorf("refusal %v does not name the paused replay", err)
	}
}

func containsCheck(p *stolon.Plan, text string) bool {
	for _, c := range p.Checks {
		if !c.OK && strings.Contains(c.Text, text) {
			return true
		}
	}
	return false
}
