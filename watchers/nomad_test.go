package watchers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/fakenomad"
)

type fixedCursor struct {
	index uint64
	skip  int
	ok    bool
}

func (c fixedCursor) Cursor(context.Context, string) (uint64, int, bool, error) {
	return c.index, c.skip, c.ok, nil
}

// batchSink records batches and hands them to the test as they come.
type batchSink struct {
	ch  chan Batch
	err error // returned by Consume when set
}

func newBatchSink() *batchSink { return &batchSink{ch: make(chan Batch, 1000)} }

func (s *batchSink) Consume(_ context.Context, b Batch) error {
	if s.err != nil {
		return s.err
	}
	// The Nomad watcher reuses the array of Events.
	b.Events = slices.Clone(b.Events)
	s.ch <- b
	return nil
}

// next returns the next batch, failing the test after a few seconds.
func (s *batchSink) next(t *testing.T) Batch {
	t.Helper()
	select {
	case b := <-s.ch:
		return b
	case <-time.After(3 * time.Second):
		t.Fatal("no batch")
		return Batch{}
	}
}

// none asserts that no batch comes for a while.
func (s *batchSink) none(t *testing.T, wait time.Duration) {
	t.Helper()
	select {
	case b := <-s.ch:
		t.Fatalf("unexpected batch %+v", b.Cursor)
	case <-time.After(wait):
	}
}

// logBuffer collects the JSON log lines of a run.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines at level that contain all of subs.
func (l *logBuffer) lines(level string, subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		if !strings.Contains(line, `"level":"`+level+`"`) {
			continue
		}
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(line, s) }) {
			out = append(out, line)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testNomad returns a watcher of fake with test-sized timings.
func testNomad(fake *fakenomad.Server, cfg NomadConfig, c CursorStore) *Nomad {
	cfg.Address = fake.URL
	if cfg.StreamTimeout == 0 {
		cfg.StreamTimeout = 2 * time.Second
	}
	cfg.Backoff = Backoff{Min: 5 * time.Millisecond, Max: 40 * time.Millisecond}
	return NewNomad(cfg, c)
}

// run starts Watch and returns its result channel, its log and what it
// told its lookout; Watch is stopped and awaited when the test ends.
func run(t *testing.T, n *Nomad, sink Sink) (<-chan error, *logBuffer, *lookoutLog) {
	t.Helper()
	logs, lookout := &logBuffer{}, &lookoutLog{}
	ctx, cancel := context.WithCancel(zerolog.New(logs).Level(zerolog.DebugLevel).WithContext(t.Context()))
	done := make(chan error, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		done <- n.Watch(ctx, sink, lookout)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Error("Watch did not stop on cancel")
		}
	})
	return done, logs, lookout
}

