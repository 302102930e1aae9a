// Package fakenomad is an HTTP fake of the Nomad API for tests, serving real
// responses captured from Nomad v1.11.3 (see testdata/README.md): the event
// stream with its replay buffer, heartbeats and filters, the list endpoints
// with their X-Nomad-Index, single allocations, task logs and ACL checks.
// Tests drive it live: append frames, inject garbage, silence or drop
// streams, fail requests.
//
// It follows the real server's semantics where a client can observe them;
// each deviation is noted where it is implemented.
package fakenomad

import (
	"bufio"
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/restartable"
)

//go:embed testdata/*
var testdata embed.FS

// IDs of the captured allocations whose task logs the fake serves.
const (
	CrasherAllocID = "aeb926df-c1d5-fba7-ac31-97f32a5f73f5" // failed, task "boom" wrote to stderr
	BackupAllocID  = "adccfa08-da66-6043-8759-c9d851fef242" // complete, task "backup" wrote to stdout
	WebAllocID     = "4e41c0d4-8722-608b-bdb1-6a3e4cfd23ec" // running
)

// Config sets up a fake.
type Config struct {
	// Token enables ACLs: every request must then carry it in X-Nomad-Token
	// (or Authorization: Bearer). Empty: ACLs disabled, as on a dev agent.
	Token string
	// HeartbeatInterval between "{}" lines on event streams. Default 30s,
	// Nomad's fixed interval.
	HeartbeatInterval time.Duration
	// Frames is the initial event buffer, one NDJSON frame per entry. Nil:
	// the captured stream (CaptureFrames).
	Frames []string
	// DenyTopics are topics the token may not read (e.g. "Node" for a token
	// without node:read): a stream asking for one of them, or for all
	// topics, gets 403.
	DenyTopics []string
	// SnapshotDenied makes the token a non-management one for
	// GET /v1/operator/snapshot (snapshot.go): 403 "Permission denied"
	// while every other endpoint accepts it. Needs Token.
	SnapshotDenied bool
	// DevAgent makes GET /v1/operator/snapshot answer as a dev agent
	// does (snapshot.go): 500 "failed to open snapshot: …".
	DevAgent bool
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	URL string

	cfg  Config
	http *restartable.Server
	done chan struct{}

	mu       sync.Mutex
	items    []item // the event buffer and injected garbage, in order
	streams  map[*stream]struct{}
	failN    int
	failCode int
	requests []string
	closed   bool

	jobs jobsState // jobs.go: jobs, deployments, allocations, nodes

	snap snapshotState // snapshot.go: GET /v1/operator/snapshot
}

// item is a buffered frame or a raw line injected by Garbage.
type item struct {
	frame *frame
	raw   []byte
}

type frame struct {
	Index  uint64
	Events []event
	line   []byte // the frame as received, replayed byte for byte when nothing is filtered out
}

type event struct {
	Topic      string
	Key        string
	Namespace  string
	FilterKeys []string
	raw        json.RawMessage
	malformed  bool
}

// stream is one open GET /v1/event/stream.
type stream struct {
	wake     chan struct{}
	since    int // items before this position were injected before the stream opened
	silenced bool
	dropped  bool
}

// New starts a fake and stops it when the test ends.
func New(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 30 * time.Second
	}
	frames := cfg.Frames
	if frames == nil {
		frames = CaptureFrames()
	}
	s := &Server{cfg: cfg, done: make(chan struct{}), streams: map[*stream]struct{}{}}
	for _, f := range frames {
		fr, err := parseFrame([]byte(f))
		if err != nil {
			t.Fatalf("fakenomad: initial frame: %v", err)
		}
		s.items = append(s.items, item{frame: fr})
	}
	var err error
	if s.http, err = restartable.Start(http.HandlerFunc(s.serve)); err != nil {
		t.Fatalf("fakenomad: %v", err)
	}
	s.URL = s.http.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server, ending open streams.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.http.Stop()
}

// Stop takes the agent down: connections are refused and open streams cut.
func (s *Server) Stop() {
	s.Disconnect()
	s.http.Stop()
}

