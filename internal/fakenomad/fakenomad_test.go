package fakenomad

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// openStream opens an event stream and returns its lines as they come; the
// reader stops when the test ends.
func openStream(t *testing.T, s *Server, query string, token string) <-chan string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", s.URL+"/v1/event/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Nomad-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %s %q", resp.Status, body)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// next returns the next line, "EOF" when the stream ended, "" after wait.
func next(t *testing.T, lines <-chan string, wait time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			return "EOF"
		}
		return l
	case <-time.After(wait):
		return ""
	}
}

type frameHead struct {
	Index  uint64
	Events []struct{ Topic, Key, Namespace string }
}

func head(t *testing.T, line string) frameHead {
	t.Helper()
	var f frameHead
	if err := json.Unmarshal([]byte(line), &f); err != nil {
		t.Fatalf("%v: %.100s", err, line)
	}
	return f
}

func get(t *testing.T, s *Server, path, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL+path, nil)
	if token != "" {
		req.Header.Set("X-Nomad-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestStreamReplaysTheCaptureByteForByte(t *testing.T) {
	s := New(t, Config{HeartbeatInterval: time.Hour})
	lines := openStream(t, s, "?topic=*", "")
	want := CaptureFrames()
	if len(want) != 62 {
		t.Fatalf("capture has %d frames", len(want))
	}
	for i, w := range want {
		if got := next(t, lines, 2*time.Second); got != w {
			t.Fatalf("frame %d:\n got %.120s\nwant %.120s", i, got, w)
		}
	}
	if got := next(t, lines, 50*time.Millisecond); got != "" {
		t.Fatalf("extra line %.100s", got)
	}
}

func TestStreamStartsAtClosestIndex(t *testing.T) {
	s := New(t, Config{HeartbeatInterval: time.Hour})
	for _, c := range []struct {
		query string
		want  []uint64
	}{
		{"?index=11", []uint64{11, 11, 12}},  // both frames at 11
		{"?index=31", []uint64{32, 33}},      // no frame at 31: the next one
		{"?index=1000", []uint64{65}},        // beyond the buffer: the newest frame
		{"?index=0&topic=Node", []uint64{8}}, // 0: the oldest
	} {
		lines := openStream(t, s, c.query, "")
		for _, w := range c.want {
			if got := head(t, next(t, lines, 2*time.Second)).Index; got != w {
				t.Fatalf("%s: got index %d, want %d", c.query, got, w)
			}
		}
	}
	if got := s.LastIndex(); got != 65 {
		t.Fatalf("LastIndex %d", got)
	}
}

func TestStreamFiltersTopicsKeysAndNamespaces(t *testing.T) {
	s := New(t, Config{HeartbeatInterval: time.Hour})
	count := func(query string) (frames, events int, topics map[string]int) {
		lines := openStream(t, s, query, "")
		topics = map[string]int{}
		for {
			l := next(t, lines, 200*time.Millisecond)
			if l == "" {
				return
			}
			f := head(t, l)
			frames++
			for _, e := range f.Events {
				events++
				topics[e.Topic]++
			}
		}
	}
	if _, ev, topics := count("?topic=Node:*"); ev != 19 || len(topics) != 1 {
		t.Errorf("Node:*: %d events %v", ev, topics)
	}
	// The key matches the event's key or one of its filter keys (job ID).
	if _, ev, topics := count("?topic=Allocation:crasher&topic=Job:crasher"); ev != 13 || topics["Allocation"] != 3 {
		t.Errorf("crasher: %d events %v", ev, topics)
	}
	// Node events have no namespace and pass any namespace filter.
	if _, ev, topics := count("?namespace=other"); ev != 19 || topics["Node"] != 19 {
		t.Errorf("namespace=other: %d events %v", ev, topics)
	}
	if _, ev, _ := count("?namespace=*"); ev != 112 {
		t.Errorf("namespace=*: %d events", ev)
	}
}

func TestStreamLiveControls(t *testing.T) {
	s := New(t, Config{HeartbeatInterval: 20 * time.Millisecond})
	lines := openStream(t, s, "?index=65", "")
	if f := head(t, next(t, lines, time.Second)); f.Index != 65 {
		t.Fatalf("replay: %d", f.Index)
	}
	if got := next(t, lines, time.Second); got != "{}" {
		t.Fatalf("heartbeat: %q", got)
	}
	frame := Reindex(CaptureFrames()[20], 66)
	s.Append(frame)
	s.Garbage("not json")
	for _, want := range []string{frame, "not json"} {
		for {
			got := next(t, lines, time.Second)
			if got == "{}" {
				continue
			}
			if got != want {
				t.Fatalf("got %.80q, want %.80q", got, want)
			}
			break
		}
	}
	if f := head(t, frame); f.Index != 66 || len(f.Events) != 1 || f.Events[0].Key != "web" {
		t.Fatalf("Reindex: %+v", f)
	}

	// A new stream gets buffered frames again, but not the garbage.
	again := openStream(t, s, "?index=66", "")
	if got := next(t, again, time.Second); got != frame {
		t.Fatalf("replay after append: %.80q", got)
	}
	if got := next(t, again, time.Second); got != "{}" {
		t.Fatalf("garbage replayed: %.80q", got)
	}

	s.Silence()
	for next(t, lines, 100*time.Millisecond) != "" {
		// drain what was written before Silence
	}
	if got := next(t, lines, 100*time.Millisecond); got != "" {
		t.Fatalf("silenced stream wrote %q", got)
	}
	s.Disconnect()
	for {
		if got := next(t, again, time.Second); got == "EOF" {
			break
		} else if got == "" {
			t.Fatal("Disconnect did not end the stream")
		}
	}
}

func TestACL(t *testing.T) {
	open := New(t, Config{})
	if resp, body := get(t, open, "/v1/acl/token/self", ""); resp.StatusCode != 400 || body != "ACL support disabled" {
		t.Errorf("ACLs off: %d %q", resp.StatusCode, body)
	}
	s := New(t, Config{Token: "s3cr3t", DenyTopics: []string{"Node"}})
	for _, c := range []struct {
		path, token string
		code        int
		body        string
	}{
		{"/v1/acl/token/self", "", 403, "Permission denied"},
		{"/v1/acl/token/self", "wrong", 403, "ACL token not found"},
		{"/v1/jobs", "", 403, "Permission denied"},
		{"/v1/event/stream?topic=Node", "s3cr3t", 403, "Permission denied"},
		{"/v1/event/stream?topic=Job:web&topic=Node:*", "s3cr3t", 403, "Permission denied"},
		{"/v1/event/stream", "s3cr3t", 403, "Permission denied"},
		{"/v1/allocation/" + CrasherAllocID, "wrong", 403, "ACL token not found"},
	} {
		if resp, body := get(t, s, c.path, c.token); resp.StatusCode != c.code || body != c.body {
			t.Errorf("%s (token %q): %d %q", c.path, c.token, resp.StatusCode, body)
		}
	}
	resp, body := get(t, s, "/v1/acl/token/self", "s3cr3t")
	var tok struct{ SecretID, Type string }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &tok) != nil || tok.SecretID != "s3cr3t" {
		t.Errorf("token/self: %d %q", resp.StatusCode, body)
	}
	openStream(t, s, "?topic=Job:*", "s3cr3t")
}