// streamRequests returns the query of each event stream request so far.
func streamRequests(fake *fakenomad.Server) []url.Values {
	var out []url.Values
	for _, r := range fake.Requests() {
		if path, query, _ := strings.Cut(r, "?"); path == "/v1/event/stream" {
			q, _ := url.ParseQuery(query)
			out = append(out, q)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// captured is an event of the capture, as the frames list it.
type captured struct {
	Index            uint64
	Topic, Type, Key string
}

// captureEvents returns the events of the capture and the cursor after each
// frame, computed from the raw frames.
func captureEvents(t testing.TB) (events []captured, cursors []Cursor) {
	t.Helper()
	var pos Cursor
	for _, line := range fakenomad.CaptureFrames() {
		var f struct {
			Index  uint64
			Events []captured
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		if f.Index == pos.Index {
			pos.Offset += len(f.Events)
		} else {
			pos = Cursor{Name: "nomad", Index: f.Index, Offset: len(f.Events)}
		}
		cursors = append(cursors, pos)
		events = append(events, f.Events...)
	}
	return events, cursors
}

// frameAt returns the first captured frame at index.
func frameAt(t *testing.T, index uint64) string {
	t.Helper()
	for _, line := range fakenomad.CaptureFrames() {
		var f struct{ Index uint64 }
		if json.Unmarshal([]byte(line), &f) == nil && f.Index == index {
			return line
		}
	}
	t.Fatalf("no frame at %d", index)
	return ""
}

// key is the ID an event is about.
func key(e Event) string {
	switch {
	case e.Alloc != nil:
		return e.Alloc.ID
	case e.Deployment != nil:
		return e.Deployment.ID
	case e.Eval != nil:
		return e.Eval.ID
	case e.Job != nil:
		return e.Job.ID
	case e.Node != nil:
		return e.Node.ID
	}
	return ""
}

// collect reads batches until the cursor reaches last.
func collect(t *testing.T, sink *batchSink, last Cursor) []Batch {
	t.Helper()
	var out []Batch
	for {
		b := sink.next(t)
		out = append(out, b)
		if b.Cursor == last {
			return out
		}
	}
}

// checkBatches checks that batches deliver the frames of the capture after
// from, in order, each batch the events of whole frames with the cursor of
// the last of them.
func checkBatches(t *testing.T, batches []Batch, from Cursor) {
	t.Helper()
	all, cursors := captureEvents(t)
	// ends[i]: the events of the capture up to frame i included.
	ends := make([]int, len(cursors))
	for i, c := range cursors {
		ends[i] = c.Offset
		for _, e := range all {
			if e.Index < c.Index {
				ends[i]++
			}
		}
	}
	done := from.Offset
	for _, e := range all {
		if e.Index < from.Index {
			done++
		}
	}
	i := 0
	for n, b := range batches {
		for i < len(cursors) && cursors[i] != b.Cursor {
			i++
		}
		if i == len(cursors) || ends[i] <= done && len(b.Events) > 0 {
			t.Fatalf("batch %d: cursor %+v is not after a frame following %d events", n, b.Cursor, done)
		}
		var got []captured
		for _, e := range b.Events {
			if e.Source != "nomad" || e.Index > b.Cursor.Index {
				t.Errorf("event %+v in batch %+v", e, b.Cursor)
			}
			got = append(got, captured{e.Index, e.Topic, e.Type, key(e)})
		}
		if !slices.Equal(got, all[done:ends[i]]) {
			t.Fatalf("batch %d (%+v): got %v, want %v", n, b.Cursor, got, all[done:ends[i]])
		}
		done = ends[i]
	}
}

func TestNomadReplaysTheCaptureInOrder(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	run(t, testNomad(fake, NomadConfig{}, fixedCursor{index: 8, ok: true}), sink)

	want, cursors := captureEvents(t)
	// Frames received together come in one batch, with the cursor of the
	// last of them.
	batches := collect(t, sink, cursors[len(cursors)-1])
	checkBatches(t, batches, Cursor{Name: "nomad", Index: 8})
	t.Logf("%d frames in %d batches", len(cursors), len(batches))
	var got []captured
	for _, b := range batches {
		for _, e := range b.Events {
			got = append(got, captured{e.Index, e.Topic, e.Type, key(e)})
		}
	}
	if len(want) != 112 || !slices.Equal(got, want) {
		t.Fatalf("got %d events, want %d:\n%v\n%v", len(got), len(want), got, want)
	}
	// Frames sharing an index: the offset counts the events consumed at it.
	for _, c := range [][2]Cursor{
		{{"nomad", 11, 1}, {"nomad", 11, 2}},
		{{"nomad", 36, 1}, {"nomad", 36, 3}},
		{{"nomad", 39, 1}, {"nomad", 39, 2}},
	} {
		i := slices.Index(cursors, c[0])
		if i < 0 || cursors[i+1] != c[1] {
			t.Errorf("cursors around %+v: %+v", c[0], cursors[max(i, 0):max(i+2, 0)])
		}
	}
	if q := streamRequests(fake)[0]; q.Get("index") != "8" || !slices.Equal(q["topic"], []string{"Allocation:*", "Deployment:*", "Evaluation:*", "Job:*", "Node:*"}) || q.Has("namespace") {
		t.Errorf("stream query %v", q)
	}
}

func TestNomadFirstStartSkipsTheBuffer(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	run(t, testNomad(fake, NomadConfig{Namespaces: []string{"*"}}, fixedCursor{}), sink)

	// The evaluations table is the newest (65); jobs alone says 61.
	first := sink.next(t)
	if first.Cursor != (Cursor{"nomad", 66, 0}) || first.Events != nil {
		t.Fatalf("first batch %+v", first)
	}
	waitFor(t, "stream", func() bool { return len(streamRequests(fake)) == 1 })
	if q := streamRequests(fake)[0]; q.Get("index") != "66" || q.Get("namespace") != "*" {
		t.Fatalf("stream query %v", q)
	}
	for _, want := range []string{"/v1/jobs?namespace=%2A&per_page=1", "/v1/allocations?namespace=%2A&per_page=1", "/v1/nodes?per_page=1"} {
		if !slices.Contains(fake.Requests(), want) {
			t.Errorf("no request %s in %q", want, fake.Requests())
		}
	}
	// The server replays its newest frame (65): it must not reach the sink.
	sink.none(t, 100*time.Millisecond)

	fake.Append(fakenomad.Reindex(frameAt(t, 23), 66)) // the crasher failing
	b := sink.next(t)
	if b.Cursor != (Cursor{"nomad", 66, 4}) || len(b.Events) != 4 || b.Events[1].Alloc.ClientStatus != "failed" {
		t.Fatalf("live batch %+v", b)
	}
}

// A cluster whose history restarted below what Vigie had read (a new dev
// agent, a rebuilt cluster, a restored snapshot) is followed from its own
// index at once, with an event saying so, rather than dropping every frame
// until its index climbs past the old position.
func TestNomadResumesAfterTheClusterHistoryRestarted(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	_, logs, _ := run(t, testNomad(fake, NomadConfig{}, fixedCursor{}), sink)
	if first := sink.next(t); first.Cursor != (Cursor{"nomad", 66, 0}) {
		t.Fatalf("first batch %+v", first.Cursor)
	}
	fake.Append(fakenomad.Reindex(frameAt(t, 23), 66))
	if b := sink.next(t); b.Cursor != (Cursor{"nomad", 66, 4}) {
		t.Fatalf("live batch %+v", b.Cursor)
	}

	// A new agent: its buffer holds the capture's first frames, the node
	// registering at 8 up to 12.
	fake.Stop()
	var fresh []string
	for _, f := range fakenomad.CaptureFrames() {
		var head struct{ Index uint64 }
		if err := json.Unmarshal([]byte(f), &head); err != nil {
			t.Fatal(err)
		}
		if head.Index <= 12 {
			fresh = append(fresh, f)
		}
	}
	if err := fake.Restart(fresh...); err != nil {
		t.Fatal(err)
	}
	b := sink.next(t)
	if b.Cursor != (Cursor{"nomad", 13, 0}) || len(b.Events) != 1 {
		t.Fatalf("after the restart: cursor %+v, %d events", b.Cursor, len(b.Events))
	}
	if e := b.Events[0]; e.Topic != TopicSight || e.Type != SightRewound || e.Sight == nil ||
		e.Sight.From != 66 || e.Sight.To != 12 || e.Sight.Address != fake.URL {
		t.Fatalf("rewound event %+v %+v", e, e.Sight)
	}
	if len(logs.lines("error", "history restarted")) != 1 {
		t.Errorf("no error logged:\n%s", logs)
	}
	// The new cluster's first failure is news, not a replay.
	fake.Append(fakenomad.Reindex(frameAt(t, 23), 13))
	if b := sink.next(t); b.Cursor != (Cursor{"nomad", 13, 4}) || b.Events[1].Alloc.ClientStatus != "failed" {
		t.Fatalf("first frame of the new cluster: %+v", b.Cursor)
	}
}

func TestNomadResumesInsideASharedIndex(t *testing.T) {
	all, cursors := captureEvents(t)
	for _, c := range []struct {
		from Cursor
		key  string
	}{
		{Cursor{"nomad", 11, 1}, "f4670472-"},
		{Cursor{"nomad", 36, 2}, "crasher"}, // inside the second frame at 36
		{Cursor{"nomad", 36, 3}, "98494df7-"},
	} {
		t.Run(fmt.Sprint(c.from), func(t *testing.T) {
			fake := fakenomad.New(t, fakenomad.Config{})
			sink := newBatchSink()
			run(t, testNomad(fake, NomadConfig{}, fixedCursor{c.from.Index, c.from.Offset, true}), sink)
			batches := collect(t, sink, cursors[len(cursors)-1])
			if !strings.HasPrefix(key(batches[0].Events[0]), c.key) {
				t.Fatalf("first batch %+v %s", batches[0].Cursor, key(batches[0].Events[0]))
			}
			checkBatches(t, batches, c.from)
			// Exactly the events after the cursor: none repeated, none lost.
			var got []captured
			for _, b := range batches {
				for _, e := range b.Events {
					got = append(got, captured{e.Index, e.Topic, e.Type, key(e)})
				}
			}
			consumed := 0
			for _, e := range all {
				if e.Index < c.from.Index {
					consumed++
				}
			}
			consumed += c.from.Offset
			if !slices.Equal(got, all[consumed:]) {
				t.Fatalf("got %d events, want %d", len(got), len(all)-consumed)
			}
		})
	}
}

func TestNomadHeartbeatsKeepAStreamAndSilenceReplacesIt(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 20 * time.Millisecond})
	sink := newBatchSink()
	_, logs, _ := run(t, testNomad(fake, NomadConfig{StreamTimeout: 150 * time.Millisecond}, fixedCursor{65, 0, true}), sink)

	if b := sink.next(t); b.Cursor != (Cursor{"nomad", 65, 1}) {
		t.Fatalf("first batch %+v", b.Cursor)
	}
	sink.none(t, 500*time.Millisecond) // 3 stream timeouts of heartbeats only
	if n := len(streamRequests(fake)); n != 1 {
		t.Fatalf("%d stream requests while heartbeats flowed", n)
	}

	fake.Silence()
	waitFor(t, "a new stream", func() bool { return len(streamRequests(fake)) == 2 })
	if q := streamRequests(fake)[1]; q.Get("index") != "65" {
		t.Fatalf("reconnected with %v", q)
	}
	// The replayed frame 65 is not delivered again; a new one is, once.
	fake.Append(fakenomad.Reindex(frameAt(t, 43), 66))
	if b := sink.next(t); b.Cursor != (Cursor{"nomad", 66, 1}) || b.Events[0].Node == nil {
		t.Fatalf("after reconnect %+v", b)
	}
	sink.none(t, 50*time.Millisecond)
	waitFor(t, "recovery log", func() bool { return len(logs.lines("info", "recovered")) == 1 })
	if w := logs.lines("warn", "unavailable", "sent nothing for 150ms", fake.URL); len(w) != 1 {
		t.Fatalf("outage warnings %q\n%s", w, logs)
	}
}

func TestNomadSkipsWhatItCannotRead(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: time.Hour})
	sink := newBatchSink()
	// Service is not translated; asking for it lets the fake send it.
	topics := append(slices.Clone(nomadDefaultTopics), "Service")
	done, logs, _ := run(t, testNomad(fake, NomadConfig{Topics: topics}, fixedCursor{65, 0, true}), sink)
	sink.next(t) // frame 65: the stream is open

	fake.Garbage("<html>502 Bad Gateway</html>")
	fake.Garbage(`{"Events":[{"Topic":"Allocation","Index":66,"Payload":{"Allocation":{"ID":`) // truncated
	fake.Garbage("<html>502 Bad Gateway</html>")
	ev := func(topic, typ, payload string) string {
		return fmt.Sprintf(`{"Topic":%q,"Type":%q,"Key":"k","Namespace":"default","FilterKeys":null,"Index":0,"Payload":%s}`, topic, typ, payload)
	}
	fake.Append(
		`{"Events":[`+ev("Service", "ServiceRegistration", `{"Service":{"ID":"s"}}`)+`],"Index":66}`,
		`{"Events":[`+ev("Job", "JobFrobnicated", `{"Job":{"ID":"j"}}`)+`],"Index":67}`,
		`{"Events":[`+ev("Allocation", "AllocationUpdated", `{"Allocation":{"ClientStatus":"failed"}}`)+","+
			ev("Allocation", "AllocationUpdated", `{}`)+","+
			ev("Evaluation", "EvaluationUpdated", `{"Evaluation":{"ID":5}}`)+","+
			`{"Topic":7}`+"]"+`,"Index":68}`,
		fakenomad.Reindex(frameAt(t, 43), 69),
	)
	// The frames may come in one batch or several, each with the cursor
	// of its last frame: the skipped events move the cursor.
	var events []Event
	for _, b := range collect(t, sink, Cursor{"nomad", 69, 1}) {
		if !slices.Contains([]Cursor{{"nomad", 66, 1}, {"nomad", 67, 1}, {"nomad", 68, 4}, {"nomad", 69, 1}}, b.Cursor) {
			t.Fatalf("batch with cursor %+v", b.Cursor)
		}
		events = append(events, b.Events...)
	}
	if len(events) != 1 || events[0].Node.LastEvent != "Node drain strategy set" {
		t.Fatalf("valid frame after the bad ones: %+v", events)
	}
	select {
	case err := <-done:
		t.Fatalf("Watch returned %v", err)
	default:
	}
	for _, kind := range []string{"undecodable line", "topic Service", "type JobFrobnicated", "payload Allocation", "payload Evaluation", "malformed event"} {
		if w := logs.lines("warn", `"kind":"`+kind+`"`); len(w) != 1 {
			t.Errorf("kind %s: %d warnings\n%s", kind, len(w), logs)
		}
	}
	if d := logs.lines("debug", `"kind":"undecodable line"`); len(d) != 2 {
		t.Errorf("repeated garbage: %d debug lines", len(d))
	}
	if n := len(streamRequests(fake)); n != 1 {
		t.Errorf("garbage made %d streams", n)
	}
}

