//go:build linux

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/watchers"
)

var replayReps = flag.Int("replay.reps", 500,
	"times the captured Nomad stream (112 events) is replayed by BenchmarkNomadReplay*")

// Environment of TestReplayChild.
const (
	envReplayURL   = "VIGIE_REPLAY_URL"   // the stream server; set by the benchmark
	envReplayData  = "VIGIE_REPLAY_DATA"  // the data directory; set by the benchmark
	envReplayFinal = "VIGIE_REPLAY_FINAL" // "<index>/<offset>" of the last batch; set by the benchmark
	// Set by whoever runs the benchmark: files the child writes its CPU
	// profile (first connection to final commit) and its heap profile (at
	// the final commit) to. With -count, the last run's.
	envReplayCPUProfile = "VIGIE_REPLAY_CPUPROFILE"
	envReplayMemProfile = "VIGIE_REPLAY_MEMPROFILE"
)

// kindReached: the Nomad child committed the last batch of the stream.
const kindReached = "reached"

// replaySentinel stands for a frame's index in its template; no captured
// frame holds this number.
const replaySentinel = "987654321987654321"

// replayStream is the captured Nomad event stream (fakenomad.CaptureFrames,
// heartbeats left out: 62 frames, 112 events, indexes 8 to 65) repeated
// reps times, each repetition moved span indexes further than the
// previous one, as fakenomad.Reindex moves a frame: the frame's Index and
// its events' Index both. Frames are generated as they are written, from
// the templates, never held.
type replayStream struct {
	templates   []replayTemplate
	first, span uint64 // index of the first captured frame; last - first + 1
	reps        int
}

// replayTemplate is a captured frame, reindexed to replaySentinel and cut
// where the sentinel was.
type replayTemplate struct {
	index  uint64 // the captured index
	events int
	parts  []string
}

func newReplayStream(tb testing.TB, reps int) *replayStream {
	tb.Helper()
	if reps < 1 {
		tb.Fatalf("-replay.reps must be at least 1, got %d", reps)
	}
	s := &replayStream{reps: reps}
	var last uint64
	for _, f := range fakenomad.CaptureFrames() {
		var frame struct {
			Index  uint64
			Events []json.RawMessage
		}
		if err := json.Unmarshal([]byte(f), &frame); err != nil {
			tb.Fatalf("captured frame: %v", err)
		}
		if strings.Contains(f, replaySentinel) {
			tb.Fatalf("a captured frame holds the sentinel %s", replaySentinel)
		}
		sentinel, _ := strconv.ParseUint(replaySentinel, 10, 64)
		parts := strings.Split(fakenomad.Reindex(f, sentinel), replaySentinel)
		if len(parts) != len(frame.Events)+2 {
			tb.Fatalf("frame at index %d: %d places for its index, want %d", frame.Index, len(parts)-1, len(frame.Events)+1)
		}
		if len(s.templates) == 0 {
			s.first = frame.Index
		}
		if frame.Index < last {
			tb.Fatalf("captured frames out of order at index %d", frame.Index)
		}
		last = frame.Index
		s.templates = append(s.templates, replayTemplate{index: frame.Index, events: len(frame.Events), parts: parts})
	}
	s.span = last - s.first + 1
	return s
}

// events is the number of events of the whole stream.
func (s *replayStream) events() int {
	n := 0
	for _, t := range s.templates {
		n += t.events
	}
	return n * s.reps
}

// frameIndex is the index of frame i of repetition rep.
func (s *replayStream) frameIndex(rep, i int) uint64 {
	return s.templates[i].index + uint64(rep)*s.span
}

// final is where the cursor of a reader of the whole stream ends: the last
// index and the number of events at it.
func (s *replayStream) final() (index uint64, offset int) {
	index = s.frameIndex(s.reps-1, len(s.templates)-1)
	for _, t := range s.templates {
		if t.index == s.templates[len(s.templates)-1].index {
			offset += t.events
		}
	}
	return index, offset
}

// appendFrame appends frame i of repetition rep, without its newline.
func (s *replayStream) appendFrame(dst []byte, rep, i int) []byte {
	t := &s.templates[i]
	index := s.frameIndex(rep, i)
	for k, part := range t.parts {
		if k > 0 {
			dst = strconv.AppendUint(dst, index, 10)
		}
		dst = append(dst, part...)
	}
	return dst
}

// startAt is the first frame at or after index, as Nomad starts a stream
// (index 0: from the oldest); rep == s.reps when there is none.
func (s *replayStream) startAt(index uint64) (rep, i int) {
	if index <= s.first {
		return 0, 0
	}
	rep = int(min((index-s.first)/s.span, uint64(s.reps)))
	for ; rep < s.reps; rep++ {
		for i = range s.templates {
			if s.frameIndex(rep, i) >= index {
				return rep, i
			}
		}
	}
	return s.reps, 0
}