// Restart brings a stopped agent back on the same address as a new
// cluster (a fresh dev agent, a rebuilt cluster): its event buffer is
// frames, whose indexes may be far below the old ones, and the list
// endpoints' indexes follow them. Deviation: the jobs, allocations and
// nodes it serves stay those of the old cluster.
func (s *Server) Restart(frames ...string) error {
	items := make([]item, 0, len(frames))
	for _, f := range frames {
		fr, err := parseFrame([]byte(f))
		if err != nil {
			return fmt.Errorf("fakenomad: Restart: %w", err)
		}
		items = append(items, item{frame: fr})
	}
	s.mu.Lock()
	s.items = items
	s.mu.Unlock()
	return s.http.Restart()
}

// Append publishes frames (NDJSON lines as Nomad writes them) to the buffer
// and to the open streams. It panics on a frame that is not a JSON object
// with an Index and an Events list: use Garbage for that.
func (s *Server) Append(frames ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range frames {
		fr, err := parseFrame([]byte(f))
		if err != nil {
			panic("fakenomad: Append: " + err.Error())
		}
		s.items = append(s.items, item{frame: fr})
	}
	s.wakeAll()
}

// Garbage writes a raw line to the streams open now; it is not buffered, so
// a reconnecting client does not see it again.
func (s *Server) Garbage(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items = append(s.items, item{raw: []byte(line)})
	s.wakeAll()
}

// Silence makes the streams open now go mute, heartbeats included, while
// keeping their connections open: a dead peer behind a live TCP connection.
// Streams opened later behave normally.
func (s *Server) Silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.silenced = true
	}
	s.wakeAll()
}

// Disconnect ends the streams open now, as a server restart or Nomad's
// closing of a slow reader does.
func (s *Server) Disconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.streams {
		st.dropped = true
	}
	s.wakeAll()
}

// FailNext makes the next n requests, whatever their path, fail with status
// and a body like Nomad's (or a proxy's, for 502-504).
func (s *Server) FailNext(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, status
}

// Requests returns the path and query of every request so far, in order.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// LastIndex is the index of the newest buffered frame.
func (s *Server) LastIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last uint64
	for _, it := range s.items {
		if it.frame != nil {
			last = max(last, it.frame.Index)
		}
	}
	return last
}

func (s *Server) wakeAll() {
	for st := range s.streams {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}
}

// failBodies are the bodies Nomad (or a reverse proxy, for 502-504) sends
// with these statuses.
var failBodies = map[int]string{
	http.StatusBadRequest:          "Bad request",
	http.StatusForbidden:           "Permission denied",
	http.StatusNotFound:            "Not found",
	http.StatusTooManyRequests:     "Too many requests",
	http.StatusInternalServerError: "No cluster leader",
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.URL.RequestURI())
	fail := 0
	if s.failN > 0 {
		s.failN--
		fail = s.failCode
	}
	s.mu.Unlock()
	if fail != 0 {
		body, ok := failBodies[fail]
		if !ok {
			body = http.StatusText(fail)
		}
		plainError(w, fail, body)
		return
	}
	path := r.URL.Path
	if r.Method != http.MethodGet && !writable(path) {
		// Deviation: only the writes of jobs.go are implemented.
		plainError(w, http.StatusMethodNotAllowed, "Invalid method")
		return
	}
	if path == "/v1/acl/token/self" {
		s.tokenSelf(w, r)
		return
	}
	if msg := s.denied(r); msg != "" {
		plainError(w, http.StatusForbidden, msg)
		return
	}
	// Jobs, allocations, deployments and nodes come from the state
	// (jobs.go), which starts as the capture.
	if s.serveState(w, r) {
		return
	}
	switch {
	case path == "/v1/event/stream":
		s.stream(w, r)
	case path == "/v1/operator/snapshot":
		s.snapshot(w, r) // snapshot.go
	case path == "/v1/status/leader":
		serveFile(w, "status-leader", "json", 0)
	// Deviation: list endpoints ignore pagination (per_page, next_token)
	// and filters, serving the whole captured list.
	case path == "/v1/evaluations":
		serveFile(w, "evaluations", "json", s.tableIndex("Evaluation"))
	case strings.HasPrefix(path, "/v1/allocation/"):
		allocation(w, strings.TrimPrefix(path, "/v1/allocation/"))
	case strings.HasPrefix(path, "/v1/client/fs/logs/"):
		logs(w, r, strings.TrimPrefix(path, "/v1/client/fs/logs/"))
	default:
		http.NotFound(w, r)
	}
}