func TestNomadReplacesAStreamWithAnOverlongLine(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: time.Hour})
	sink := newBatchSink()
	n := testNomad(fake, NomadConfig{}, fixedCursor{65, 0, true})
	n.maxLine = 64 << 10 // above the capture's 15 KB Node frames
	_, logs, _ := run(t, n, sink)
	sink.next(t)
	fake.Garbage(`{"Events":[` + strings.Repeat(" ", 100<<10) + `],"Index":66}`)
	waitFor(t, "a new stream", func() bool { return len(streamRequests(fake)) == 2 })
	fake.Append(fakenomad.Reindex(frameAt(t, 43), 66))
	if b := sink.next(t); b.Cursor != (Cursor{"nomad", 66, 1}) {
		t.Fatalf("after reconnect %+v", b.Cursor)
	}
	if w := logs.lines("warn", "frame over 65536 bytes"); len(w) != 1 {
		t.Fatalf("no warning\n%s", logs)
	}
}

func TestNomadLogsEachOutageOnce(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: time.Hour})
	fake.FailNext(3, 500)
	sink := newBatchSink()
	_, logs, lookout := run(t, testNomad(fake, NomadConfig{}, fixedCursor{64, 0, true}), sink)

	if b := sink.next(t); b.Cursor.Index != 64 && b.Cursor.Index != 65 {
		t.Fatalf("first batch %+v", b.Cursor)
	} else if b.Cursor.Index == 64 {
		sink.next(t)
	}
	// The lookout hears of each failure and of the answers after them.
	if seen, lost := lookout.counts(); lost != 3 || seen == 0 {
		t.Fatalf("lookout told %d answers, %d failures; want some and 3", seen, lost)
	}
	if w := logs.lines("warn", "unavailable", fake.URL, "No cluster leader"); len(w) != 1 {
		t.Fatalf("outage warnings: %q\n%s", w, logs)
	}
	if d := logs.lines("debug", "still unavailable"); len(d) != 2 {
		t.Fatalf("%d debug lines for the retries\n%s", len(d), logs)
	}
	if i := logs.lines("info", "recovered", `"outage":`, fake.URL); len(i) != 1 {
		t.Fatalf("recovery lines: %q", i)
	}
	if len(logs.lines("warn")) != 1 {
		t.Fatalf("other warnings\n%s", logs)
	}
	if !strings.Contains(lookout.lost[0], "No cluster leader") || !strings.Contains(lookout.lost[0], fake.URL) {
		t.Fatalf("failure told to the lookout: %q", lookout.lost[0])
	}

	// A stream the server ends is a second outage, resumed from the cursor.
	fake.Disconnect()
	waitFor(t, "second recovery", func() bool { return len(logs.lines("info", "recovered")) == 2 })
	if w := logs.lines("warn", "unavailable", "ended"); len(w) != 1 {
		t.Fatalf("EOF warnings: %q", w)
	}
	if q := streamRequests(fake); len(q) != 2 || q[1].Get("index") != "65" {
		t.Fatalf("streams %v", q)
	}
	sink.none(t, 50*time.Millisecond)
}

