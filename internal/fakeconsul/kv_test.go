package fakeconsul

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

const (
	stolonPrefix = "stolon/cluster/main/"
	clusterdata  = stolonPrefix + "clusterdata"
	stolonFlags  = 3304740253564472344 // every Stolon key's, api.LockFlagValue
)

// send sends a request with a body (nil: none) and header name/value pairs.
func send(t *testing.T, method, url string, body io.Reader, header ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b), time.Since(start)}
}

func put(t *testing.T, url, body string, header ...string) answer {
	t.Helper()
	return send(t, http.MethodPut, url, strings.NewReader(body), header...)
}

func entries(t *testing.T, body string) []kvEntry {
	t.Helper()
	var es []kvEntry
	if err := json.Unmarshal([]byte(body), &es); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	return es
}

func index(a answer) uint64 {
	n, _ := strconv.ParseUint(a.header.Get("X-Consul-Index"), 10, 64)
	return n
}

// stolon starts a fake holding a captured Stolon state.
func stolon(t *testing.T, state string) *Server {
	t.Helper()
	f := New()
	t.Cleanup(f.Close)
	if err := f.LoadKV(StolonState(state)); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestKVServesEveryStolonCapture(t *testing.T) {
	names := StolonStates()
	if len(names) != 31 || names[0] != "failover" || !strings.HasPrefix(names[1], "failover-00") {
		t.Fatalf("states %v", names)
	}
	for _, name := range names {
		f := stolon(t, name)
		capture := StolonState(name)
		// With ?pretty the fake sends the capture's bytes, plus the newline
		// Consul adds for ?pretty (a dev agent indents without it).
		a := get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse&pretty")
		if a.status != 200 || a.body != string(capture)+"\n" {
			t.Fatalf("%s: %d, body differs from the capture:\n%.300s", name, a.status, a.body)
		}
		var top uint64
		for _, e := range entries(t, string(capture)) {
			top = max(top, e.ModifyIndex)
		}
		if index(a) != top {
			t.Errorf("%s: X-Consul-Index %d, want the highest ModifyIndex %d", name, index(a), top)
		}
		// Compact by default, same entries.
		if c := get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse"); !reflect.DeepEqual(entries(t, c.body), entries(t, string(capture))) || strings.Contains(c.body, "\n") {
			t.Errorf("%s: compact body differs:\n%.300s", name, c.body)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("StolonState of an unknown name did not panic")
		}
	}()
	StolonState("nope")
}

