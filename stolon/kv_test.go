package stolon

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// kvCluster is the cluster main on a fake Consul holding a captured state
// ("" for an empty KV store).
func kvCluster(t *testing.T, state string) (*fakeconsul.Server, *Cluster) {
	t.Helper()
	srv := fakeconsul.New()
	t.Cleanup(srv.Close)
	if state != "" {
		if err := srv.LoadKV(fakeconsul.StolonState(state)); err != nil {
			t.Fatal(err)
		}
	}
	return srv, &Cluster{Name: "main", KV: &KV{Address: srv.URL}}
}

func kvRequests(srv *fakeconsul.Server) []fakeconsul.Request {
	var out []fakeconsul.Request
	for _, r := range srv.Requests() {
		if strings.HasPrefix(r.Path, "/v1/kv/") {
			out = append(out, r)
		}
	}
	return out
}

func TestKVReadCapture(t *testing.T) {
	t.Parallel()
	srv, c := kvCluster(t, "normal")
	c.KV.Token = "secret"
	c.KV.Datacenter = fakeconsul.Datacenter
	st, err := c.Read(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Index != 101 { // the capture's X-Consul-Index, its highest ModifyIndex
		t.Errorf("index %d, want 101", st.Index)
	}
	if st.MaxLag != 1232896 {
		t.Errorf("MaxLag %d, want the spec's (Stolon's default)", st.MaxLag)
	}
	if st.Entry.Flags != capLockFlag || st.Entry.ModifyIndex != 101 || st.Data.MasterKeeper() != "keeper0" || !st.LeaderAlive() {
		t.Errorf("entry flags %d index %d, master %q, leader alive %v", st.Entry.Flags, st.Entry.ModifyIndex, st.Data.MasterKeeper(), st.LeaderAlive())
	}
	if !bytes.Equal(st.Entry.Value, capClusterData(t, "normal")) {
		t.Error("clusterdata not read as Consul holds it")
	}
	reqs := kvRequests(srv)
	if len(reqs) != 1 {
		t.Fatalf("requests %v", reqs)
	}
	r := reqs[0]
	_, recurse := r.Query["recurse"]
	_, consistent := r.Query["consistent"]
	if r.Method != http.MethodGet || r.Path != "/v1/kv/stolon/cluster/main/" || !recurse || !consistent || r.Query.Get("dc") != "dc1" || r.Token != "secret" || r.Query.Has("index") {
		t.Errorf("request %s %s, token %q", r.Method, r.String(), r.Token)
	}

	// A configured lag threshold replaces the spec's.
	c.MaxLag = 1 << 20
	if st, err := c.Read(t.Context(), false); err != nil || st.MaxLag != 1<<20 {
		t.Errorf("configured MaxLag: %v, %v", st, err)
	}
	if r := kvRequests(srv)[1]; r.Query.Has("consistent") {
		t.Errorf("a read that need not be consistent asked for it: %s", r.String())
	}
}

// Wait is Consul's blocking query on the prefix: it returns when a key
// under it changes, or when the wait passes.
func TestKVWait(t *testing.T) {
	t.Parallel()
	srv, c := kvCluster(t, "normal")
	start := time.Now()
	st, err := c.Wait(t.Context(), 101, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || st.Index != 101 {
		t.Errorf("an unchanged wait returned after %v at index %d", took, st.Index)
	}

	done := make(chan *State, 1)
	go func() {
		st, err := c.Wait(context.Background(), 101, 10*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	time.Sleep(100 * time.Millisecond)
	value, flags, _, _ := srv.KV(capPrefix + "clusterdata")
	edited, err := setForceFail(value, "keeper1")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetKV(capPrefix+"clusterdata", edited, flags)
	select {
	case st := <-done:
		if st == nil || st.Index <= 101 || !st.Data.Keepers["keeper1"].Status.ForceFail {
			t.Fatalf("woke with %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the blocking query did not return on the write")
	}
	var blocking bool
	for _, r := range kvRequests(srv) {
		blocking = blocking || r.Index() == 101 && r.Query.Get("wait") == "10s"
	}
	if !blocking {
		t.Errorf("no blocking query ?index=101&wait=10s among %v", kvRequests(srv))
	}
}

func TestKVRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		token string
		setup func(srv *fakeconsul.Server)
		write bool   // a check-and-set of clusterdata, else a read
		key   string // the key the error names
		want  []string
	}{
		{
			name: "unknown token", token: "stale",
			setup: func(srv *fakeconsul.Server) { srv.SetToken("root") },
			key:   capPrefix,
			want:  []string{"refused to read stolon/cluster/main/ (403): ACL not found", `key_prefix "stolon/cluster/main/" { policy = "read" }`},
		},
		{
			name: "a token for another cluster's keys", token: "other",
			setup: func(srv *fakeconsul.Server) {
				srv.SetToken("root")
				srv.SetKVPrefixes("other", true, "stolon/cluster/other/")
			},
			key:  capPrefix,
			want: []string{"refused to read stolon/cluster/main/", "left out the keys the token may not read", `key_prefix "stolon/cluster/main/" { policy = "read" }`},
		},
		{
			name: "a token scoped to services only", token: "svc",
			setup: func(srv *fakeconsul.Server) {
				srv.SetToken("root")
				srv.SetScopedToken("svc", "web")
			},
			key:  capPrefix,
			want: []string{"refused to read stolon/cluster/main/", `key_prefix "stolon/cluster/main/" { policy = "read" }`},
		},
		{
			name: "a token reading clusterdata only", token: "cd",
			setup: func(srv *fakeconsul.Server) {
				srv.SetToken("root")
				srv.SetKVPrefixes("cd", true, capPrefix+"clusterdata")
			},
			key:  capPrefix,
			want: []string{"refused to read stolon/cluster/main/", `key_prefix "stolon/cluster/main/" { policy = "read" }`},
		},
		{
			name: "a read-only token writing", token: "ro", write: true,
			setup: func(srv *fakeconsul.Server) {
				srv.SetToken("root")
				srv.SetKVPrefixes("ro", false, capPrefix)
			},
			key: capPrefix + "clusterdata",
			want: []string{"refused to write stolon/cluster/main/clusterdata (403): Permission denied", "lacks permission 'key:write'",
				`key_prefix "stolon/cluster/main/" { policy = "write" }`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, c := kvCluster(t, "normal")
			tt.setup(srv)
			c.KV.Token = tt.token
			var err error
			if tt.write {
				_, err = c.KV.cas(t.Context(), c.ClusterDataKey(), []byte("{}"), capLockFlag, 101)
				if v, _, idx, _ := srv.KV(c.ClusterDataKey()); idx != 101 || !bytes.Equal(v, capClusterData(t, "normal")) {
					t.Error("the refused write changed the key")
				}
			} else {
				_, err = c.Read(t.Context(), true)
			}
			var kerr *KVError
			if !errors.As(err, &kerr) {
				t.Fatalf("%v (%T), want a *KVError", err, err)
			}
			if kerr.Key != tt.key || kerr.Status != http.StatusForbidden {
				t.Errorf("key %q status %d, want %q 403", kerr.Key, kerr.Status, tt.key)
			}
			for _, w := range append(tt.want, "Consul at "+srv.URL) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// The right token reads and writes; the refusal tests above mean
// something only if this passes.
func TestKVTokenAllowed(t *testing.T) {
	t.Parallel()
	srv, c := kvCluster(t, "normal")
	srv.SetToken("root")
	srv.SetKVPrefixes("vigie", true, capPrefix)
	c.KV.Token = "vigie"
	st, err := c.Read(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.KV.cas(t.Context(), c.ClusterDataKey(), st.Entry.Value, st.Entry.Flags, st.Entry.ModifyIndex); err != nil || !ok {
		t.Fatalf("cas with the key_prefix write token: %v, %v", ok, err)
	}
}

func TestKVFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		want   string
	}{
		{http.StatusInternalServerError, "refused to read stolon/cluster/main/ (500): No cluster leader"},
		{http.StatusTooManyRequests, "(429)"},
		{http.StatusBadGateway, "(502): Bad Gateway"},
	}
	for _, tt := range tests {
		srv, c := kvCluster(t, "normal")
		srv.FailNextKV(1, tt.status)
		_, err := c.Read(t.Context(), true)
		var kerr *KVError
		if !errors.As(err, &kerr) || kerr.Status != tt.status || kerr.Key != capPrefix || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%d: %v", tt.status, err)
		}
		if strings.Contains(err.Error(), "key_prefix") {
			t.Errorf("%d: an ACL hint for what is not a refusal: %v", tt.status, err)
		}
		if _, err := c.Read(t.Context(), true); err != nil {
			t.Errorf("%d: the next read failed too: %v", tt.status, err)
		}
	}

	// Another datacenter than Consul knows.
	_, c := kvCluster(t, "normal")
	c.KV.Datacenter = "dc9"
	if _, err := c.Read(t.Context(), true); err == nil || !strings.Contains(err.Error(), "No path to datacenter") {
		t.Errorf("dc9: %v", err)
	}
}

func TestKVUnreachable(t *testing.T) {
	t.Parallel()
	srv := fakeconsul.New()
	addr := srv.URL
	srv.Close()
	c := &Cluster{Name: "main", KV: &KV{Address: addr}}
	_, err := c.Read(t.Context(), true)
	if err == nil || !strings.Contains(err.Error(), "Consul at "+addr+" is unreachable") {
		t.Fatalf("%v, want an error naming %s", err, addr)
	}
	var kerr *KVError
	if errors.As(err, &kerr) {
		t.Errorf("unreachable reported as a refusal: %v", err)
	}
	if _, err := c.KV.cas(t.Context(), c.ClusterDataKey(), []byte("{}"), 0, 1); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("cas: %v", err)
	}

	bad := &Cluster{Name: "main", KV: &KV{Address: "http://[::1"}}
	if _, err := bad.Read(t.Context(), true); err == nil || !strings.Contains(err.Error(), `Consul address "http://[::1"`) {
		t.Errorf("bad address: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, c = kvCluster(t, "normal")
	if _, err := c.Read(ctx, true); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestKVClusterMissing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, state, cluster, store, want string
	}{
		{"empty KV", "", "main", "", "no Stolon cluster at stolon/cluster/main/clusterdata (check the cluster name and store prefix)"},
		{"another cluster name", "normal", "mian", "", "no Stolon cluster at stolon/cluster/mian/clusterdata"},
		{"another store prefix", "normal", "main", "/stolon/clusters", "no Stolon cluster at stolon/clusters/main/clusterdata"},
	}
	for _, tt := range tests {
		_, c := kvCluster(t, tt.state)
		c.Name, c.StorePrefix = tt.cluster, tt.store
		st, err := c.Read(t.Context(), true)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, %v; want an error saying %q", tt.name, st, err, tt.want)
		}
	}

	// The keys of a cluster whose clusterdata is gone.
	srv, c := kvCluster(t, "normal")
	srv.DeleteKV(capPrefix + "clusterdata")
	if _, err := c.Read(t.Context(), true); err == nil || !strings.Contains(err.Error(), "no Stolon cluster at stolon/cluster/main/clusterdata") {
		t.Errorf("clusterdata deleted: %v", err)
	}
}

// cas is Consul's check-and-set: a stale ModifyIndex writes nothing, and
// the flags given are the flags written.
func TestKVCAS(t *testing.T) {
	t.Parallel()
	srv, c := kvCluster(t, "normal")
	key := c.ClusterDataKey()
	st, err := c.Read(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	value, err := setForceFail(st.Entry.Value, "keeper0")
	if err != nil {
		t.Fatal(err)
	}

	for _, stale := range []uint64{st.Entry.ModifyIndex - 1, st.Entry.ModifyIndex + 1} {
		ok, err := c.KV.cas(t.Context(), key, value, st.Entry.Flags, stale)
		if err != nil || ok {
			t.Errorf("cas at stale index %d: %v, %v; want false", stale, ok, err)
		}
	}
	if v, _, idx, _ := srv.KV(key); idx != st.Entry.ModifyIndex || !bytes.Equal(v, st.Entry.Value) {
		t.Fatalf("a failed cas changed the key (index %d)", idx)
	}
	// cas=0 creates only: the key exists.
	if ok, err := c.KV.cas(t.Context(), key, value, st.Entry.Flags, 0); err != nil || ok {
		t.Errorf("cas 0 on an existing key: %v, %v", ok, err)
	}

	ok, err := c.KV.cas(t.Context(), key, value, st.Entry.Flags, st.Entry.ModifyIndex)
	if err != nil || !ok {
		t.Fatalf("cas at the read index: %v, %v", ok, err)
	}
	v, flags, idx, _ := srv.KV(key)
	if !bytes.Equal(v, value) || flags != capLockFlag || idx <= st.Entry.ModifyIndex {
		t.Errorf("written value equal %v, flags %d (want libkv's %d), index %d", bytes.Equal(v, value), flags, uint64(capLockFlag), idx)
	}
	after, err := c.Read(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !after.Data.Keepers["keeper0"].Status.ForceFail || after.Entry.Flags != capLockFlag || after.Entry.ModifyIndex != idx {
		t.Errorf("read back: forceFail %v flags %d index %d", after.Data.Keepers["keeper0"].Status.ForceFail, after.Entry.Flags, after.Entry.ModifyIndex)
	}
	// The index read before the write is stale now.
	if ok, err := c.KV.cas(t.Context(), key, st.Entry.Value, st.Entry.Flags, st.Entry.ModifyIndex); err != nil || ok {
		t.Errorf("second cas at the old index: %v, %v", ok, err)
	}
	// Other keys were left alone, the flags of each kept.
	for _, p := range capPairs(t, "normal") {
		if p.Key == key {
			continue
		}
		v, flags, idx, found := srv.KV(p.Key)
		if !found || !bytes.Equal(v, p.Value) || flags != p.Flags || idx != p.ModifyIndex {
			t.Errorf("%s changed", p.Key)
		}
	}
	// What the write asked, as Consul reads it.
	var put *fakeconsul.Request
	for _, r := range kvRequests(srv) {
		if r.Method == http.MethodPut && r.Query.Get("cas") == "101" {
			put = &r
		}
	}
	if put == nil || put.Path != "/v1/kv/"+key || put.Query.Get("flags") != "3304740253564472344" {
		t.Errorf("the write: %+v", put)
	}
}

// Answers a Consul would not give, from something else at the address.
func TestKVNotConsul(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, want string
		cas              bool
	}{
		{"not a KV list", "<html>proxy</html>", "answered stolon/cluster/main/ with what is not a KV list", false},
		{"a cas answer neither true nor false", "maybe", `answered the write of stolon/cluster/main/clusterdata with "maybe"`, true},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(tt.body))
		}))
		c := &Cluster{Name: "main", KV: &KV{Address: srv.URL + "/"}}
		var err error
		if tt.cas {
			_, err = c.KV.cas(t.Context(), c.ClusterDataKey(), []byte("{}"), 0, 1)
		} else {
			_, err = c.Read(t.Context(), true)
		}
		srv.Close()
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestEscapeKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"stolon/cluster/main/clusterdata", "stolon/cluster/main/clusterdata"},
		{"stolon/cluster/main/", "stolon/cluster/main/"},
		{"a b/c?d/e#f/g%h", "a%20b/c%3Fd/e%23f/g%25h"},
	}
	for _, tt := range tests {
		if got := escapeKey(tt.key); got != tt.want {
			t.Errorf("escapeKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	// A cluster name Consul accepts but a URL must escape reaches its keys.
	srv := fakeconsul.New()
	defer srv.Close()
	srv.SetKV("stolon/cluster/a?b/clusterdata", []byte(`{"formatVersion":1,"cluster":{"status":{"phase":"normal"}}}`), capLockFlag)
	c := &Cluster{Name: "a?b", KV: &KV{Address: srv.URL}}
	st, err := c.Read(t.Context(), false)
	if err != nil || st.Data.Cluster.Status.Phase != "normal" {
		t.Errorf("cluster a?b: %v, %v", st, err)
	}
}