func TestNomadRefusedTokenIsAClearError(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{Token: "s3cr3t"})
	for token, why := range map[string]string{"wrong": "ACL token not found", "": "Permission denied"} {
		done, _, _ := run(t, testNomad(fake, NomadConfig{Token: token}, fixedCursor{}), newBatchSink())
		select {
		case err := <-done:
			want := "Nomad at " + fake.URL + " rejected the token (403): " + why
			if err == nil || err.Error() != want {
				t.Errorf("got %v, want %s", err, want)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Watch kept going with a refused token")
		}
	}
}

func TestNomadRefusedStreamIsAClearError(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{Token: "s3cr3t", DenyTopics: []string{"Node"}})
	done, _, _ := run(t, testNomad(fake, NomadConfig{Token: "s3cr3t", Namespaces: []string{"ops"}}, fixedCursor{65, 1, true}), newBatchSink())
	select {
	case err := <-done:
		for _, want := range []string{"Nomad at " + fake.URL + " refused the event stream (403: Permission denied)", `read-job in namespace "ops"`, "node:read", "Node:*"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v lacks %q", err, want)
			}
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Watch kept going with a refused stream")
	}
}

func TestNomadReturnsTheSinkError(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	sink.err = errors.New("database is locked")
	done, _, _ := run(t, testNomad(fake, NomadConfig{}, fixedCursor{60, 0, true}), sink)
	select {
	case err := <-done:
		if !errors.Is(err, sink.err) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Watch kept going after the sink failed")
	}
}