func TestKVNormalAsCaptured(t *testing.T) {
	f := stolon(t, "normal")
	b, err := os.ReadFile("testdata/stolon/normal.kv.headers")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`X-Consul-Index: (\d+)`).FindSubmatch(b)
	if m == nil || string(m[1]) != "101" {
		t.Fatalf("normal.kv.headers: %q", m)
	}
	a := get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse")
	for k, v := range map[string]string{
		"Content-Type":                   "application/json",
		"Vary":                           "Accept-Encoding",
		"X-Consul-Default-Acl-Policy":    "allow",
		"X-Consul-Index":                 string(m[1]),
		"X-Consul-Knownleader":           "true",
		"X-Consul-Lastcontact":           "0",
		"X-Consul-Query-Backend":         "blocking-query",
		"X-Consul-Effective-Consistency": "", // KV does not report it
	} {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	es := entries(t, a.body)
	want := []struct {
		key          string
		session      string
		lock, create uint64
		modify       uint64
	}{
		{"clusterdata", "", 0, 19, 101},
		{"keepers/info/keeper0", "fd7de60a-0144-3f20-112d-9093066ebcac", 0, 27, 97},
		{"keepers/info/keeper1", "a1379e0d-3dd7-1ac4-37ed-9a21829a730e", 0, 50, 98},
		{"proxies/info/5a6b1224", "fc219a9b-4310-55e2-5581-958387364dbd", 0, 43, 99},
		{"sentinel-leader", "91646fe0-ac37-bf10-ed3f-c881eb07ef23", 1, 22, 22},
		{"sentinels/info/f6db1c81", "87560c67-e502-64e8-a60c-9b3ec1d7ca56", 0, 23, 24},
	}
	if len(es) != len(want) {
		t.Fatalf("%d entries", len(es))
	}
	for i, w := range want {
		e := es[i]
		if e.Key != stolonPrefix+w.key || e.Flags != stolonFlags || e.Session != w.session || e.LockIndex != w.lock ||
			e.CreateIndex != w.create || e.ModifyIndex != w.modify || len(e.Value) == 0 {
			t.Errorf("entry %d: %+v", i, e)
		}
	}

	// One key: its ModifyIndex, whatever the table's.
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"sentinel-leader?consistent")
	if es := entries(t, a.body); a.status != 200 || index(a) != 22 || len(es) != 1 || string(es[0].Value) != "f6db1c81" || es[0].LockIndex != 1 {
		t.Fatalf("one key: %d %v %q", a.status, a.header, a.body)
	}
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"sentinel-leader?raw&stale")
	if a.status != 200 || a.body != "f6db1c81" || a.header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Content-Security-Policy") != "sandbox" || index(a) != 22 {
		t.Fatalf("raw: %d %v %q", a.status, a.header, a.body)
	}
	value, flags, modify, ok := f.KV(clusterdata)
	var cd struct {
		Cluster struct{ Status struct{ Master string } }
	}
	if err := json.Unmarshal(value, &cd); err != nil || !ok || flags != stolonFlags || modify != 101 || cd.Cluster.Status.Master != "d51919e0" {
		t.Fatalf("KV(clusterdata): %v %d %d %v %+v", err, flags, modify, ok, cd)
	}
	if raw := get(t, f.URL+"/v1/kv/"+clusterdata+"?raw"); raw.body != string(value) {
		t.Fatal("?raw differs from the decoded value")
	}

	// A missing key: 404, no body, no Content-Type, the table's index.
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"nope")
	if a.status != 404 || a.body != "" || a.header.Get("Content-Type") != "" || index(a) != 101 || a.header.Get("X-Consul-Knownleader") != "true" {
		t.Fatalf("missing: %d %v %q", a.status, a.header, a.body)
	}
	if a := get(t, f.URL+"/v1/kv/other/?recurse"); a.status != 404 || index(a) != 101 {
		t.Fatalf("missing prefix: %d %v", a.status, a.header)
	}

	// Key names.
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"?keys")
	var keys []string
	if err := json.Unmarshal([]byte(a.body), &keys); err != nil || len(keys) != 6 || keys[0] != clusterdata || index(a) != 101 {
		t.Fatalf("keys: %v %q", err, a.body)
	}
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"?keys&separator=/")
	if err := json.Unmarshal([]byte(a.body), &keys); err != nil || !reflect.DeepEqual(keys, []string{
		clusterdata, stolonPrefix + "keepers/", stolonPrefix + "proxies/", stolonPrefix + "sentinel-leader", stolonPrefix + "sentinels/",
	}) {
		t.Fatalf("keys with separator: %v %q", err, a.body)
	}
	if a := get(t, f.URL+"/v1/kv/"+stolonPrefix+"keepers/?keys&seperator=/"); a.body != `["stolon/cluster/main/keepers/info/"]` || index(a) != 98 {
		t.Fatalf("keys with Consul's old spelling: %q %v", a.body, a.header)
	}
	if a := get(t, f.URL+"/v1/kv/nope/?keys"); a.status != 404 || a.body != "" {
		t.Fatalf("keys of a missing prefix: %d %q", a.status, a.body)
	}
}

func TestKVEmptyStore(t *testing.T) {
	f := New()
	defer f.Close()
	a := get(t, f.URL+"/v1/kv/x")
	if a.status != 404 || a.body != "" || index(a) != 1 { // Consul never answers 0
		t.Fatalf("empty: %d %q %v", a.status, a.body, a.header)
	}
	if a := get(t, f.URL+"/v1/kv/?keys"); a.status != 200 || a.body != "[]" || index(a) != 1 {
		t.Fatalf("root keys: %d %q", a.status, a.body)
	}
	// The first write takes the raft index after the health state's.
	if a := put(t, f.URL+"/v1/kv/a/b", "v"); a.status != 200 || a.body != "true" || a.header.Get("Content-Type") != "application/json" || a.header.Get("X-Consul-Index") != "" {
		t.Fatalf("put: %d %q %v", a.status, a.body, a.header)
	}
	if _, _, m, ok := f.KV("a/b"); !ok || m != IndexBefore+1 || f.KVIndex() != IndexBefore+1 {
		t.Fatalf("ModifyIndex %d, KV index %d", m, f.KVIndex())
	}
	// An empty value is null, as Consul answers it.
	put(t, f.URL+"/v1/kv/a/empty", "")
	if a := get(t, f.URL+"/v1/kv/a/empty"); !strings.Contains(a.body, `"Value":null`) {
		t.Fatalf("empty value: %q", a.body)
	}
	if a := get(t, f.URL+"/v1/kv/a/empty?raw"); a.status != 200 || a.body != "" || a.header.Get("Content-Length") != "0" {
		t.Fatalf("empty raw: %d %q %v", a.status, a.body, a.header)
	}
}

