package fakeconsul

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

const leaderKey = "vigie/leader"

// lockClient is an api client of the fake, as Vigie makes one.
func lockClient(t *testing.T, f *Server, token string) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: f.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newLock is api.Lock with the captured scenario's options.
func newLock(t *testing.T, c *api.Client, instance string, opts api.LockOptions) *api.Lock {
	t.Helper()
	opts.Key, opts.Value, opts.SessionName = leaderKey, []byte(instance), instance
	if opts.SessionTTL == "" {
		opts.SessionTTL = "10s"
	}
	l, err := c.LockOpts(&opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// holder returns the session holding the leader key, failing when none.
func holder(t *testing.T, f *Server, lockIndex uint64) string {
	t.Helper()
	id, li, ok := f.KVHolder(leaderKey)
	if !ok || id == "" || li != lockIndex {
		t.Fatalf("leader key: held by %q, LockIndex %d (exists %v), want a holder and LockIndex %d", id, li, ok, lockIndex)
	}
	return id
}

// closed waits for a lost-lock channel to close.
func closed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the lock's channel did not close", what)
	}
}

// acquires counts the fake's ?acquire requests on the leader key.
func acquires(f *Server) int {
	n := 0
	for _, r := range f.Requests() {
		if _, ok := r.Query["acquire"]; ok && r.Method == http.MethodPut && r.Path == "/v1/kv/"+leaderKey {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawSession creates a session with a raw body and returns its ID.
func rawSession(t *testing.T, f *Server, body string) string {
	t.Helper()
	a := put(t, f.URL+"/v1/session/create", body)
	var out struct{ ID string }
	if a.status != 200 || json.Unmarshal([]byte(a.body), &out) != nil || out.ID == "" {
		t.Fatalf("create %s: %d %q", body, a.status, a.body)
	}
	return out.ID
}

func acquire(t *testing.T, f *Server, key, id, value string) string {
	t.Helper()
	a := put(t, f.URL+"/v1/kv/"+key+"?acquire="+id+"&flags=3304740253564472344", value)
	if a.status != 200 {
		t.Fatalf("acquire %s by %s: %d %q", key, id, a.status, a.body)
	}
	return a.body
}

// The scenario of testdata/consul-lock driven by api.Lock itself: A locks,
// B cannot while A holds, A's session is destroyed and A's lost channel
// closes, A's renew gets 404, B's Lock is refused during the lock delay and
// gets the lock once it is over, B unlocks. A's session has a 3 s
// lock-delay, on real time: B's renewer runs on real time too, and a jump
// of the fake's clock would age B's session without its renewals.
func TestLockLostAndTakenOverAfterLockDelay(t *testing.T) {
	t.Parallel()
	const lockDelay = 3 * time.Second
	f := New()
	t.Cleanup(f.Close)
	c := lockClient(t, f, "")

	lockA := newLock(t, c, "instance-a", api.LockOptions{LockWaitTime: 5 * time.Second, LockDelay: lockDelay})
	lostA, err := lockA.Lock(nil)
	if err != nil || lostA == nil {
		t.Fatalf("A: Lock: %v", err)
	}
	sessA := holder(t, f, 1)
	if ss := f.Sessions(); len(ss) != 1 || ss[0].ID != sessA || ss[0].Name != "instance-a" || ss[0].TTL != "10s" ||
		ss[0].LockDelay != lockDelay || ss[0].Behavior != "release" || ss[0].Node != NodeName || !slices.Equal(ss[0].NodeChecks, []string{"serfHealth"}) {
		t.Fatalf("A's session: %+v", ss)
	}

	// B cannot lock while A holds.
	lockB := newLock(t, c, "instance-b", api.LockOptions{LockWaitTime: 300 * time.Millisecond, LockTryOnce: true})
	if lostB, err := lockB.Lock(nil); err != nil || lostB != nil {
		t.Fatalf("B locked while A holds: %v", err)
	}
	if holder(t, f, 1) != sessA {
		t.Fatal("B took A's lock")
	}

	// A's session destroyed, as on a TTL expiry: A's lost channel closes.
	if _, err := c.Session().Destroy(sessA, nil); err != nil {
		t.Fatal(err)
	}
	destroyed := time.Now()
	closed(t, lostA, "A")
	if id, li, _ := f.KVHolder(leaderKey); id != "" || li != 1 {
		t.Fatalf("after A's session was destroyed: held by %q, LockIndex %d", id, li)
	}
	if e, _, err := c.Session().Renew(sessA, nil); err != nil || e != nil {
		t.Fatalf("renew of A's destroyed session: %+v %v", e, err)
	}
	if a := put(t, f.URL+"/v1/session/renew/"+sessA, ""); a.status != 404 || a.body != "Session id '"+sessA+"' not found" {
		t.Fatalf("renew of A's destroyed session: %d %q", a.status, a.body)
	}

	// B's Lock is refused while the lock delay lasts, then gets the lock.
	before := acquires(f)
	lockB = newLock(t, c, "instance-b", api.LockOptions{LockWaitTime: 5 * time.Second})
	type result struct {
		lost <-chan struct{}
		err  error
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		lost, err := lockB.Lock(nil)
		done <- result{lost, err, time.Now()}
	}()
	waitUntil(t, "B's first acquire", func() bool { return acquires(f) > before })
	time.Sleep(100 * time.Millisecond)
	if id, _, _ := f.KVHolder(leaderKey); id != "" {
		t.Fatalf("B acquired during the lock delay (%s)", id)
	}
	select {
	case r := <-done:
		t.Fatalf("B's Lock returned during the lock delay: %v", r.err)
	default:
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second): // api.Lock retries every 5 s
		t.Fatal("B's Lock did not return after the lock delay")
	}
	if over := destroyed.Add(lockDelay); r.err != nil || r.lost == nil || r.at.Before(over) || acquires(f) < before+2 {
		t.Fatalf("B's Lock: %v, at %v (delay over at %v), %d acquires", r.err, r.at, over, acquires(f)-before)
	}
	sessB := holder(t, f, 2)
	if v, flags, _, _ := f.KV(leaderKey); string(v) != "instance-b" || flags != api.LockFlagValue {
		t.Fatalf("B's value: %q %d", v, flags)
	}

	// B unlocks: the key has no Session, and no lock delay follows a release.
	if err := lockB.Unlock(); err != nil {
		t.Fatal(err)
	}
	if id, li, ok := f.KVHolder(leaderKey); !ok || id != "" || li != 2 {
		t.Fatalf("after Unlock: held by %q, LockIndex %d", id, li)
	}
	closed(t, r.lost, "B after Unlock")
	sessC := rawSession(t, f, `{"Name":"instance-c","TTL":"10s"}`)
	if got := acquire(t, f, leaderKey, sessC, "instance-c"); got != "true" {
		t.Fatalf("acquire right after B's release: %s", got)
	}
	if holder(t, f, 3) != sessC || sessC == sessB {
		t.Fatal("C does not hold the lock")
	}
}

// A short lock-delay, as a session created with LockOpts{LockDelay: 1s}
// sets it: refused before it is over, granted after, on the fake's clock;
// and once on real time alone.
func TestLockDelayShort(t *testing.T) {
	t.Parallel()
	f := New()
	t.Cleanup(f.Close)
	c := lockClient(t, f, "")
	kv := c.KV()

	for _, driven := range []bool{true, false} {
		lockA := newLock(t, c, "instance-a", api.LockOptions{LockDelay: time.Second})
		lostA, err := lockA.Lock(nil)
		if err != nil {
			t.Fatal(err)
		}
		sessA := holder(t, f, map[bool]uint64{true: 1, false: 3}[driven])
		if e, _, err := c.Session().Info(sessA, nil); err != nil || e == nil || e.LockDelay != time.Second {
			t.Fatalf("A's session: %+v %v", e, err)
		}
		sessB, _, err := c.Session().Create(&api.SessionEntry{Name: "instance-b", TTL: "10s"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		pair := &api.KVPair{Key: leaderKey, Value: []byte("instance-b"), Session: sessB, Flags: api.LockFlagValue}
		if !f.ExpireSession(sessA) {
			t.Fatal("A's session unknown")
		}
		closed(t, lostA, "A")
		destroyed := time.Now()
		if ok, _, err := kv.Acquire(pair, nil); err != nil || ok {
			t.Fatalf("acquire at once: %v %v", ok, err)
		}
		if driven {
			f.Advance(500 * time.Millisecond)
			if ok, _, err := kv.Acquire(pair, nil); err != nil || ok {
				t.Fatalf("acquire 0.5 s after: %v %v", ok, err)
			}
			f.Advance(600 * time.Millisecond)
			if ok, _, err := kv.Acquire(pair, nil); err != nil || !ok {
				t.Fatalf("acquire 1.1 s after: %v %v", ok, err)
			}
		} else {
			waitUntil(t, "the lock delay on real time", func() bool {
				ok, _, err := kv.Acquire(pair, nil)
				return err == nil && ok
			})
			if d := time.Since(destroyed); d < 900*time.Millisecond {
				t.Fatalf("acquired %v after the invalidation, lock delay 1 s", d)
			}
		}
		if _, _, err := kv.Release(pair, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Session().Destroy(sessB, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TTL expiry: a session not renewed within TTL × 2 is invalidated; its key
// released (ModifyIndex bumped, blocked queries woken), its holder's lock
// lost; renewing it answers 404.
func TestSessionTTLExpiry(t *testing.T) {
	t.Parallel()
	f := New()
	t.Cleanup(f.Close)
	c := lockClient(t, f, "")
	kv := c.KV()

	id, _, err := c.Session().Create(&api.SessionEntry{Name: "ttl", TTL: "10s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := kv.Acquire(&api.KVPair{Key: leaderKey, Value: []byte("x"), Session: id, Flags: api.LockFlagValue}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	_, meta, err := kv.Get(leaderKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := meta.LastIndex

	f.Advance(2*10*time.Second - 100*time.Millisecond)
	if len(f.Sessions()) != 1 {
		t.Fatal("expired before TTL × 2")
	}
	e, _, err := c.Session().Renew(id, nil)
	if err != nil || e == nil || e.TTL != "10s" || e.ID != id {
		t.Fatalf("renew: %+v %v", e, err)
	}
	f.Advance(2*10*time.Second - 100*time.Millisecond) // 39.8 s: renewed at 19.9 s
	if len(f.Sessions()) != 1 {
		t.Fatal("expired before TTL × 2 after a renew")
	}

	type result struct {
		pair *api.KVPair
		meta *api.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, m, err := kv.Get(leaderKey, &api.QueryOptions{WaitIndex: held, WaitTime: 10 * time.Second})
		done <- result{p, m, err}
	}()
	waitUntil(t, "the blocking Get", func() bool {
		rs := f.Requests()
		return rs[len(rs)-1].Index() == held
	})
	f.Advance(200 * time.Millisecond)
	r := <-done
	if r.err != nil || r.pair == nil || r.pair.Session != "" || r.pair.LockIndex != 1 || r.meta.LastIndex <= held || r.pair.ModifyIndex != r.meta.LastIndex {
		t.Fatalf("after expiry: %v %+v %+v", r.err, r.pair, r.meta)
	}
	if ss := f.Sessions(); len(ss) != 0 {
		t.Fatalf("sessions after expiry: %+v", ss)
	}
	if e, _, err := c.Session().Renew(id, nil); err != nil || e != nil {
		t.Fatalf("renew after expiry: %+v %v", e, err)
	}
	if e, _, err := c.Session().Info(id, nil); err != nil || e != nil {
		t.Fatalf("info after expiry: %+v %v", e, err)
	}

	// The holder of an api.Lock loses it when its session expires, even
	// though its renewer runs (on real time): renewals stopped for 20 s.
	f.Advance(DefaultLockDelay) // the expiry's lock delay
	lockA := newLock(t, c, "instance-a", api.LockOptions{})
	lostA, err := lockA.Lock(nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Advance(2 * 10 * time.Second)
	closed(t, lostA, "A after its TTL")

	// The real timer: 100 ms of real time finish a TTL the clock brought
	// near its end.
	id = rawSession(t, f, `{"TTL":"10s"}`)
	f.Advance(2*10*time.Second - 100*time.Millisecond)
	if len(f.Sessions()) != 1 {
		t.Fatal("expired early")
	}
	waitUntil(t, "expiry on real time", func() bool { return len(f.Sessions()) == 0 })
}

// Consul invalidates the sessions tied to a check that goes critical (the
// node's serfHealth: the node died) or is deregistered, in the same raft
// entry; and refuses sessions on a missing node, a missing or critical
// check.
func TestSessionChecks(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	id := rawSession(t, f, `{"Name":"a"}`) // the default: serfHealth
	if got := acquire(t, f, leaderKey, id, "a"); got != "true" {
		t.Fatal(got)
	}
	if err := f.UpdateCheck(NodeName, "serfHealth", api.HealthCritical, "Agent not live or unreachable"); err != nil {
		t.Fatal(err)
	}
	if len(f.Sessions()) != 0 {
		t.Fatal("critical serfHealth left the session")
	}
	if id, li, _ := f.KVHolder(leaderKey); id != "" || li != 1 {
		t.Fatalf("key still held by %q", id)
	}
	if _, _, mi, _ := f.KV(leaderKey); mi != f.Index() {
		t.Fatalf("released at %d, check written at %d: not one raft entry", mi, f.Index())
	}
	a := put(t, f.URL+"/v1/session/create", `{"Name":"b"}`)
	if a.status != 500 || a.body != "apply failed: Check 'serfHealth' is in critical state" {
		t.Fatalf("create with serfHealth critical: %d %q", a.status, a.body)
	}
	noCheck := rawSession(t, f, `{"Name":"b","Checks":[]}`)
	if got := acquire(t, f, leaderKey, noCheck, "b"); got != "false" {
		t.Fatalf("acquire during the lock delay: %s", got)
	}
	if err := f.UpdateCheck(NodeName, "serfHealth", api.HealthPassing, ""); err != nil {
		t.Fatal(err)
	}

	ttlBound := rawSession(t, f, `{"NodeChecks":["chatops-ttl"]}`)
	if e := f.Sessions(); len(e) != 2 || !slices.Equal(e[1].NodeChecks, []string{"chatops-ttl"}) {
		t.Fatalf("sessions: %+v", e)
	}
	if err := f.RemoveCheck(NodeName, "chatops-ttl"); err != nil {
		t.Fatal(err)
	}
	if ss := f.Sessions(); len(ss) != 1 || ss[0].ID != noCheck || ss[0].ID == ttlBound {
		t.Fatalf("after deregistering chatops-ttl: %+v", ss)
	}

	for body, want := range map[string]string{
		`{"NodeChecks":["nope"]}`: "apply failed: Missing check 'nope' registration",
		`{"Node":"other"}`:        "apply failed: Missing node registration",
	} {
		if a := put(t, f.URL+"/v1/session/create", body); a.status != 500 || a.body != want {
			t.Errorf("create %s: %d %q, want 500 %q", body, a.status, a.body, want)
		}
	}
}

// The session endpoints' answers to good and bad requests, as Consul's.
func TestSessionEndpointsAsConsul(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)

	// Refused by Session.Apply before raft: no index used. Refused by the
	// state store: one used.
	first := rawSession(t, f, "")
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"TTL":"5s"}`, 500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"},
		{`{"TTL":"86401s"}`, 500, "Invalid Session TTL '86401000000000', must be between [10s=24h0m0s]"},
		{`{"TTL":"soon"}`, 500, `Session TTL 'soon' invalid: time: invalid duration "soon"`},
		{`{"Behavior":"keep"}`, 500, "Invalid Behavior setting 'keep'"},
		{`{"Node":""}`, 500, "Must provide Node"},
		{`{"Name":`, 400, "Request decode failed: unexpected EOF"},
		{`{"LockDelay":"later"}`, 400, `Request decode failed: time: invalid duration "later"`},
	} {
		if a := put(t, f.URL+"/v1/session/create", tc.body); a.status != tc.status || a.body != tc.want {
			t.Errorf("create %s: %d %q, want %d %q", tc.body, a.status, a.body, tc.status, tc.want)
		}
	}
	second := rawSession(t, f, "")
	if put(t, f.URL+"/v1/session/create", `{"Node":"other"}`).status != 500 {
		t.Fatal("a session on an unknown node")
	}
	third := rawSession(t, f, "")
	ss := f.Sessions()
	if len(ss) != 3 || ss[0].ID != first || ss[1].ID != second || ss[2].ID != third ||
		ss[1].CreateIndex != ss[0].CreateIndex+1 || ss[2].CreateIndex != ss[1].CreateIndex+2 {
		t.Fatalf("indexes: %+v", ss)
	}

	// What the body sets.
	for _, tc := range []struct {
		body  string
		check func(api.SessionEntry) bool
	}{
		{``, func(e api.SessionEntry) bool {
			return e.Name == "" && e.TTL == "" && e.LockDelay == DefaultLockDelay && e.Behavior == "release" && slices.Equal(e.NodeChecks, []string{"serfHealth"}) && e.Checks == nil
		}},
		{`{"LockDelay":5}`, func(e api.SessionEntry) bool { return e.LockDelay == 5*time.Second }},
		{`{"LockDelay":"1000ms"}`, func(e api.SessionEntry) bool { return e.LockDelay == time.Second }},
		{`{"LockDelay":2000000000}`, func(e api.SessionEntry) bool { return e.LockDelay == 2*time.Second }},
		{`{"LockDelay":0}`, func(e api.SessionEntry) bool { return e.LockDelay == 0 }},
		{`{"lockdelay":"3s","ttl":"24h","behavior":"delete"}`, func(e api.SessionEntry) bool {
			return e.LockDelay == 3*time.Second && e.TTL == "24h" && e.Behavior == "delete"
		}},
		{`{"TTL":"0s"}`, func(e api.SessionEntry) bool { return e.TTL == "0s" }},
		{`{"Checks":[]}`, func(e api.SessionEntry) bool { return e.NodeChecks != nil && len(e.NodeChecks) == 0 && e.Checks == nil }},
		{`{"NodeChecks":[]}`, func(e api.SessionEntry) bool { return e.NodeChecks != nil && len(e.NodeChecks) == 0 && e.Checks == nil }},
		{`{"Checks":["serfHealth","chatops-ttl"]}`, func(e api.SessionEntry) bool {
			return slices.Equal(e.Checks, []string{"serfHealth", "chatops-ttl"}) && slices.Equal(e.NodeChecks, []string{"serfHealth"})
		}},
		{`{"Unknown":1,"Node":"VM"}`, func(e api.SessionEntry) bool { return e.Node == "VM" }},
	} {
		id := rawSession(t, f, tc.body)
		a := get(t, f.URL+"/v1/session/info/"+id)
		var es []api.SessionEntry
		if a.status != 200 || json.Unmarshal([]byte(a.body), &es) != nil || len(es) != 1 || es[0].ID != id || !tc.check(es[0]) {
			t.Errorf("create %s: info %d %s", tc.body, a.status, a.body)
		}
	}
	// None expires before TTL × 2 (the longest TTL is 24 h); with no TTL,
	// never.
	f.Advance(47 * time.Hour)
	if n := len(f.Sessions()); n != 14 {
		t.Fatalf("%d sessions after 47 h, want 14", n)
	}

	for _, tc := range []struct {
		method, path string
		status       int
		body, allow  string
	}{
		{"GET", "/v1/session/create", 405, "method GET not allowed", "OPTIONS,PUT"},
		{"OPTIONS", "/v1/session/create", 200, "", "OPTIONS,PUT"},
		{"PUT", "/v1/session/list", 405, "method PUT not allowed", "OPTIONS,GET"},
		{"PUT", "/v1/session/destroy/", 400, "Missing session", ""},
		{"PUT", "/v1/session/renew/", 400, "Missing session", ""},
		{"GET", "/v1/session/info/", 400, "Missing session", ""},
		{"GET", "/v1/session/node/", 400, "Missing node name", ""},
		{"PUT", "/v1/session/renew/x?index=y", 400, "Invalid index", ""},
		{"GET", "/v1/session/list?wait=soon", 400, "Invalid wait time", ""},
		{"PUT", "/v1/session/create?dc=dc2", 500, "No path to datacenter", ""},
		{"PUT", "/v1/session/destroy/8c5bd4ee-0000-0000-0000-000000000000", 200, "true", ""},
		{"PUT", "/v1/session/renew/8c5bd4ee-0000-0000-0000-000000000000", 404, "Session id '8c5bd4ee-0000-0000-0000-000000000000' not found", ""},
		{"GET", "/v1/session/info/8c5bd4ee-0000-0000-0000-000000000000", 200, "[]", ""},
		{"GET", "/v1/session/node/other", 200, "[]", ""},
	} {
		a := send(t, tc.method, f.URL+tc.path, nil)
		if a.status != tc.status || a.body != tc.body || a.header.Get("Allow") != tc.allow || a.header.Get("X-Consul-Default-Acl-Policy") != "allow" {
			t.Errorf("%s %s: %d %q (Allow %q), want %d %q", tc.method, tc.path, a.status, a.body, a.header.Get("Allow"), tc.status, tc.body)
		}
	}
	var es []api.SessionEntry
	if a := get(t, f.URL+"/v1/session/node/vm"); a.status != 200 || json.Unmarshal([]byte(a.body), &es) != nil || len(es) != 14 {
		t.Fatalf("node vm: %d, %d sessions", a.status, len(es))
	}

	f.FailNextSession(1, 500)
	if a := put(t, f.URL+"/v1/session/create", ""); a.status != 500 || a.body != "No cluster leader" {
		t.Fatalf("injected failure: %d %q", a.status, a.body)
	}
	if a := get(t, f.URL+"/v1/health/state/any"); a.status != 200 {
		t.Fatal("health consumed a session failure")
	}

	// Blocking list: returns when a session is created.
	a := get(t, f.URL+"/v1/session/list")
	listed := index(a)
	if listed != ss[2].CreateIndex+14-3 {
		// the sessions table's index: the last create
		t.Fatalf("list index %d", listed)
	}
	done := make(chan answer, 1)
	go func() { done <- get(t, fmt.Sprintf("%s/v1/session/list?index=%d&wait=10s", f.URL, listed)) }()
	waitUntil(t, "the blocking list", func() bool { rs := f.Requests(); return rs[len(rs)-1].Index() == listed })
	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("the blocking list returned before a change")
	default:
	}
	created := rawSession(t, f, "")
	a = <-done
	if index(a) <= listed || !strings.Contains(a.body, created) || a.header.Get("X-Consul-Query-Backend") != "blocking-query" {
		t.Fatalf("blocking list: %d %v", index(a), a.header)
	}
}

// A session with behavior delete deletes its keys when invalidated; the
// key still gets the lock delay.
func TestSessionBehaviorDelete(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	id := rawSession(t, f, `{"Behavior":"delete","LockDelay":"2s"}`)
	if got := acquire(t, f, "vigie/eph", id, "x"); got != "true" {
		t.Fatal(got)
	}
	_, _, held, _ := f.KV("vigie/eph")
	a := put(t, f.URL+"/v1/session/destroy/"+id, "")
	if a.status != 200 || a.body != "true" {
		t.Fatalf("destroy: %d %q", a.status, a.body)
	}
	a = get(t, f.URL+"/v1/kv/vigie/eph")
	if a.status != 404 || index(a) != f.KVIndex() || index(a) <= held {
		t.Fatalf("after destroy: %d %v, held at %d", a.status, a.header, held)
	}
	other := rawSession(t, f, "")
	if got := acquire(t, f, "vigie/eph", other, "y"); got != "false" {
		t.Fatalf("acquire of a deleted key during its lock delay: %s", got)
	}
	f.Advance(2 * time.Second)
	if got := acquire(t, f, "vigie/eph", other, "y"); got != "true" {
		t.Fatalf("acquire after the lock delay: %s", got)
	}
	// A new key after a tombstone: LockIndex starts again at 1.
	if _, li, _ := f.KVHolder("vigie/eph"); li != 1 {
		t.Fatalf("LockIndex %d", li)
	}
}

// Acquire and release as Consul's kvsLockTxn and kvsUnlockTxn.
func TestAcquireRelease(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	a := rawSession(t, f, "")
	b := rawSession(t, f, "")
	key := f.URL + "/v1/kv/" + leaderKey

	if got := acquire(t, f, leaderKey, a, "a1"); got != "true" {
		t.Fatal(got)
	}
	_, _, mi, _ := f.KV(leaderKey)
	// The holder acquires again: its value written, LockIndex kept; the
	// same value changes nothing.
	if got := acquire(t, f, leaderKey, a, "a2"); got != "true" {
		t.Fatal(got)
	}
	v, _, mi2, _ := f.KV(leaderKey)
	if _, li, _ := f.KVHolder(leaderKey); string(v) != "a2" || li != 1 || mi2 <= mi {
		t.Fatalf("re-acquire: %q LockIndex %d", v, li)
	}
	acquire(t, f, leaderKey, a, "a2")
	if _, _, mi3, _ := f.KV(leaderKey); mi3 != mi2 {
		t.Fatal("an unchanged re-acquire changed the ModifyIndex")
	}
	if got := acquire(t, f, leaderKey, b, "b"); got != "false" {
		t.Fatalf("acquire of a held key: %s", got)
	}
	if r := put(t, key+"?release="+b, "b"); r.status != 200 || r.body != "false" {
		t.Fatalf("release by a non-holder: %d %q", r.status, r.body)
	}
	// A plain write keeps the Session and sets LockIndex 0, as Consul's.
	put(t, key+"?flags=7", "plain")
	if id, li, _ := f.KVHolder(leaderKey); id != a || li != 0 {
		t.Fatalf("plain write: held by %q, LockIndex %d", id, li)
	}
	// The release writes the request's value and flags: none here.
	if r := put(t, key+"?release="+a, ""); r.status != 200 || r.body != "true" {
		t.Fatalf("release: %d %q", r.status, r.body)
	}
	if v, flags, _, _ := f.KV(leaderKey); v != nil || flags != 0 {
		t.Fatalf("after release: %q %d", v, flags)
	}
	if got := acquire(t, f, leaderKey, b, "b"); got != "true" {
		t.Fatalf("acquire after a release: %s", got)
	}
	if _, li, _ := f.KVHolder(leaderKey); li != 1 {
		t.Fatalf("LockIndex %d after a new acquisition (0 + 1)", li)
	}
	if r := put(t, key+"?release="+b+"&cas=1", ""); r.status != 400 {
		t.Fatalf("release with cas: %d", r.status)
	}
	// The lock delay is checked before the session: an unknown session is
	// refused with false then, with 500 after.
	f.ExpireSession(b)
	if got := acquire(t, f, leaderKey, "8c5bd4ee-0000-0000-0000-000000000000", "x"); got != "false" {
		t.Fatalf("unknown session during a lock delay: %s", got)
	}
	f.Advance(DefaultLockDelay)
	if r := put(t, key+"?acquire=8c5bd4ee-0000-0000-0000-000000000000", "x"); r.status != 500 ||
		r.body != `raft apply failed: invalid session "8c5bd4ee-0000-0000-0000-000000000000"` {
		t.Fatalf("unknown session: %d %q", r.status, r.body)
	}
}

// ACLs: session_prefix rules decide; anonymous and unknown tokens are
// refused as Consul refuses them.
func TestSessionACL(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	f.SetToken("root")
	f.SetSessionPrefixes("locker", true, "")
	f.SetKVPrefixes("locker", true, "vigie/")
	f.SetSessionPrefixes("reader", false, "other")

	c := lockClient(t, f, "locker")
	l := newLock(t, c, "instance-a", api.LockOptions{})
	if _, err := l.Lock(nil); err != nil {
		t.Fatal(err)
	}
	sess := holder(t, f, 1)
	for _, tc := range []struct {
		method, path, token string
		status              int
		body                string
	}{
		{"PUT", "/v1/session/create", "", 403, `Permission denied: anonymous token lacks permission 'session:write' on "vm". The anonymous token is used implicitly when a request does not specify a token.`},
		{"PUT", "/v1/session/create", "nobody", 403, "ACL not found"},
		{"PUT", "/v1/session/create", "reader", 403, `Permission denied: token with AccessorID '` + AccessorID("reader") + `' lacks permission 'session:write' on "vm"`},
		{"PUT", "/v1/session/renew/" + sess, "reader", 403, `Permission denied: token with AccessorID '` + AccessorID("reader") + `' lacks permission 'session:write' on "vm"`},
		{"PUT", "/v1/session/destroy/" + sess, "reader", 403, `Permission denied: token with AccessorID '` + AccessorID("reader") + `' lacks permission 'session:write' on "vm"`},
		{"PUT", "/v1/session/renew/8c5bd4ee-0000-0000-0000-000000000000", "reader", 404, "Session id '8c5bd4ee-0000-0000-0000-000000000000' not found"},
		{"GET", "/v1/session/list", "nobody", 403, "ACL not found"},
		{"GET", "/v1/session/list", "reader", 200, "[]"},
		{"GET", "/v1/session/info/" + sess, "reader", 200, "[]"},
	} {
		a := send(t, tc.method, f.URL+tc.path, nil, "X-Consul-Token", tc.token)
		if a.status != tc.status || a.body != tc.body || a.header.Get("X-Consul-Default-Acl-Policy") != "deny" {
			t.Errorf("%s %s as %q: %d %q, want %d %q", tc.method, tc.path, tc.token, a.status, a.body, tc.status, tc.body)
		}
		if tc.token == "reader" && tc.method == "GET" && a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
			t.Errorf("%s as reader: not marked filtered", tc.path)
		}
	}
	if a := get(t, f.URL+"/v1/session/list", "X-Consul-Token", "root"); a.status != 200 || !strings.Contains(a.body, sess) {
		t.Fatalf("root's list: %d %q", a.status, a.body)
	}
}

// Consul unreachable: the holder's monitor fails and its lock is lost. No
// session expires while the agent is down; a restart starts every TTL
// again and forgets lock delays.
func TestSessionsAcrossStopAndRestart(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	c := lockClient(t, f, "")
	l := newLock(t, c, "instance-a", api.LockOptions{})
	lost, err := l.Lock(nil)
	if err != nil {
		t.Fatal(err)
	}
	lockHolder := holder(t, f, 1)

	plain := rawSession(t, f, `{"TTL":"10s"}`)
	delayed := rawSession(t, f, "")
	if got := acquire(t, f, "vigie/other", delayed, "x"); got != "true" {
		t.Fatal(got)
	}
	f.ExpireSession(delayed) // vigie/other now under a 15 s lock delay

	f.Stop()
	closed(t, lost, "A with Consul stopped")
	f.Advance(time.Hour)
	if n := len(f.Sessions()); n != 2 {
		t.Fatalf("%d sessions after an hour down, want 2", n)
	}
	if err := f.Restart(f.Index(), StateBefore()); err != nil {
		t.Fatal(err)
	}
	// The stop cut the idle keep-alive connections; a PUT is not retried
	// on one the client has not yet seen closed.
	http.DefaultClient.CloseIdleConnections()
	if id, _, _ := f.KVHolder(leaderKey); id != lockHolder {
		t.Fatalf("the lock after a restart: %q", id)
	}
	other := rawSession(t, f, "")
	if got := acquire(t, f, "vigie/other", other, "y"); got != "true" {
		t.Fatalf("lock delay kept across a restart: %s", got)
	}
	_ = l.Unlock() // stops A's renewer, which would keep its session alive
	f.Advance(2*10*time.Second - 100*time.Millisecond)
	if !slices.ContainsFunc(f.Sessions(), func(e api.SessionEntry) bool { return e.ID == plain }) {
		t.Fatal("a TTL ran on while the agent was down")
	}
	f.Advance(200 * time.Millisecond)
	if slices.ContainsFunc(f.Sessions(), func(e api.SessionEntry) bool { return e.ID == plain }) {
		t.Fatal("the TTL did not start again at the restart")
	}
}

// exchange is one recorded request and answer of testdata/consul-lock.
type exchange struct {
	name           string
	method, target string
	reqBody        string
	status         int
	header         http.Header
	body           string
}

func loadExchange(t *testing.T, name string) exchange {
	t.Helper()
	b, err := os.ReadFile("testdata/consul-lock/" + name + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	req, resp, ok := strings.Cut(string(b), "\n--- ")
	if !ok {
		t.Fatalf("%s: no answer", name)
	}
	lines := strings.SplitN(req, "\n", 3) // "### …", "METHOD target", rest
	method, target, _ := strings.Cut(lines[1], " ")
	ex := exchange{name: name, method: method, target: target, header: http.Header{}}
	if body := strings.TrimPrefix(lines[2], "\n"); body != "" {
		ex.reqBody = strings.TrimSuffix(body, "\n") // the proxy's blank line
	}
	head, body, _ := strings.Cut(resp, "\n\n")
	hl := strings.Split(head, "\n")
	if ex.status, err = strconv.Atoi(hl[0]); err != nil {
		t.Fatalf("%s: status %q", name, hl[0])
	}
	for _, l := range hl[1:] {
		k, v, _ := strings.Cut(l, ": ")
		ex.header.Add(k, v)
	}
	ex.body = strings.TrimSuffix(body, "\n")
	return ex
}

// mapping pairs the capture's session IDs and raft indexes with the
// fake's, one to one.
type mapping struct {
	t        *testing.T
	ids      map[string]string
	idsBack  map[string]string
	idx      map[uint64]uint64
	idxBack  map[uint64]uint64
	captured string // the exchange being compared
}

func (m *mapping) id(captured, fake string) {
	if got, ok := m.ids[captured]; ok && got != fake || m.idsBack[fake] != "" && m.idsBack[fake] != captured {
		m.t.Errorf("%s: session %s is %s in the fake, was %s", m.captured, captured, fake, got)
	}
	m.ids[captured], m.idsBack[fake] = fake, captured
}

func (m *mapping) index(captured, fake uint64) {
	if got, ok := m.idx[captured]; ok && got != fake {
		m.t.Errorf("%s: index %d is %d in the fake, was %d", m.captured, captured, fake, got)
	}
	if back, ok := m.idxBack[fake]; ok && back != captured {
		m.t.Errorf("%s: fake index %d stands for %d and %d", m.captured, fake, back, captured)
	}
	m.idx[captured], m.idxBack[fake] = fake, captured
}

// walk compares a captured JSON value with the fake's: equal but for
// session IDs and raft indexes, which must map one to one.
func (m *mapping) walk(key string, c, f any) {
	switch cv := c.(type) {
	case map[string]any:
		fv, ok := f.(map[string]any)
		if !ok || len(fv) != len(cv) {
			m.t.Errorf("%s: %s: %v, captured %v", m.captured, key, f, c)
			return
		}
		for k := range cv {
			m.walk(k, cv[k], fv[k])
		}
	case []any:
		fv, ok := f.([]any)
		if !ok || len(fv) != len(cv) {
			m.t.Errorf("%s: %s: %v, captured %v", m.captured, key, f, c)
			return
		}
		for i := range cv {
			m.walk(key, cv[i], fv[i])
		}
	case string:
		if fv, ok := f.(string); ok && (key == "ID" || key == "Session") {
			m.id(cv, fv)
		} else if !reflect.DeepEqual(c, f) {
			m.t.Errorf("%s: %s: %v, captured %v", m.captured, key, f, c)
		}
	case json.Number:
		fv, ok := f.(json.Number)
		if ok && (key == "CreateIndex" || key == "ModifyIndex") {
			ci, _ := strconv.ParseUint(cv.String(), 10, 64)
			fi, _ := strconv.ParseUint(fv.String(), 10, 64)
			m.index(ci, fi)
		} else if !reflect.DeepEqual(c, f) {
			m.t.Errorf("%s: %s: %v, captured %v", m.captured, key, f, c)
		}
	default:
		if !reflect.DeepEqual(c, f) {
			m.t.Errorf("%s: %s: %v, captured %v", m.captured, key, f, c)
		}
	}
}

var (
	uuidRE  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	raftRE  = regexp.MustCompile(`"(CreateIndex|ModifyIndex)": (\d+)`)
	indexRE = regexp.MustCompile(`([?&]index=)(\d+)`)
)

// request translates a captured request target into the fake's terms.
func (m *mapping) request(target string) string {
	target = uuidRE.ReplaceAllStringFunc(target, func(id string) string {
		if f, ok := m.ids[id]; ok {
			return f
		}
		m.t.Fatalf("%s: session %s not seen yet", m.captured, id)
		return ""
	})
	return indexRE.ReplaceAllStringFunc(target, func(s string) string {
		p := indexRE.FindStringSubmatch(s)
		n, _ := strconv.ParseUint(p[2], 10, 64)
		f, ok := m.idx[n]
		if !ok {
			m.t.Fatalf("%s: index %d not seen yet", m.captured, n)
		}
		return p[1] + strconv.FormatUint(f, 10)
	})
}

// back writes a fake body in the capture's terms, indented as a dev
// agent indents.
func (m *mapping) back(body string) string {
	if json.Valid([]byte(body)) {
		var buf bytes.Buffer
		if err := json.Indent(&buf, []byte(body), "", "    "); err == nil {
			body = buf.String()
		}
	}
	body = uuidRE.ReplaceAllStringFunc(body, func(id string) string { return m.idsBack[id] })
	return raftRE.ReplaceAllStringFunc(body, func(s string) string {
		p := raftRE.FindStringSubmatch(s)
		n, _ := strconv.ParseUint(p[2], 10, 64)
		return fmt.Sprintf(`"%s": %d`, p[1], m.idxBack[n])
	})
}

// The capture replayed against the fake in its order, the waits replaced
// by the fake's clock: every answer the same status, the same headers
// (but Date and Content-Length, the fake sending compact JSON) and, once
// indented and with its session IDs and raft indexes mapped to the
// capture's, the same bytes (LockIndex, Session, Flags and Value
// included).
func TestLockCapturesReplayed(t *testing.T) {
	f := New()
	t.Cleanup(f.Close)
	m := &mapping{t: t, ids: map[string]string{}, idsBack: map[string]string{}, idx: map[uint64]uint64{}, idxBack: map[uint64]uint64{}}
	compared := map[string]bool{}

	for _, step := range []string{
		"001", "002", "003", // A locks
		"004", "005", "006", "009", "010", "011", "012", // B tries while A holds, gives up
		"013", "007", // A's session destroyed: A's monitor sees the key lose its Session
		"014", "015", "016", "017", "018", "019", "020", "021", "022", // B locks again: refused
		"+10s", "023", "024", "025", "026", // still in the lock delay
		"+5s", "027", "028", "029", // the lock delay is over: granted
		"030", "031", // B unlocks
	} {
		if d, ok := strings.CutPrefix(step, "+"); ok {
			dur, err := time.ParseDuration(d)
			if err != nil {
				t.Fatal(err)
			}
			f.Advance(dur)
			continue
		}
		ex := loadExchange(t, step)
		m.captured = step
		compared[step] = true
		var body io.Reader
		if ex.reqBody != "" {
			body = strings.NewReader(ex.reqBody)
		}
		a := send(t, ex.method, f.URL+m.request(ex.target), body)
		if a.status != ex.status {
			t.Errorf("%s %s %s: %d %q, captured %d", step, ex.method, ex.target, a.status, a.body, ex.status)
			continue
		}
		for _, h := range []string{"Content-Type", "Vary", "X-Consul-Default-Acl-Policy", "X-Consul-Knownleader", "X-Consul-Lastcontact", "X-Consul-Query-Backend", "X-Consul-Effective-Consistency", "X-Consul-Results-Filtered-By-ACLs"} {
			if a.header.Get(h) != ex.header.Get(h) {
				t.Errorf("%s: %s %q, captured %q", step, h, a.header.Get(h), ex.header.Get(h))
			}
		}
		if ci := ex.header.Get("X-Consul-Index"); ci != "" {
			n, _ := strconv.ParseUint(ci, 10, 64)
			if a.header.Get("X-Consul-Index") == "" {
				t.Errorf("%s: no X-Consul-Index", step)
			} else {
				m.index(n, index(a))
			}
		} else if a.header.Get("X-Consul-Index") != "" {
			t.Errorf("%s: X-Consul-Index %s, none captured", step, a.header.Get("X-Consul-Index"))
		}
		if json.Valid([]byte(ex.body)) {
			var c, fv any
			dc := json.NewDecoder(strings.NewReader(ex.body))
			dc.UseNumber()
			df := json.NewDecoder(strings.NewReader(a.body))
			df.UseNumber()
			if dc.Decode(&c) != nil || df.Decode(&fv) != nil {
				t.Errorf("%s: body %q, captured %q", step, a.body, ex.body)
				continue
			}
			m.walk("", c, fv)
		}
		if got := m.back(a.body); got != ex.body {
			t.Errorf("%s %s %s: body\n%s\ncaptured\n%s", step, ex.method, ex.target, got, ex.body)
		}
	}

	// The raft indexes keep the capture's order.
	var caps []uint64
	for c := range m.idx {
		caps = append(caps, c)
	}
	slices.Sort(caps)
	for i := 1; i < len(caps); i++ {
		if m.idx[caps[i]] <= m.idx[caps[i-1]] {
			t.Errorf("captured indexes %d < %d are %d >= %d in the fake", caps[i-1], caps[i], m.idx[caps[i-1]], m.idx[caps[i]])
		}
	}
	if len(m.ids) != 3 {
		t.Errorf("%d sessions mapped, want A, B and B again", len(m.ids))
	}
	// After B's release the key is free, B's value kept.
	if id, li, ok := f.KVHolder(leaderKey); !ok || id != "" || li != 2 {
		t.Errorf("after B's release: held by %q, LockIndex %d", id, li)
	}

	// Every capture but 008 (a blocking read that timed out while A held)
	// was compared.
	des, err := os.ReadDir("testdata/consul-lock")
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		n := strings.TrimSuffix(de.Name(), ".txt")
		if len(n) == 3 && !compared[n] && n != "008" {
			t.Errorf("capture %s not replayed", n)
		}
	}
}