func TestNomadFiltersSeveralNamespaces(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: time.Hour})
	sink := newBatchSink()
	run(t, testNomad(fake, NomadConfig{Namespaces: []string{"default", "ops"}}, fixedCursor{65, 1, true}), sink)
	job := func(id, ns string) string {
		return fmt.Sprintf(`{"Topic":"Job","Type":"JobRegistered","Key":%q,"Namespace":%q,"Index":66,"Payload":{"Job":{"ID":%q}}}`, id, ns, id)
	}
	fake.Append(`{"Events":[` + job("a", "default") + "," + job("b", "dev") + "," + job("c", "ops") + `],"Index":66}`)
	b := sink.next(t)
	if b.Cursor != (Cursor{"nomad", 66, 3}) || len(b.Events) != 2 || key(b.Events[0]) != "a" || key(b.Events[1]) != "c" {
		t.Fatalf("batch %+v", b)
	}
	if q := streamRequests(fake)[0]; q.Get("namespace") != "*" {
		t.Fatalf("query %v", q)
	}
}

// followPipe runs r.follow on a pipe and returns the pipe's writing end,
// the number of reads that waited for the server so far, and follow's
// result.
func followPipe(t *testing.T, r *nomadRun) (*io.PipeWriter, *atomic.Int32, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	var waits atomic.Int32
	done := make(chan error, 1)
	ctx := zerolog.New(io.Discard).WithContext(t.Context())
	go func() {
		_, err := r.follow(ctx, bufio.NewReaderSize(pr, 64<<10), func(waiting bool) {
			if waiting {
				waits.Add(1)
			}
		})
		pr.CloseWithError(err)
		done <- err
	}()
	t.Cleanup(func() { pw.Close() })
	return pw, &waits, done
}