func TestKVCAS(t *testing.T) {
	f := stolon(t, "normal")
	u := f.URL + "/v1/kv/" + clusterdata
	if a := put(t, u+"?cas=0", "x"); a.status != 200 || a.body != "false" {
		t.Fatalf("cas=0 on an existing key: %d %q", a.status, a.body)
	}
	if a := put(t, u+"?cas=100", "x"); a.body != "false" {
		t.Fatalf("stale cas: %q", a.body)
	}
	if v, _, m, _ := f.KV(clusterdata); m != 101 || bytes.Equal(v, []byte("x")) {
		t.Fatal("a failed CAS wrote")
	}
	// Right index: written at the next raft index. The two failed CAS used
	// up 102 and 103, as Raft applies them before they fail.
	if a := put(t, u+"?cas=101&flags="+strconv.FormatUint(stolonFlags, 10), "new"); a.body != "true" {
		t.Fatalf("right cas: %q", a.body)
	}
	es := entries(t, get(t, u).body)
	if e := es[0]; string(e.Value) != "new" || e.Flags != stolonFlags || e.ModifyIndex != 104 || e.CreateIndex != 19 {
		t.Fatalf("after cas: %+v", e)
	}
	// A write without ?flags sets them to 0, as in Consul.
	if a := put(t, u+"?cas=104", "newer"); a.body != "true" {
		t.Fatalf("cas: %q", a.body)
	}
	if _, flags, m, _ := f.KV(clusterdata); flags != 0 || m != 105 {
		t.Fatalf("flags %d, ModifyIndex %d", flags, m)
	}
	// Create only if absent.
	if a := put(t, f.URL+"/v1/kv/"+stolonPrefix+"new?cas=0&flags=7", "v"); a.body != "true" {
		t.Fatalf("cas=0 on a new key: %q", a.body)
	}
	if a := put(t, f.URL+"/v1/kv/"+stolonPrefix+"new?cas=0", "w"); a.body != "false" {
		t.Fatalf("second cas=0: %q", a.body)
	}
	if a := put(t, f.URL+"/v1/kv/"+stolonPrefix+"absent?cas=5", "w"); a.body != "false" {
		t.Fatalf("cas=5 on a missing key: %q", a.body)
	}
	if v, flags, m, _ := f.KV(stolonPrefix + "new"); string(v) != "v" || flags != 7 || m != 106 {
		t.Fatalf("new: %q %d %d", v, flags, m)
	}
	// A plain write keeps the Session (LockIndex comes from the request: 0).
	put(t, f.URL+"/v1/kv/"+stolonPrefix+"sentinel-leader", "f6db1c81")
	if e := entries(t, get(t, f.URL+"/v1/kv/"+stolonPrefix+"sentinel-leader").body)[0]; e.Session != "91646fe0-ac37-bf10-ed3f-c881eb07ef23" || e.LockIndex != 0 || e.Flags != 0 {
		t.Fatalf("plain write over a held key: %+v", e)
	}
	// Writing what a key holds changes nothing, and uses up an index.
	before := f.KVIndex()
	f.SetKV(stolonPrefix+"new", []byte("v"), 7)
	if _, _, m, _ := f.KV(stolonPrefix + "new"); m != 106 || f.KVIndex() != before {
		t.Fatalf("unchanged write moved ModifyIndex to %d", m)
	}
	f.SetKV(stolonPrefix+"new", []byte("w"), 7)
	if _, _, m, _ := f.KV(stolonPrefix + "new"); m != before+2 {
		t.Fatalf("SetKV: ModifyIndex %d, want %d", m, before+2)
	}
	// SetKV, unlike a plain PUT, keeps a held key's LockIndex.
	f.SetKV(stolonPrefix+"keepers/info/keeper0", []byte("{}"), stolonFlags)
	if es := entries(t, get(t, f.URL+"/v1/kv/"+stolonPrefix+"keepers/info/keeper0").body); es[0].Session != "fd7de60a-0144-3f20-112d-9093066ebcac" || es[0].CreateIndex != 27 {
		t.Fatalf("SetKV: %+v", es[0])
	}
}