func TestListIndexes(t *testing.T) {
	s := New(t, Config{})
	// As captured, except allocations (64): see tableIndex.
	for path, want := range map[string]string{
		"/v1/jobs": "61", "/v1/allocations": "62", "/v1/evaluations": "65",
		"/v1/deployments": "64", "/v1/nodes": "62",
	} {
		resp, body := get(t, s, path+"?per_page=1", "")
		if resp.StatusCode != 200 || resp.Header.Get("X-Nomad-Index") != want || !strings.HasPrefix(body, "[{") {
			t.Errorf("%s: %d index %q", path, resp.StatusCode, resp.Header.Get("X-Nomad-Index"))
		}
	}
	s.Append(Reindex(CaptureFrames()[3], 70)) // the Job frame at 11
	if resp, _ := get(t, s, "/v1/jobs", ""); resp.Header.Get("X-Nomad-Index") != "70" {
		t.Errorf("jobs after append: %q", resp.Header.Get("X-Nomad-Index"))
	}
	if resp, body := get(t, s, "/v1/status/leader", ""); body != `"127.0.0.1:4647"` || resp.Header.Get("X-Nomad-Index") != "" {
		t.Errorf("leader: %q %v", body, resp.Header)
	}
	resp, body := get(t, s, "/v1/allocation/"+CrasherAllocID, "")
	if resp.StatusCode != 200 || resp.Header.Get("X-Nomad-Index") != "23" || !strings.Contains(body, `"ClientStatus":"failed"`) {
		t.Errorf("allocation: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := get(t, s, "/v1/allocation/nope", ""); resp.StatusCode != 404 || body != "alloc not found" {
		t.Errorf("unknown allocation: %d %q", resp.StatusCode, body)
	}
}

func TestLogs(t *testing.T) {
	s := New(t, Config{})
	stderr, _ := CaptureLog(CrasherAllocID, "boom", "stderr")
	if stderr != "crashing on purpose\ncrashing on purpose\n" {
		t.Fatalf("captured stderr %q", stderr)
	}
	base := "/v1/client/fs/logs/" + CrasherAllocID + "?task=boom&plain=true"
	for _, c := range []struct {
		query string
		code  int
		body  string
	}{
		{"&type=stderr", 200, stderr},
		{"&type=stderr&origin=end&offset=11", 200, "on purpose\n"},
		{"&type=stderr&origin=end&offset=2049", 200, stderr},
		{"&type=stderr&origin=start&offset=9", 200, stderr[9:]},
		{"&type=stdout", 200, ""},
	} {
		resp, body := get(t, s, base+c.query, "")
		if resp.StatusCode != c.code || body != c.body || resp.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("%s: %d %q", c.query, resp.StatusCode, body)
		}
	}
	if resp, body := get(t, s, "/v1/client/fs/logs/nope?task=boom&type=stderr", ""); resp.StatusCode != 404 || body != `Unknown allocation "nope"` {
		t.Errorf("unknown alloc: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, s, "/v1/client/fs/logs/"+CrasherAllocID+"?task=other&type=stderr", ""); resp.StatusCode != 400 {
		t.Errorf("unknown task: %d", resp.StatusCode)
	}
}

func TestFailNextAndRequests(t *testing.T) {
	s := New(t, Config{})
	s.FailNext(2, 500)
	for range 2 {
		if resp, body := get(t, s, "/v1/jobs", ""); resp.StatusCode != 500 || body != "No cluster leader" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if resp, _ := get(t, s, "/v1/jobs?per_page=1", ""); resp.StatusCode != 200 {
		t.Fatalf("after failures: %d", resp.StatusCode)
	}
	s.FailNext(1, 503)
	if resp, body := get(t, s, "/v1/jobs", ""); resp.StatusCode != 503 || body != "Service Unavailable" {
		t.Fatalf("503: %d %q", resp.StatusCode, body)
	}
	reqs := s.Requests()
	if len(reqs) != 4 || reqs[2] != "/v1/jobs?per_page=1" {
		t.Fatalf("requests %q", reqs)
	}
}

func TestClose(t *testing.T) {
	s := New(t, Config{})
	lines := openStream(t, s, "", "")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close blocked on an open stream")
	}
	for range lines {
	}
}