func testRun(n *Nomad, sink Sink, pos Cursor) *nomadRun {
	return &nomadRun{n: n, sink: sink, lookout: &lookoutLog{}, tails: newTailCache(), started: true, pos: pos}
}

// Frames received together go to the sink in one batch, with the cursor of
// the last; a batch never waits for more frames, nor grows past its bound
// but to end a frame.
func TestNomadBatchesTheFramesReceivedTogether(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	n := testNomad(fake, NomadConfig{}, fixedCursor{})
	n.batchEvents = 4
	sink := newBatchSink()
	from := Cursor{"nomad", 36, 1}
	pw, waits, done := followPipe(t, testRun(n, sink, from))

	var frames []string // from 35 on
	for _, f := range fakenomad.CaptureFrames() {
		var head struct{ Index uint64 }
		if err := json.Unmarshal([]byte(f), &head); err != nil {
			t.Fatal(err)
		}
		if head.Index >= 35 {
			frames = append(frames, f+"\n")
		}
	}
	write := func(s ...string) {
		t.Helper()
		if _, err := io.WriteString(pw, strings.Join(s, "")); err != nil {
			t.Fatal(err)
		}
	}
	var batches []Batch

	// 35 and the first frame at 36 are behind the cursor; a heartbeat
	// among the frames changes nothing.
	write(frames[0], frames[1], "{}\n", frames[2], frames[3])
	b := sink.next(t)
	if b.Cursor != (Cursor{"nomad", 37, 2}) || len(b.Events) != 4 || waits.Load() > 2 {
		t.Fatalf("first batch %+v with %d events after %d waits", b.Cursor, len(b.Events), waits.Load())
	}
	batches = append(batches, b)

	// A frame alone is not held for more.
	write(frames[4])
	batches = append(batches, sink.next(t))

	// Nor is a batch handed over before its frame has come whole.
	half := len(frames[5]) / 2
	write(frames[5][:half])
	sink.none(t, 100*time.Millisecond)
	write(frames[5][half:])
	batches = append(batches, sink.next(t))
	if batches[2].Cursor.Index != 39 || len(batches[2].Events) != 1 {
		t.Fatalf("split frame: %+v", batches[2])
	}

	// The second frame at 39 to 45 at once (30 KB, read at once): batches
	// closed as soon as they have 4 events: 39 and 40 (1 and 3 events),
	// 41 and 42 (1, 3), then 43 to 45 (1, 2, 1).
	write(frames[6:13]...)
	for _, want := range []Cursor{{"nomad", 40, 3}, {"nomad", 42, 3}, {"nomad", 45, 1}} {
		if b := sink.next(t); b.Cursor != want {
			t.Fatalf("batch %+v, want %+v", b.Cursor, want)
		} else {
			batches = append(batches, b)
		}
	}
	// The rest, whatever the batches.
	write(frames[13:]...)
	_, cursors := captureEvents(t)
	batches = append(batches, collect(t, sink, cursors[len(cursors)-1])...)
	checkBatches(t, batches, from)

	pw.Close()
	if err := <-done; err != io.EOF {
		t.Fatalf("follow returned %v", err)
	}
}