func TestKVBlocking(t *testing.T) {
	f := stolon(t, "normal")
	u := f.URL + "/v1/kv/" + clusterdata

	if a := get(t, u+"?index=0&wait=5s"); a.took > time.Second {
		t.Fatalf("index=0 blocked %s", a.took)
	}
	// Nothing changes: the wait ends (plus at most wait/16), same index.
	a := get(t, u+"?index=101&wait=200ms")
	if index(a) != 101 || a.status != 200 || a.took < 200*time.Millisecond || a.took > 200*time.Millisecond+time.Second {
		t.Fatalf("unchanged: index %d after %s", index(a), a.took)
	}
	// Writes to other keys do not end it; a write to it does.
	done := make(chan answer, 1)
	go func() { done <- get(t, u+"?index=101&wait=10s") }()
	waitBlocked(t, f, 1)
	f.SetKV(stolonPrefix+"keepers/info/keeper0", []byte("{}"), stolonFlags)
	select {
	case a := <-done:
		t.Fatalf("returned on another key's write: %d", index(a))
	case <-time.After(300 * time.Millisecond):
	}
	f.SetKV(clusterdata, []byte(`{"formatVersion":1}`), stolonFlags)
	a = <-done
	if index(a) != 103 || a.took > 5*time.Second || string(entries(t, a.body)[0].Value) != `{"formatVersion":1}` {
		t.Fatalf("after the write: index %d after %s", index(a), a.took)
	}

	// ?recurse returns on a write under its prefix, with the new highest index.
	go func() { done <- get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse&index=103&wait=10s") }()
	waitBlocked(t, f, 2)
	f.SetKV(stolonPrefix+"sentinels/info/f6db1c81", []byte(`{"UID":"f6db1c81","x":1}`), stolonFlags)
	if a := <-done; index(a) != 104 || len(entries(t, a.body)) != 6 {
		t.Fatalf("recurse: index %d", index(a))
	}

	// A deletion ends a query on the key (404 at the deletion's index) and
	// on its prefix (the tombstone's index).
	go func() { done <- get(t, u+"?index=103&wait=10s") }()
	waitBlocked(t, f, 3)
	f.DeleteKV(clusterdata)
	if a := <-done; a.status != 404 || index(a) != 105 {
		t.Fatalf("deleted: %d index %d", a.status, index(a))
	}
	if a := get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse"); index(a) != 105 || len(entries(t, a.body)) != 5 {
		t.Fatalf("after deletion: index %d (want the tombstone's)", index(a))
	}

	// A missing key: once seen missing, writes to other keys do not end
	// the query; its creation does.
	go func() { done <- get(t, u+"?index=105&wait=10s") }()
	waitBlocked(t, f, 4)
	f.SetKV(stolonPrefix+"other", []byte("x"), 0)
	select {
	case a := <-done:
		t.Fatalf("missing key returned on another key's write: %d %d", a.status, index(a))
	case <-time.After(300 * time.Millisecond):
	}
	f.SetKV(clusterdata, []byte("back"), stolonFlags)
	if a := <-done; a.status != 200 || index(a) != 107 {
		t.Fatalf("recreated: %d index %d", a.status, index(a))
	}

	// Loading the next state of a series wakes only what changed in it.
	if err := f.LoadKV(StolonState("failover-00")); err != nil {
		t.Fatal(err)
	}
	go func() { done <- get(t, u+"?index=591&wait=10s") }()
	waitBlocked(t, f, 5)
	if err := f.LoadKV(StolonState("failover-01")); err != nil { // clusterdata still 591
		t.Fatal(err)
	}
	select {
	case a := <-done:
		t.Fatalf("returned on a load that left it alone: %d", index(a))
	case <-time.After(300 * time.Millisecond):
	}
	if err := f.LoadKV(StolonState("failover-02")); err != nil {
		t.Fatal(err)
	}
	if a := <-done; index(a) != 592 || !strings.Contains(string(entries(t, a.body)[0].Value), `"forceFail":true`) {
		t.Fatalf("failover-02: index %d", index(a))
	}

	// Loading an older state is a restore: blocked queries return at once.
	go func() { done <- get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse&index=592&wait=10s") }()
	waitBlocked(t, f, 6)
	if err := f.LoadKV(StolonState("normal")); err != nil {
		t.Fatal(err)
	}
	if a := <-done; index(a) != 101 || a.took > 5*time.Second {
		t.Fatalf("restore: index %d after %s", index(a), a.took)
	}
}

// waitBlocked waits until the fake has received n blocking KV queries.
func waitBlocked(t *testing.T, f *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		for _, r := range f.Requests() {
			if strings.HasPrefix(r.Path, "/v1/kv/") && r.Index() > 0 && r.Query.Get("wait") == "10s" {
				got++
			}
		}
		if got >= n {
			time.Sleep(20 * time.Millisecond) // let it reach its wait
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blocking queries, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKVDelete(t *testing.T) {
	f := stolon(t, "normal")
	u := f.URL + "/v1/kv/" + stolonPrefix
	del := func(path string) answer { return send(t, http.MethodDelete, u+path, nil) }
	if a := del("keepers/info/keeper1?cas=50"); a.status != 200 || a.body != "false" {
		t.Fatalf("stale cas delete: %d %q", a.status, a.body)
	}
	if a := del("keepers/info/keeper1?cas=98"); a.body != "true" {
		t.Fatalf("cas delete: %q", a.body)
	}
	if _, _, _, ok := f.KV(stolonPrefix + "keepers/info/keeper1"); ok {
		t.Fatal("still there")
	}
	if a := del("keepers/info/keeper1?cas=98"); a.body != "true" { // Consul: already gone is true
		t.Fatalf("cas delete of a missing key: %q", a.body)
	}
	if a := del("nope"); a.body != "true" {
		t.Fatalf("delete of a missing key: %q", a.body)
	}
	// Deleting what is not there changes nothing but uses up indexes.
	if a := get(t, u+"keepers/?recurse"); index(a) != 103 || len(entries(t, a.body)) != 1 {
		t.Fatalf("keepers after deletion: index %d", index(a))
	}
	if a := get(t, u+"keepers/info/keeper1"); a.status != 404 || index(a) != 103 {
		t.Fatalf("deleted key: %d index %d", a.status, index(a))
	}
	if a := del("keepers/?recurse"); a.body != "true" {
		t.Fatalf("delete tree: %q", a.body)
	}
	if a := get(t, u+"?keys"); a.body != `["stolon/cluster/main/clusterdata","stolon/cluster/main/proxies/info/5a6b1224","stolon/cluster/main/sentinel-leader","stolon/cluster/main/sentinels/info/f6db1c81"]` {
		t.Fatalf("after delete tree: %q", a.body)
	}
	if a := get(t, u+"keepers/?recurse"); a.status != 404 || index(a) != 106 {
		t.Fatalf("deleted tree: %d index %d", a.status, index(a))
	}
	if a := del("x?recurse&cas=1"); a.status != 400 || a.body != "Conflicting flags: cas=1&recurse=\n" {
		t.Fatalf("recurse and cas: %d %q", a.status, a.body)
	}
	if a := send(t, http.MethodDelete, f.URL+"/v1/kv/", nil); a.status != 400 || a.body != "Missing key name" {
		t.Fatalf("no key: %d %q", a.status, a.body)
	}
	if a := send(t, http.MethodDelete, f.URL+"/v1/kv/?recurse", nil); a.body != "true" {
		t.Fatalf("delete all: %q", a.body)
	}
	if a := get(t, f.URL+"/v1/kv/?recurse"); a.status != 404 || index(a) != 107 {
		t.Fatalf("all deleted: %d index %d", a.status, index(a))
	}
}

func TestKVACL(t *testing.T) {
	f := stolon(t, "normal")
	f.SetToken("s3cret")
	u := f.URL + "/v1/kv/" + clusterdata

	// The anonymous token of a deny policy: a key is refused (KVS.Get checks
	// key:read), a listing filtered to nothing (404, index kept, the header
	// masked), a write refused.
	a := get(t, u)
	if a.status != 403 || a.body != `Permission denied: anonymous token lacks permission 'key:read' on "stolon/cluster/main/clusterdata". The anonymous token is used implicitly when a request does not specify a token.` ||
		a.header.Get("X-Consul-Default-Acl-Policy") != "deny" || a.header.Get("X-Consul-Index") != "" {
		t.Fatalf("anonymous read: %d %q %v", a.status, a.body, a.header)
	}
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse")
	if a.status != 404 || index(a) != 101 || a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "" {
		t.Fatalf("anonymous list: %d %v", a.status, a.header)
	}
	if a := put(t, u, "x"); a.status != 403 || a.body != `Permission denied: anonymous token lacks permission 'key:write' on "stolon/cluster/main/clusterdata". The anonymous token is used implicitly when a request does not specify a token.` {
		t.Fatalf("anonymous write: %d %q", a.status, a.body)
	}
	if a := put(t, u, "x", "X-Consul-Token", "wrong"); a.status != 403 || a.body != "ACL not found" {
		t.Fatalf("unknown token: %d %q", a.status, a.body)
	}
	if a := get(t, u, "X-Consul-Token", "wrong"); a.status != 403 || a.body != "ACL not found" {
		t.Fatalf("unknown token read: %d %q", a.status, a.body)
	}
	if a := put(t, u+"?token=s3cret", "x"); a.status != 200 || a.body != "true" {
		t.Fatalf("management token: %d %q", a.status, a.body)
	}

	// A keeper's token: read everything of Stolon, write its own info key.
	f.SetKVPrefixes("keeper0", false, "stolon/")
	f.SetKVPrefixes("keeper0", true, stolonPrefix+"keepers/info/keeper0")
	auth := []string{"X-Consul-Token", "keeper0"}
	if a := get(t, u, auth...); a.status != 200 {
		t.Fatalf("keeper0 read: %d %q", a.status, a.body)
	}
	if a := put(t, f.URL+"/v1/kv/"+stolonPrefix+"keepers/info/keeper0", "{}", auth...); a.status != 200 || a.body != "true" {
		t.Fatalf("keeper0 write: %d %q", a.status, a.body)
	}
	want := "Permission denied: token with AccessorID '" + AccessorID("keeper0") + `' lacks permission 'key:write' on "stolon/cluster/main/clusterdata"`
	if a := put(t, u, "x", auth...); a.status != 403 || a.body != want {
		t.Fatalf("keeper0 writes clusterdata: %d %q", a.status, a.body)
	}
	if a := send(t, http.MethodDelete, u, nil, auth...); a.status != 403 || a.body != want {
		t.Fatalf("keeper0 deletes clusterdata: %d %q", a.status, a.body)
	}
	// A delete of a tree needs write on all of it.
	f.SetKVPrefixes("sentinel", true, stolonPrefix)
	f.SetKVPrefixes("sentinel", false, stolonPrefix+"keepers/")
	if a := send(t, http.MethodDelete, f.URL+"/v1/kv/"+stolonPrefix+"?recurse", nil, "X-Consul-Token", "sentinel"); a.status != 403 {
		t.Fatalf("sentinel deletes the tree: %d %q", a.status, a.body)
	}
	if a := put(t, f.URL+"/v1/kv/"+stolonPrefix+"keepers/info/keeper0", "{}", "X-Consul-Token", "sentinel"); a.status != 403 {
		t.Fatalf("the longest prefix does not decide: %d %q", a.status, a.body)
	}
	// A token that reads part of a listing is told it was filtered.
	f.SetKVPrefixes("proxy", false, stolonPrefix+"clusterdata", stolonPrefix+"proxies/")
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"?recurse", "X-Consul-Token", "proxy")
	if es := entries(t, a.body); len(es) != 2 || index(a) != 103 || a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("proxy list: %d entries, %v", len(es), a.header)
	}
	a = get(t, f.URL+"/v1/kv/"+stolonPrefix+"?keys", "X-Consul-Token", "proxy")
	if a.body != `["stolon/cluster/main/clusterdata","stolon/cluster/main/proxies/info/5a6b1224"]` || a.header.Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("proxy keys: %q %v", a.body, a.header)
	}
	// The other endpoints know a KV token.
	if a := get(t, f.URL+"/v1/health/state/any", "X-Consul-Token", "proxy"); a.status != 200 {
		t.Fatalf("health with a KV token: %d %q", a.status, a.body)
	}
}