// replayServer serves a replayStream as Nomad would to the watcher: ACLs
// disabled, the list endpoints (whose X-Nomad-Index tells the watcher
// where the cluster is: the newest frame written so far), the event
// stream with a heartbeat every 30 s, and the captured task logs.
type replayServer struct {
	URL       string
	stream    *replayStream
	heartbeat time.Duration
	published atomic.Uint64 // the newest index written to a stream
	done      chan struct{}
}

func newReplayServer(tb testing.TB, s *replayStream) *replayServer {
	h := &replayServer{stream: s, heartbeat: 30 * time.Second, done: make(chan struct{})}
	h.reset()
	srv := httptest.NewServer(h)
	h.URL = srv.URL
	tb.Cleanup(func() {
		close(h.done)
		srv.CloseClientConnections()
		srv.Close()
	})
	return h
}

// reset makes the server a cluster that has published nothing of the
// stream yet, for a new reader.
func (h *replayServer) reset() { h.published.Store(h.stream.first - 1) }

// nomadLists are the list endpoints the watcher reads X-Nomad-Index from.
var nomadLists = map[string]bool{"/v1/jobs": true, "/v1/allocations": true, "/v1/evaluations": true, "/v1/deployments": true, "/v1/nodes": true}

func (h *replayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/v1/acl/token/self":
		http.Error(w, "ACL support disabled", http.StatusBadRequest)
	case nomadLists[p]:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(h.published.Load(), 10))
		io.WriteString(w, "[]")
	case p == "/v1/event/stream":
		h.serveStream(w, r)
	case strings.HasPrefix(p, "/v1/client/fs/logs/"):
		q := r.URL.Query()
		text, ok := fakenomad.CaptureLog(strings.TrimPrefix(p, "/v1/client/fs/logs/"), q.Get("task"), q.Get("type"))
		if !ok {
			http.Error(w, "Unknown allocation", http.StatusNotFound)
			return
		}
		if off, err := strconv.Atoi(q.Get("offset")); err == nil && q.Get("origin") == "end" && off < len(text) {
			text = text[len(text)-off:]
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, text)
	default:
		http.NotFound(w, r)
	}
}