// A line longer than the read buffer is read whole, between batches.
func TestNomadReadsLinesLongerThanTheBuffer(t *testing.T) {
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	pw, _, done := followPipe(t, testRun(testNomad(fake, NomadConfig{}, fixedCursor{}), sink, Cursor{"nomad", 66, 0}))

	big := func(index uint64, pad int) string {
		var f struct {
			Events []map[string]any
			Index  uint64
		}
		if err := json.Unmarshal([]byte(fakenomad.Reindex(frameAt(t, 38), index)), &f); err != nil {
			t.Fatal(err)
		}
		f.Events[0]["Payload"].(map[string]any)["Job"].(map[string]any)["Meta"] = map[string]string{"pad": strings.Repeat("x", pad)}
		line, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(line) + "\n"
	}
	small := fakenomad.Reindex(frameAt(t, 38), 66) + "\n"
	go io.WriteString(pw, small+big(67, 100<<10)+big(68, 300<<10)+"{}\n"+big(69, 10)+big(70, 200<<10))

	var events []Event
	for _, b := range collect(t, sink, Cursor{"nomad", 70, 1}) {
		events = append(events, b.Events...)
	}
	if len(events) != 5 {
		t.Fatalf("%d events", len(events))
	}
	for i, e := range events {
		if e.Index != uint64(66+i) || e.Job == nil || e.Job.ID != "backup" {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	pw.Close()
	if err := <-done; err != io.EOF {
		t.Fatalf("follow returned %v", err)
	}
}