func TestKVValueLimit(t *testing.T) {
	f := New()
	defer f.Close()
	big := strings.Repeat("x", KVMaxValueSize+1)
	a := put(t, f.URL+"/v1/kv/big", big)
	if a.status != 413 || a.body != "Request body(524289 bytes) too large, max size: 524288 bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size." {
		t.Fatalf("too large: %d %q", a.status, a.body)
	}
	if _, _, _, ok := f.KV("big"); ok {
		t.Fatal("a value too large was written")
	}
	if a := put(t, f.URL+"/v1/kv/big", big[1:]); a.status != 200 || a.body != "true" {
		t.Fatalf("at the limit: %d %q", a.status, a.body)
	}
	// Without a Content-Length (chunked), Consul reads one byte more than the limit.
	chunked := func(n int) answer {
		return send(t, http.MethodPut, f.URL+"/v1/kv/chunked", struct{ io.Reader }{strings.NewReader(strings.Repeat("y", n))})
	}
	if a := chunked(KVMaxValueSize + 2); a.status != 413 || a.body != "Request body too large. Max allowed is 524288 bytes." {
		t.Fatalf("chunked too large: %d %q", a.status, a.body)
	}
	if a := chunked(KVMaxValueSize + 1); a.status != 200 {
		t.Fatalf("chunked, limit+1: %d %q", a.status, a.body)
	}
}

