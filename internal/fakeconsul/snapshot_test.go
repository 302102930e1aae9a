package fakeconsul

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/vigie/vigie/internal/snaparchive"
)

// do sends a request and reads the whole answer.
func do(t *testing.T, method, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// verifyArchive checks a snapshot archive as `tar xzf && sha256sum -c
// SHA256SUMS` would.
func verifyArchive(t *testing.T, archive []byte) snaparchive.Summary {
	t.Helper()
	sum, err := snaparchive.Check(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// capturedHeaders reads a .headers file: the status line, then the headers.
func capturedHeaders(t *testing.T, file string) http.Header {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("%s: header line %q", file, line)
		}
		h.Add(k, v)
	}
	return h
}

func TestSnapshotServesCapture(t *testing.T) {
	capture, err := os.ReadFile("testdata/consul-snapshot.snap")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Snapshot(), capture) {
		t.Fatal("Snapshot() differs from testdata/consul-snapshot.snap")
	}
	want := capturedHeaders(t, "testdata/consul-snapshot.headers")
	s := New()
	defer s.Close()
	for _, query := range []string{"?stale", "", "?stale=true", "?dc=dc1&stale"} {
		resp, body := do(t, http.MethodGet, s.URL+"/v1/snapshot"+query)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, capture) {
			t.Fatalf("%s: %s, body of %d bytes differs from the capture", query, resp.Status, len(body))
		}
		if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
			t.Errorf("%s: Transfer-Encoding %v, want chunked as captured", query, resp.TransferEncoding)
		}
		for k := range want {
			if k == "Date" || k == "Transfer-Encoding" {
				continue
			}
			if got := resp.Header.Get(k); got != want.Get(k) {
				t.Errorf("%s: %s: %q, captured %q", query, k, got, want.Get(k))
			}
		}
	}
	sum := verifyArchive(t, capture)
	if sum.Index != SnapshotIndex || want.Get("X-Consul-Index") != "31" || sum.Size != sum.StateBytes || len(sum.Members) != 2 {
		t.Errorf("archive %+v, X-Consul-Index %s", sum, want.Get("X-Consul-Index"))
	}

	// Consul's client reads the index from the headers.
	c, err := api.NewClient(&api.Config{Address: s.URL, Token: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	rc, qm, err := c.Snapshot().Save(&api.QueryOptions{AllowStale: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || !bytes.Equal(b, capture) || qm.LastIndex != SnapshotIndex || !qm.KnownLeader {
		t.Errorf("api: %v, %d bytes, %+v", err, len(b), qm)
	}
	if got := len(s.Requests()); got != 5 {
		t.Errorf("%d requests recorded, want 5", got)
	}
	if r := s.Requests()[0]; r.String() != "/v1/snapshot?stale" || r.Method != http.MethodGet {
		t.Errorf("first request recorded as %s %s", r.Method, r)
	}
}

func TestSnapshotACL(t *testing.T) {
	s := New()
	defer s.Close()
	s.SetToken("root")
	s.SetScopedToken("web-reader", "web")
	for _, c := range []struct {
		name   string
		header []string
		status int
		body   string
	}{
		{"management token", []string{"X-Consul-Token", "root"}, 200, ""},
		{"bearer", []string{"Authorization", "Bearer root"}, 200, ""},
		{"anonymous", nil, 403, "Permission denied: anonymous token lacks permission 'acl:write'. The anonymous token is used implicitly when a request does not specify a token."},
		{"scoped token", []string{"X-Consul-Token", "web-reader"}, 403, "Permission denied: token with AccessorID '" + AccessorID("web-reader") + "' lacks permission 'acl:write'"},
		{"unknown token", []string{"X-Consul-Token", "nope"}, 403, "ACL not found"},
	} {
		resp, body := do(t, http.MethodGet, s.URL+"/v1/snapshot?stale", c.header...)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %s %q, want %d", c.name, resp.Status, body, c.status)
			continue
		}
		if c.status == 200 {
			if !bytes.Equal(body, Snapshot()) {
				t.Errorf("%s: body differs from the capture", c.name)
			}
		} else if string(body) != c.body || resp.Header.Get("X-Consul-Index") != "" {
			t.Errorf("%s: body %q, X-Consul-Index %q; want %q and none", c.name, body, resp.Header.Get("X-Consul-Index"), c.body)
		}
		if got := resp.Header.Get("X-Consul-Default-Acl-Policy"); got != "deny" {
			t.Errorf("%s: X-Consul-Default-Acl-Policy %q", c.name, got)
		}
	}
	if id := AccessorID("web-reader"); len(id) != 36 || id == AccessorID("root") {
		t.Errorf("AccessorID %q", id)
	}
	// Without ACLs any token may save, as in Consul with ACLs disabled.
	s.SetToken("")
	if resp, _ := do(t, http.MethodGet, s.URL+"/v1/snapshot", "X-Consul-Token", "whatever"); resp.StatusCode != 200 {
		t.Errorf("ACLs off: %s", resp.Status)
	}
}

func TestSnapshotErrors(t *testing.T) {
	s := New()
	defer s.Close()
	for _, c := range []struct {
		method, query string
		status        int
		body, allow   string
	}{
		{http.MethodGet, "?dc=dc2", 500, "No path to datacenter", ""},
		{http.MethodPut, "", 501, "fakeconsul: snapshot restore (PUT /v1/snapshot) is not implemented", ""},
		{http.MethodPost, "", 405, "method POST not allowed", "OPTIONS,GET,PUT"},
		{http.MethodDelete, "", 405, "method DELETE not allowed", "OPTIONS,GET,PUT"},
		{http.MethodOptions, "", 200, "", "OPTIONS,GET,PUT"},
	} {
		resp, body := do(t, c.method, s.URL+"/v1/snapshot"+c.query)
		if resp.StatusCode != c.status || string(body) != c.body || resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: %s %q Allow %q; want %d %q Allow %q", c.method, c.query, resp.Status, body, resp.Header.Get("Allow"), c.status, c.body, c.allow)
		}
	}

	s.FailNextSnapshot(2, http.StatusInternalServerError)
	s.FailNext(1, http.StatusTooManyRequests)
	for i, want := range []int{500, 500, 200} {
		resp, body := do(t, http.MethodGet, s.URL+"/v1/snapshot?stale")
		if resp.StatusCode != want || want == 500 && string(body) != "No cluster leader" {
			t.Errorf("snapshot %d: %s %q, want %d", i, resp.Status, body, want)
		}
	}
	// The health failure was left for the health queries.
	if a := get(t, s.URL+"/v1/health/state/any"); a.status != http.StatusTooManyRequests {
		t.Errorf("health query: %d, want the 429 queued by FailNext", a.status)
	}
}

func TestSetSnapshot(t *testing.T) {
	s := New()
	defer s.Close()

	corrupt := Snapshot()[:1000]
	s.SetSnapshot(corrupt)
	resp, body := do(t, http.MethodGet, s.URL+"/v1/snapshot")
	if resp.StatusCode != 200 || !bytes.Equal(body, corrupt) || resp.Header.Get("X-Consul-Index") != "31" {
		t.Fatalf("corrupt: %s, %d bytes, X-Consul-Index %s", resp.Status, len(body), resp.Header.Get("X-Consul-Index"))
	}

	// Another valid archive: its meta.json gives the index.
	other := BuildSnapshot(77, bytes.Repeat([]byte("state "), 100000))
	s.SetSnapshot(other)
	resp, body = do(t, http.MethodGet, s.URL+"/v1/snapshot")
	if !bytes.Equal(body, other) || resp.Header.Get("X-Consul-Index") != "77" {
		t.Fatalf("other: %d bytes, X-Consul-Index %s", len(body), resp.Header.Get("X-Consul-Index"))
	}
	verifyArchive(t, body)

	s.SetSnapshot(nil)
	if _, body = do(t, http.MethodGet, s.URL+"/v1/snapshot"); !bytes.Equal(body, Snapshot()) {
		t.Fatal("SetSnapshot(nil) does not serve the capture again")
	}
}

func TestThrottleSnapshot(t *testing.T) {
	s := New()
	defer s.Close()
	s.ThrottleSnapshot(1000, 50*time.Millisecond) // 4042 bytes: 5 writes, 4 pauses

	start := time.Now()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/v1/snapshot", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	headersAfter := time.Since(start)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, Snapshot()) {
		t.Fatalf("throttled: %v, %d bytes", err, len(body))
	}
	if took := time.Since(start); took < 200*time.Millisecond || headersAfter > took/2 {
		t.Errorf("headers after %v, body after %v: want headers at once and the body over at least 200ms", headersAfter, took)
	}

	// Stopping the agent mid-download cuts the body.
	s.ThrottleSnapshot(100, 20*time.Millisecond)
	resp, err = http.DefaultClient.Do(req.Clone(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	rest, err := io.ReadAll(resp.Body)
	if err == nil || len(first)+len(rest) >= len(Snapshot()) {
		t.Errorf("after Stop: %d bytes, %v; want a cut body", len(first)+len(rest), err)
	}
}

// buildArchive makes a snapshot archive as Consul lays it out.
