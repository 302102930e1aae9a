package fakenomad

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/vigie/vigie/internal/snaparchive"
)

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

func TestSnapshotServesCapture(t *testing.T) {
	capture, err := os.ReadFile("testdata/nomad-snapshot.snap")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Snapshot(), capture) {
		t.Fatal("Snapshot() differs from testdata/nomad-snapshot.snap")
	}
	headers, err := os.ReadFile("testdata/nomad-snapshot.headers")
	if err != nil {
		t.Fatal(err)
	}
	const captured = "Digest: sha-256=t2z3gp85NHMIjCrBR7PQGG9R7C4YF0SvC1BvWe/uhOU=\r\n"
	if !strings.Contains(string(headers), captured) || "Digest: "+Digest(capture)+"\r\n" != captured {
		t.Fatalf("Digest(capture) = %s, captured headers:\n%s", Digest(capture), headers)
	}

	s := New(t, Config{})
	resp, body := get(t, s, "/v1/operator/snapshot", "")
	if resp.StatusCode != http.StatusOK || body != string(capture) {
		t.Fatalf("%s, body of %d bytes differs from the capture", resp.Status, len(body))
	}
	for k, want := range map[string]string{
		"Digest":       "sha-256=t2z3gp85NHMIjCrBR7PQGG9R7C4YF0SvC1BvWe/uhOU=",
		"Content-Type": "application/x-gzip",
		"Vary":         "Accept-Encoding",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, captured %q", k, got, want)
		}
	}
	if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Errorf("Transfer-Encoding %v, want chunked as captured", resp.TransferEncoding)
	}
	sum := verifyArchive(t, capture)
	if sum.Index != 12 || sum.Size != sum.StateBytes || len(sum.Members) != 2 {
		t.Errorf("archive %+v", sum)
	}

	// Nomad's client checks the Digest as it reads.
	rc, err := client(t, s).Operator().Snapshot(&api.QueryOptions{AllowStale: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || !bytes.Equal(b, capture) {
		t.Fatalf("api: %v, %d bytes", err, len(b))
	}
	if got := s.Requests(); !slices.Equal(got, []string{"/v1/operator/snapshot", "/v1/operator/snapshot?stale="}) {
		t.Errorf("requests %q", got)
	}
}

func TestSnapshotACL(t *testing.T) {
	s := New(t, Config{Token: "secret"})
	if resp, body := get(t, s, "/v1/operator/snapshot", "secret"); resp.StatusCode != 200 || body != string(Snapshot()) {
		t.Errorf("management token: %s, %d bytes", resp.Status, len(body))
	}
	for token, want := range map[string]string{"": "Permission denied", "nope": "ACL token not found"} {
		resp, body := get(t, s, "/v1/operator/snapshot", token)
		if resp.StatusCode != http.StatusForbidden || body != want || resp.Header.Get("Digest") != "" {
			t.Errorf("token %q: %s %q Digest %q; want 403 %q", token, resp.Status, body, resp.Header.Get("Digest"), want)
		}
	}

	// A token that is not a management token: refused here only.
	s = New(t, Config{Token: "secret", SnapshotDenied: true})
	if resp, body := get(t, s, "/v1/operator/snapshot", "secret"); resp.StatusCode != http.StatusForbidden || body != "Permission denied" {
		t.Errorf("SnapshotDenied: %s %q", resp.Status, body)
	}
	if resp, _ := get(t, s, "/v1/status/leader", "secret"); resp.StatusCode != 200 {
		t.Errorf("SnapshotDenied: /v1/status/leader %s", resp.Status)
	}
	_, err := client(t, s).Operator().Snapshot(&api.QueryOptions{AuthToken: "secret"})
	if statusCode(err) != 403 || errorBody(err) != "Permission denied" {
		t.Errorf("api: %v", err)
	}

	// Without ACLs every request may save, whatever SnapshotDenied says.
	s = New(t, Config{SnapshotDenied: true})
	if resp, _ := get(t, s, "/v1/operator/snapshot", ""); resp.StatusCode != 200 {
		t.Errorf("ACLs off: %s", resp.Status)
	}
}

func TestSnapshotDevAgent(t *testing.T) {
	dev, err := os.ReadFile("testdata/nomad-snapshot-dev-agent.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(dev), "HTTP/1.1 500 ") || !strings.HasSuffix(string(dev), "\n\n"+DevAgentSnapshotError()) ||
		DevAgentSnapshotError() != "failed to open snapshot: open is not supported:" {
		t.Fatalf("DevAgentSnapshotError() = %q, capture:\n%s", DevAgentSnapshotError(), dev)
	}
	s := New(t, Config{DevAgent: true})
	resp, body := get(t, s, "/v1/operator/snapshot", "")
	if resp.StatusCode != http.StatusInternalServerError || body != DevAgentSnapshotError() ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Content-Length") != "47" {
		t.Errorf("dev agent: %s %q %v", resp.Status, body, resp.Header)
	}
	_, err = client(t, s).Operator().Snapshot(nil)
	if statusCode(err) != 500 || errorBody(err) != DevAgentSnapshotError() {
		t.Errorf("api: %v", err)
	}
}

func TestSetSnapshot(t *testing.T) {
	s := New(t, Config{})
	corrupt := Snapshot()[:1000]
	s.SetSnapshot(corrupt)
	resp, body := get(t, s, "/v1/operator/snapshot", "")
	if resp.StatusCode != 200 || body != string(corrupt) || resp.Header.Get("Digest") != Digest(corrupt) {
		t.Fatalf("corrupt: %s, %d bytes, Digest %s", resp.Status, len(body), resp.Header.Get("Digest"))
	}
	s.SetSnapshot(nil)
	if resp, body = get(t, s, "/v1/operator/snapshot", ""); body != string(Snapshot()) || resp.Header.Get("Digest") != Digest(Snapshot()) {
		t.Fatal("SetSnapshot(nil) does not serve the capture again")
	}

	s.FailNext(1, http.StatusInternalServerError)
	if resp, body = get(t, s, "/v1/operator/snapshot", ""); resp.StatusCode != 500 || body != "No cluster leader" {
		t.Errorf("FailNext: %s %q", resp.Status, body)
	}
	if resp, _ = put(t, s, "/v1/operator/snapshot", "x"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT (restore): %s, want the fake's 405", resp.Status)
	}
}

func TestThrottleSnapshot(t *testing.T) {
	s := New(t, Config{})
	big := bytes.Repeat(Snapshot(), 50) // not an archive: any bytes are served
	s.SetSnapshot(big)
	s.ThrottleSnapshot(len(big)/5, 50*time.Millisecond) // 5 writes, 4 pauses

	start := time.Now()
	rc, err := client(t, s).Operator().Snapshot(nil)
	if err != nil {
		t.Fatal(err)
	}
	headersAfter := time.Since(start)
	b, err := io.ReadAll(rc) // checks the Digest at the end
	rc.Close()
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("throttled: %v, %d bytes", err, len(b))
	}
	if took := time.Since(start); took < 200*time.Millisecond || headersAfter > took/2 {
		t.Errorf("headers after %v, body after %v: want headers at once and the body over at least 200ms", headersAfter, took)
	}

	// Stopping the agent mid-download cuts the body.
	s.ThrottleSnapshot(100, 20*time.Millisecond)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/v1/operator/snapshot", nil)
	resp, err := http.DefaultClient.Do(req)
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
	if err == nil || len(first)+len(rest) >= len(big) {
		t.Errorf("after Stop: %d bytes, %v; want a cut body", len(first)+len(rest), err)
	}
}