func TestKVParametersAsConsul(t *testing.T) {
	f := stolon(t, "normal")
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/v1/kv/", 400, "Missing key name"},
		{"PUT", "/v1/kv/", 400, "Missing key name"},
		{"GET", "/v1/kv/x?wait=soon", 400, "Invalid wait time"},
		{"PUT", "/v1/kv/x?index=-1", 400, "Invalid index"},
		{"GET", "/v1/kv/x?stale&consistent", 400, "Cannot specify ?stale with ?consistent, conflicting semantics."},
		{"GET", "/v1/kv/x?dc=dc2", 500, "No path to datacenter"},
		{"GET", "/v1/kv/%20x", 500, "invalid key name, leading/trailing spaces are not allowed"},
		{"GET", "/v1/kv/a/%252e%252e/b", 500, "invalid key name, path traversal is not allowed"},
		{"PUT", "/v1/kv/x?flags=abc", 500, `strconv.ParseUint: parsing "abc": invalid syntax`},
		{"PUT", "/v1/kv/x?cas=-1", 500, `strconv.ParseUint: parsing "-1": invalid syntax`},
		{"PUT", "/v1/kv/x?cas=1&acquire=a", 400, "Conflicting flags: acquire=a&cas=1\n"},
		{"PUT", "/v1/kv/x?acquire=8c5bd4ee-0000-0000-0000-000000000000", 500, `raft apply failed: invalid session "8c5bd4ee-0000-0000-0000-000000000000"`},
		{"PUT", "/v1/kv/x?acquire=", 500, "raft apply failed: missing session"},
		{"PUT", "/v1/kv/x?release=8c5bd4ee-0000-0000-0000-000000000000", 200, "false"},
		{"POST", "/v1/kv/x", 405, "method POST not allowed"},
		{"OPTIONS", "/v1/kv/x", 200, ""},
	} {
		a := send(t, tc.method, f.URL+tc.path, nil)
		if a.status != tc.status || a.body != tc.body || a.header.Get("X-Consul-Default-Acl-Policy") != "allow" {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, a.status, a.body, tc.status, tc.body)
		}
		if (tc.method == "POST" || tc.method == "OPTIONS") && a.header.Get("Allow") != "OPTIONS,GET,PUT,DELETE" {
			t.Errorf("%s: Allow %q", tc.method, a.header.Get("Allow"))
		}
	}
	if _, _, _, ok := f.KV("x"); ok {
		t.Fatal("a refused request wrote")
	}
	// Keys are cleaned as Consul cleans them.
	put(t, f.URL+"/v1/kv/a/./b/", "v")
	if _, _, _, ok := f.KV("a/b/"); !ok {
		t.Fatal("a/./b/ not stored as a/b/")
	}

	// Injected failures: before the ACL check, nothing written.
	f.FailNextKV(2, 500)
	if a := put(t, f.URL+"/v1/kv/"+clusterdata, "x"); a.status != 500 || a.body != "No cluster leader" {
		t.Fatalf("failed write: %d %q", a.status, a.body)
	}
	if a := get(t, f.URL+"/v1/kv/"+clusterdata); a.status != 500 || a.body != "No cluster leader" || a.header.Get("X-Consul-Index") != "" {
		t.Fatalf("failed read: %d %q", a.status, a.body)
	}
	if v, _, _, _ := f.KV(clusterdata); string(v) == "x" {
		t.Fatal("a failed write wrote")
	}
	if a := get(t, f.URL+"/v1/health/state/any"); a.status != 200 {
		t.Fatalf("health consumed a KV failure: %d", a.status)
	}
	f.FailNext(1, 500)
	if a := get(t, f.URL+"/v1/kv/"+clusterdata); a.status != 200 {
		t.Fatalf("KV consumed a health failure: %d", a.status)
	}
	rs := f.Requests()
	if last := rs[len(rs)-1]; last.Method != "GET" || last.Path != "/v1/kv/"+clusterdata {
		t.Fatalf("KV request not recorded: %+v", last)
	}
}