// serveStream writes the frames from ?index= on as fast as the reader
// takes them, then heartbeats until the reader leaves.
func (h *replayServer) serveStream(w http.ResponseWriter, r *http.Request) {
	var index uint64
	if v := r.URL.Query().Get("index"); v != "" {
		var err error
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			http.Error(w, "Unable to parse index: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	flusher := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	heartbeat := time.NewTicker(h.heartbeat)
	defer heartbeat.Stop()
	bw := bufio.NewWriterSize(w, 64<<10)
	s := h.stream
	var line []byte
	rep, i := s.startAt(index)
	for ; rep < s.reps; rep++ {
		for ; i < len(s.templates); i++ {
			select {
			case <-heartbeat.C:
				bw.WriteString("{}\n")
			default:
			}
			line = append(s.appendFrame(line[:0], rep, i), '\n')
			if _, err := bw.Write(line); err != nil {
				return
			}
			if idx := s.frameIndex(rep, i); idx > h.published.Load() {
				h.published.Store(idx) // one stream at a time
			}
		}
		i = 0
	}
	for {
		if bw.Flush() != nil {
			return
		}
		flusher.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-heartbeat.C:
			bw.WriteString("{}\n")
		}
	}
}

// BenchmarkNomadReplay measures Vigie's pipeline on a long Nomad event
// stream: the captured stream replayed -replay.reps times (500: 56,000
// events), served over loopback HTTP as fast as it is read, to the real
// watcher, incident engine, store and outbox sender wired as cmd/vigie
// wires them with the default configuration, in a child process
// (TestReplayChild) so that its peak RSS and CPU time are its own. One run
// of the child per iteration; run it with -benchtime 1x:
//
//	go test -tags goolm -run '^$' -bench 'NomadReplay' -benchtime 1x -count 3 ./bench
//
// Set VIGIE_REPLAY_CPUPROFILE (and VIGIE_REPLAY_MEMPROFILE) to an absolute
// path for the child's profiles.
func BenchmarkNomadReplay(b *testing.B) {
	s := newReplayStream(b, *replayReps)
	srv := newReplayServer(b, s)
	finalIndex, finalOffset := s.final()
	var (
		events                          = s.events()
		wall, cpu, drain                float64
		consumed, batches               int64
		messages                        int
		peakKiB, idleKiB, baseKiB, hwm0 int
		run                             int
	)
	b.ResetTimer()
	for range b.N {
		run++
		srv.reset()
		c := startChild(b, "TestReplayChild",
			envReplayURL+"="+srv.URL, envReplayData+"="+filepath.Join(b.TempDir(), "data"),
			fmt.Sprintf("%s=%d/%d", envReplayFinal, finalIndex, finalOffset))
		c.goals[kindReached] = fmt.Sprintf("the final index %d (offset %d) in its store", finalIndex, finalOffset)
		deadline := time.Now().Add(*childTimeout)
		var ready childReady
		c.await(kindReady, &ready, deadline, nil)
		var reached childProgress
		c.await(kindReached, &reached, deadline, nil)
		var res childResult
		c.await(kindResult, &res, time.Now().Add(2*time.Minute), nil)
		c.stop()
		wall += res.WallSeconds
		cpu += res.CPUSeconds
		drain += res.DrainSeconds
		consumed += res.Events
		batches += res.Batches
		messages += res.Messages
		peakKiB = max(peakKiB, res.PeakRSSKiB)
		idleKiB = max(idleKiB, res.IdleRSSKiB)
		baseKiB = max(baseKiB, res.BaselineRSSKiB)
		hwm0 = max(hwm0, ready.HWMKiB)
		if res.Pending > 0 {
			b.Logf("run %d: %d messages still pending a minute after the last commit", run, res.Pending)
		}
	}
	b.StopTimer()
	total := float64(events * b.N)
	b.ReportMetric(total/wall, "events/s")
	b.ReportMetric(cpu/total*1e6, "cpu-us/event")
	b.ReportMetric(kib2mib(peakKiB), "peak-rss-MiB")
	b.ReportMetric(kib2mib(baseKiB), "base-rss-MiB")
	b.ReportMetric(kib2mib(idleKiB), "idle-rss-MiB")
	b.ReportMetric(float64(messages)/total, "messages/event")
	b.ReportMetric(wall/float64(b.N), "wall-s")
	b.Logf("nomad replay: %d events (%d×%d, %d batches, %d handed to the engine) in %.2fs: %.0f events/s, %.1f µs CPU/event (%.2f cores); RSS peak %.1f MiB, baseline %.1f MiB (HWM %.1f before the stream), idle %.1f MiB; %d messages (%.4f/event), outbox drained %.2fs after the last commit",
		int(total), s.reps, s.events()/s.reps, batches, consumed, wall, total/wall, cpu/total*1e6, cpu/wall,
		kib2mib(peakKiB), kib2mib(baseKiB), kib2mib(hwm0), kib2mib(idleKiB), messages, float64(messages)/total, drain)
}

// BenchmarkNomadReplayPlainReader is the floor of BenchmarkNomadReplay:
// the same stream from the same server, read by nothing more than bufio
// lines and json.Unmarshal into a map, in this process (events/s). Vigie's
// pipeline should be well below it; if not, the server or the loopback is
// the bottleneck of the measure. server-events/s is the same read without
// the decoding: what the server and the loopback can carry.
func BenchmarkNomadReplayPlainReader(b *testing.B) {
	s := newReplayStream(b, *replayReps)
	srv := newReplayServer(b, s)
	total := s.events()
	var bytes int64
	var decoding, plain time.Duration
	b.ResetTimer()
	for range b.N {
		for _, decode := range []bool{false, true} {
			srv.reset()
			start := time.Now()
			n, err := plainRead(b.Context(), srv.URL, s, decode)
			if err != nil {
				b.Fatal(err)
			}
			if decode {
				decoding += time.Since(start)
				bytes += n
			} else {
				plain += time.Since(start)
			}
		}
	}
	b.StopTimer()
	rate := float64(total*b.N) / decoding.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(float64(bytes)/1e6/decoding.Seconds(), "MB/s")
	b.ReportMetric(float64(total*b.N)/plain.Seconds(), "server-events/s")
	b.Logf("plain reader: %d events, %.1f MB per stream: %.0f events/s, %.0f MB/s decoding into maps; %.0f events/s, %.0f MB/s only splitting lines",
		total, float64(bytes)/float64(b.N)/1e6, rate, float64(bytes)/1e6/decoding.Seconds(),
		float64(total*b.N)/plain.Seconds(), float64(bytes)/1e6/plain.Seconds())
}

// plainRead reads the whole stream from its start, decoding each frame
// into a map if decode, else counting its frames by their lines, and
// returns the bytes read.
func plainRead(ctx context.Context, url string, s *replayStream, decode bool) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, *childTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/event/stream?index=0", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var n int64
	total, frames := s.events(), len(s.templates)*s.reps
	events := 0
	var buf []byte
	for events < total && frames > 0 {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		if err == bufio.ErrBufferFull {
			buf = append(buf[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				n += int64(len(line))
				buf = append(buf, line...)
			}
			line = buf
		}
		if err != nil {
			return n, fmt.Errorf("after %d events: %w", events, err)
		}
		if !decode {
			if len(line) > 3 { // not a heartbeat
				frames--
			}
			continue
		}
		var frame map[string]any
		if err := json.Unmarshal(line, &frame); err != nil {
			return n, err
		}
		if evs, ok := frame["Events"].([]any); ok {
			events += len(evs)
		}
	}
	return n, nil
}

// TestReplayChild is the child of BenchmarkNomadReplay; it runs only
// when the benchmark starts it.
func TestReplayChild(t *testing.T) {
	url := childEnv(t, envReplayURL)
	var finalIndex uint64
	var finalOffset int
	if _, err := fmt.Sscanf(os.Getenv(envReplayFinal), "%d/%d", &finalIndex, &finalOffset); err != nil {
		t.Fatalf("%s: %v", envReplayFinal, err)
	}
	runChild(t, os.Getenv(envReplayData), envReplayCPUProfile, envReplayMemProfile,
		func(ctx context.Context, c *childSide, p *pipeline, _ <-chan string) *observer {
			obs := newObserver(p.engine, "nomad", finalIndex, finalOffset)
			n := p.cfg.Nomad
			w := watchers.NewNomad(watchers.NomadConfig{
				Address: url, Region: n.Region, Token: n.Token.Reveal(), Namespaces: n.Namespaces, Topics: n.Topics,
				StreamTimeout: n.StreamTimeout.Duration, HTTPClient: firstByteClient(obs.markStart),
			}, p.store)
			c.startCPUProfile()
			p.watch(ctx, obs, w)
			go progressLoop(ctx, c, obs)
			select {
			case <-obs.done:
			case <-ctx.Done():
				c.fail("no commit at index %d offset %d before the child's deadline: %v", finalIndex, finalOffset, ctx.Err())
			}
			c.say(kindReached, obs.progress())
			return obs
		})
}

// firstByteClient is the watcher's default HTTP client (watchers.NewNomad)
// whose event stream bodies call mark on their first byte.
func firstByteClient(mark func()) *http.Client {
	return &http.Client{Transport: firstByteTransport{mark: mark, base: watchers.NomadTransport(nil)}}
}

type firstByteTransport struct {
	base http.RoundTripper
	mark func()
}

func (t firstByteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil && req.URL.Path == "/v1/event/stream" {
		resp.Body = &firstByteBody{ReadCloser: resp.Body, mark: t.mark}
	}
	return resp, err
}

// firstByteBody calls mark on the first byte read.
type firstByteBody struct {
	io.ReadCloser
	mark func()
	seen bool
}

func (b *firstByteBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 && !b.seen {
		b.seen = true
		b.mark()
	}
	return n, err
}

// TestReplayStream checks the generator against fakenomad.Reindex: every
// frame is the captured one moved to its index, and the indexes never go
// back.
func TestReplayStream(t *testing.T) {
	s := newReplayStream(t, 3)
	frames := fakenomad.CaptureFrames()
	var last uint64
	events := 0
	for rep := range s.reps {
		for i, f := range frames {
			index := s.frameIndex(rep, i)
			if index < last {
				t.Fatalf("rep %d frame %d: index %d after %d", rep, i, index, last)
			}
			last = index
			got := string(s.appendFrame(nil, rep, i))
			if want := fakenomad.Reindex(f, index); got != want {
				t.Fatalf("rep %d frame %d:\n got %.200s\nwant %.200s", rep, i, got, want)
			}
			events += s.templates[i].events
		}
	}
	if events != s.events() || s.events() != 3*112 {
		t.Errorf("events: counted %d, events() %d, want %d", events, s.events(), 3*112)
	}
	if idx, off := s.final(); idx != last || off != 1 {
		t.Errorf("final = %d/%d, want %d/1", idx, off, last)
	}
	for _, tc := range []struct {
		index   uint64
		rep, at int
	}{{0, 0, 0}, {8, 0, 0}, {11, 0, 3}, {66, 1, 0}, {last, 2, len(frames) - 1}, {last + 1, 3, 0}} {
		if rep, at := s.startAt(tc.index); rep != tc.rep || at != tc.at {
			t.Errorf("startAt(%d) = %d, %d; want %d, %d", tc.index, rep, at, tc.rep, tc.at)
		}
	}
}