// requestToken reads the token the way Nomad does.
func requestToken(r *http.Request) string {
	if t := r.Header.Get("X-Nomad-Token"); t != "" {
		return t
	}
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// denied returns Nomad's 403 body when ACLs are on and the request's token
// is missing ("Permission denied": the anonymous policy grants nothing) or
// unknown ("ACL token not found").
func (s *Server) denied(r *http.Request) string {
	switch t := requestToken(r); {
	case s.cfg.Token == "" || t == s.cfg.Token:
		return ""
	case t == "":
		return "Permission denied"
	default:
		return "ACL token not found"
	}
}

func (s *Server) tokenSelf(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Token == "" {
		plainError(w, http.StatusBadRequest, "ACL support disabled")
		return
	}
	if msg := s.denied(r); msg != "" {
		plainError(w, http.StatusForbidden, msg)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"AccessorID":"9a8e5a3c-0d3c-4d6e-8f43-5b1e2a6c7d10","SecretID":%q,"Name":"vigie","Type":"client","Policies":["vigie"],"Roles":null,"Global":false,"CreateTime":"2026-11-26T15:00:00Z","ExpirationTime":null,"CreateIndex":7,"ModifyIndex":7}`, s.cfg.Token)
}

// tableIndex is the X-Nomad-Index of a list endpoint: Nomad reports the
// last raft index that wrote the endpoint's table. The fake takes the
// newest buffered event of the matching topic. Deviation: Nomad also bumps
// a table on writes that publish no event for it (the capture's allocs
// table is at 64, its last Allocation event at 62).
func (s *Server) tableIndex(topic string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	index := uint64(1) // Nomad never reports 0 to a blocking query
	for _, it := range s.items {
		if it.frame == nil {
			continue
		}
		for _, e := range it.frame.Events {
			if e.Topic == topic {
				index = max(index, it.frame.Index)
			}
		}
	}
	return index
}

// allocation serves GET /v1/allocation/<id> from the captures.
func allocation(w http.ResponseWriter, id string) {
	names := map[string]string{
		CrasherAllocID: "allocation-crasher-failed",
		WebAllocID:     "allocation-web-running",
		BackupAllocID:  "allocation-backup-complete",
	}
	name, ok := names[id]
	if !ok {
		plainError(w, http.StatusNotFound, "alloc not found")
		return
	}
	serveFile(w, name, "json", 0)
}

// taskLogs are the captured task logs, by alloc ID, task and log type.
var taskLogs = map[[3]string]string{
	{CrasherAllocID, "boom", "stderr"}:  "alloc-crasher-stderr",
	{BackupAllocID, "backup", "stdout"}: "alloc-backup-stdout",
}

// taskNames are the tasks of the allocations whose logs the fake knows.
var taskNames = map[string]string{CrasherAllocID: "boom", BackupAllocID: "backup"}

// logs serves GET /v1/client/fs/logs/<alloc>. Deviations: only plain=true
// and follow=false are implemented (Nomad's default is base64 JSON frames);
// a known task's other log is empty.
func logs(w http.ResponseWriter, r *http.Request, allocID string) {
	q := r.URL.Query()
	task, ok := taskNames[allocID]
	if !ok {
		plainError(w, http.StatusNotFound, fmt.Sprintf("Unknown allocation %q", allocID))
		return
	}
	if q.Get("task") != task {
		plainError(w, http.StatusBadRequest, fmt.Sprintf("unknown task name %q", q.Get("task")))
		return
	}
	logType := q.Get("type")
	if logType != "stdout" && logType != "stderr" {
		plainError(w, http.StatusBadRequest, "must include type parameter")
		return
	}
	var text []byte
	if name, ok := taskLogs[[3]string{allocID, task, logType}]; ok {
		text = mustRead("nomad-api/" + name + ".txt")
	}
	offset, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if q.Get("offset") == "" {
		offset, err = 0, nil
	}
	if err != nil || offset < 0 {
		plainError(w, http.StatusBadRequest, "Failed to parse offset")
		return
	}
	off := int(min(offset, int64(len(text))))
	switch q.Get("origin") {
	case "", "start":
		text = text[off:]
	case "end":
		text = text[len(text)-off:]
	default:
		plainError(w, http.StatusBadRequest, `origin must be "start" or "end"`)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(text)
}

// serveFile writes testdata/nomad-api/<name>.<ext> with the captured
// Content-Type and X-Nomad-Index, the latter replaced by index when it is
// not 0.
func serveFile(w http.ResponseWriter, name, ext string, index uint64) {
	body := mustRead("nomad-api/" + name + "." + ext)
	for _, line := range strings.Split(string(mustRead("nomad-api/"+name+".headers")), "\r\n")[1:] {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "Content-Type" || strings.HasPrefix(k, "X-Nomad-")) {
			w.Header().Set(k, v)
		}
	}
	if index != 0 {
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
	}
	w.Write(body)
}

// plainError answers like Nomad's HTTP agent: the status and the bare
// error text.
func plainError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	w.Write([]byte(msg))
}

func mustRead(name string) []byte {
	b, err := testdata.ReadFile("testdata/" + name)
	if err != nil {
		panic("fakenomad: " + err.Error())
	}
	return b
}

// stream serves GET /v1/event/stream.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var index uint64
	if v := q.Get("index"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil {
			plainError(w, http.StatusBadRequest, fmt.Sprintf("Unable to parse index: %v", err))
			return
		}
		index = uint64(i)
	}
	topics := map[string][]string{}
	for _, t := range q["topic"] {
		parts := strings.Split(t, ":")
		switch len(parts) {
		case 1:
			parts = append(parts, "*")
		case 2:
		default:
			plainError(w, http.StatusBadRequest, fmt.Sprintf("Invalid topic query: error parsing topics: Invalid key value pair for topic, topic: %s", t))
			return
		}
		topics[parts[0]] = append(topics[parts[0]], parts[1])
	}
	if len(topics) == 0 {
		topics["*"] = []string{"*"}
	}
	// Nomad 1.x refuses with a 403 before streaming. Deviation: Nomad 2.x
	// is said to answer 200 and close the stream instead; not imitated.
	for topic := range topics {
		if topic == "*" && len(s.cfg.DenyTopics) > 0 || slices.Contains(s.cfg.DenyTopics, topic) {
			plainError(w, http.StatusForbidden, "Permission denied")
			return
		}
	}
	namespace := q.Get("namespace")
	if namespace == "" {
		namespace = "default"
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		plainError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	// Deviation: Nomad 1.x sends the headers with the first line, which on
	// a quiet cluster is the first heartbeat.
	w.WriteHeader(http.StatusOK)
	flusher.Flush()

	st := &stream{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	pos := s.startAt(index)
	st.since = len(s.items)
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
	}()

	// Nomad's ticker runs whether or not frames are written.
	heartbeat := time.NewTicker(s.cfg.HeartbeatInterval)
	defer heartbeat.Stop()
	bw := bufio.NewWriter(w)
	for {
		s.mu.Lock()
		silenced, dropped := st.silenced, st.dropped
		if dropped { // before reading items: a Restart may have replaced them
			s.mu.Unlock()
			return
		}
		todo := s.items[pos:]
		from := pos
		pos = len(s.items)
		s.mu.Unlock()
		if silenced {
			select {
			case <-r.Context().Done():
				return
			case <-s.done:
				return
			case <-st.wake: // only Disconnect matters now
			}
			continue
		}
		for i, it := range todo {
			switch {
			case it.frame != nil:
				if line := it.frame.filter(topics, namespace); line != nil {
					bw.Write(line)
					bw.WriteByte('\n')
				}
			case from+i >= st.since:
				bw.Write(it.raw)
				bw.WriteByte('\n')
			}
		}
		if bw.Flush() != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-st.wake:
		case <-heartbeat.C:
			if _, err := bw.WriteString("{}\n"); err != nil || bw.Flush() != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// startAt is the position in items where a stream asking for index starts,
// as Nomad's EventBroker.Subscribe and eventBuffer.StartAtClosest do: 0
// means the oldest buffered frame; otherwise the first frame at or after
// index, or the newest frame when index is beyond it. Deviation: the buffer
// is never pruned (Nomad keeps event_buffer_size = 100 raft batches).
func (s *Server) startAt(index uint64) int {
	if index == 0 {
		return 0
	}
	newest := len(s.items)
	for i, it := range s.items {
		if it.frame == nil {
			continue
		}
		if it.frame.Index >= index {
			return i
		}
		newest = i
	}
	return newest
}

// filter returns the frame as the stream of a subscription to topics and
// namespace would carry it (Nomad's subscription filter), or nil when no
// event is left.
func (f *frame) filter(topics map[string][]string, namespace string) []byte {
	var kept []json.RawMessage
	for _, e := range f.Events {
		if e.malformed {
			kept = append(kept, e.raw)
			continue
		}
		if namespace != "*" && e.Namespace != "" && e.Namespace != namespace {
			continue
		}
		keys := append(slices.Clone(topics["*"]), topics[e.Topic]...)
		if slices.ContainsFunc(keys, func(k string) bool {
			return k == "*" || k == e.Key || slices.Contains(e.FilterKeys, k)
		}) {
			kept = append(kept, e.raw)
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case len(f.Events):
		return f.line
	}
	line, _ := json.Marshal(struct {
		Events []json.RawMessage
		Index  uint64
	}{kept, f.Index})
	return line
}

func parseFrame(line []byte) (*frame, error) {
	var raw struct {
		Index  uint64
		Events []json.RawMessage
	}
	if err := json.Unmarshal(line, &raw); err != nil {
		return nil, err
	}
	f := &frame{Index: raw.Index, line: bytes.TrimSpace(line)}
	for _, r := range raw.Events {
		e := event{raw: r}
		// Tests feed malformed events too: one the fake cannot read passes
		// every filter, so that it reaches the client.
		e.malformed = json.Unmarshal(r, &e) != nil
		f.Events = append(f.Events, e)
	}
	return f, nil
}

// CaptureFrames returns the frames of the captured stream, heartbeats left
// out, in order.
func CaptureFrames() []string {
	return frames("nomad-events.ndjson")
}

// frames reads the frames of a testdata stream, heartbeats left out.
func frames(name string) []string {
	var out []string
	for line := range strings.SplitSeq(string(mustRead(name)), "\n") {
		if line = strings.TrimSpace(line); line != "" && line != "{}" {
			out = append(out, line)
		}
	}
	return out
}

// RestartLoopFrames returns the frames of a task crash-looping (derived
// from the capture, see testdata/README.md), indexes 80 to 86.
func RestartLoopFrames() []string {
	return frames("restart-loop.ndjson")
}

// CaptureLog returns a captured task log ("stdout" or "stderr").
func CaptureLog(allocID, task, logType string) (string, bool) {
	name, ok := taskLogs[[3]string{allocID, task, logType}]
	if !ok {
		return "", false
	}
	return string(mustRead("nomad-api/" + name + ".txt")), true
}

// Reindex returns frame moved to index, its events too, for replaying a
// captured frame as a new one. It panics on invalid JSON.
func Reindex(frame string, index uint64) string {
	var f struct {
		Events []map[string]json.RawMessage
	}
	if err := json.Unmarshal([]byte(frame), &f); err != nil {
		panic("fakenomad: Reindex: " + err.Error())
	}
	idx := json.RawMessage(strconv.FormatUint(index, 10))
	for _, e := range f.Events {
		e["Index"] = idx
	}
	out, err := json.Marshal(struct {
		Events []map[string]json.RawMessage
		Index  uint64
	}{f.Events, index})
	if err != nil {
		panic("fakenomad: Reindex: " + err.Error())
	}
	return string(out)
}