// TestKVWithConsulAPI drives the fake with the real client, as Vigie and
// Stolon do.
func TestKVWithConsulAPI(t *testing.T) {
	f := stolon(t, "normal")
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(f.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	kv := c.KV()

	pair, meta, err := kv.Get(clusterdata, &api.QueryOptions{RequireConsistent: true})
	if err != nil || pair == nil || pair.Flags != api.LockFlagValue || pair.ModifyIndex != 101 || meta.LastIndex != 101 || !meta.KnownLeader {
		t.Fatalf("Get: %v %+v %+v", err, pair, meta)
	}
	if rs := f.Requests(); rs[len(rs)-1].RawQuery != "consistent=" {
		t.Fatalf("RequireConsistent sent %q", rs[len(rs)-1].RawQuery)
	}
	pairs, meta, err := kv.List(stolonPrefix, nil)
	if err != nil || len(pairs) != 6 || meta.LastIndex != 101 || pairs[4].Key != stolonPrefix+"sentinel-leader" || pairs[4].LockIndex != 1 || pairs[4].Session == "" {
		t.Fatalf("List: %v %d %+v", err, len(pairs), meta)
	}
	keys, _, err := kv.Keys(stolonPrefix, "/", nil)
	if err != nil || len(keys) != 5 {
		t.Fatalf("Keys: %v %v", err, keys)
	}
	missing, meta, err := kv.Get(stolonPrefix+"nope", nil)
	if err != nil || missing != nil || meta.LastIndex != 101 {
		t.Fatalf("Get of a missing key: %v %+v %+v", err, missing, meta)
	}

	// CAS as Stolon's sentinel writes clusterdata: with its flags.
	stale := *pair
	pair.Value = []byte(`{"formatVersion":1}`)
	ok, _, err := kv.CAS(pair, nil)
	if err != nil || !ok {
		t.Fatalf("CAS: %v %v", err, ok)
	}
	if ok, _, err := kv.CAS(&stale, nil); err != nil || ok {
		t.Fatalf("CAS with a stale index: %v %v", err, ok)
	}
	got, _, err := kv.Get(clusterdata, nil)
	if err != nil || string(got.Value) != `{"formatVersion":1}` || got.Flags != api.LockFlagValue || got.ModifyIndex != 102 || got.CreateIndex != 19 {
		t.Fatalf("after CAS: %v %+v", err, got)
	}

	// A blocking Get returns when the key changes.
	type result struct {
		pair *api.KVPair
		meta *api.QueryMeta
		err  error
	}
	done := make(chan result, 1)
	go func() {
		p, m, err := kv.Get(clusterdata, &api.QueryOptions{WaitIndex: got.ModifyIndex, WaitTime: 10 * time.Second})
		done <- result{p, m, err}
	}()
	for len(f.Requests()) == 0 || f.Requests()[len(f.Requests())-1].Index() != got.ModifyIndex {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("blocking Get returned before the change: %+v", r.meta)
	case <-time.After(200 * time.Millisecond):
	}
	cd := base64.StdEncoding.EncodeToString([]byte("changed")) // any value will do
	f.SetKV(clusterdata, []byte(cd), api.LockFlagValue)
	r := <-done
	if r.err != nil || r.meta.LastIndex != 104 || string(r.pair.Value) != cd {
		t.Fatalf("blocking Get: %v %+v %+v", r.err, r.pair, r.meta)
	}
	if rs := f.Requests(); rs[len(rs)-1].RawQuery != "index=102&wait=10000ms" {
		t.Fatalf("blocking Get sent %q", rs[len(rs)-1].RawQuery)
	}

	if _, err := kv.Delete(clusterdata, nil); err != nil {
		t.Fatal(err)
	}
	if p, _, err := kv.Get(clusterdata, nil); err != nil || p != nil {
		t.Fatalf("after Delete: %v %+v", err, p)
	}
	if _, err := kv.Put(&api.KVPair{Key: "vigie/x", Value: []byte("1"), Flags: 9}, nil); err != nil {
		t.Fatal(err)
	}
	if v, flags, _, ok := f.KV("vigie/x"); !ok || string(v) != "1" || flags != 9 {
		t.Fatalf("Put: %q %d %v", v, flags, ok)
	}
}
