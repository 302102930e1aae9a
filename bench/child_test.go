//go:build linux

package bench

// Helpers of the benchmarks that run Vigie's pipeline in a child process
// (the test binary run again with -test.run naming a child test), so that
// the peak RSS and the CPU time measured are the pipeline's alone, not
// those of the fake servers and of the benchmark around it.
//
// The child speaks on its stdout in lines starting with childPrefix,
// "<prefix><kind> <JSON>"; it reads commands on its stdin, one per line,
// and exits when its stdin ends, so that it never outlives its parent.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
	"github.com/vigie/vigie/watchers"
)

var childTimeout = flag.Duration("bench.child-timeout", 5*time.Minute,
	"how long a child pipeline may take to reach the end of its workload before the benchmark fails")

// childPrefix starts the lines of the child's protocol on its stdout.
const childPrefix = "vigie-bench: "

// Message kinds of the child.
const (
	kindReady    = "ready"    // the pipeline is wired, baseline figures: childReady
	kindProgress = "progress" // every second: childProgress
	kindConsumed = "consumed" // the engine committed a batch of the watched source: childProgress
	kindMarked   = "marked"   // answer to the "mark" command
	kindResult   = "result"   // the end: childResult
	kindFailed   = "failed"   // the child gives up: a string
)

// childReady is what the child says once wired, before its watcher starts.
type childReady struct {
	RSSKiB int // VmRSS
	HWMKiB int // VmHWM so far (the store's migrations included)
}

// childProgress is the last batch of the watched source the engine
// committed.
type childProgress struct {
	Index  uint64
	Offset int
	Events int64 // events of the source handed to the engine so far
}

// childResult is the child's measure of its run.
type childResult struct {
	Events  int64 // events of the watched source the engine consumed in the span
	Batches int64 // their batches (one transaction each)
	// The span: from the first byte of the event stream (Nomad) or from
	// the "mark" command (Consul) to the commit of the last batch.
	WallSeconds float64
	CPUSeconds  float64 // user+system time of the process over the span (getrusage)
	// Memory, in KiB: VmRSS once wired, before the stream; VmHWM at the end
	// (the whole life of the process); VmRSS after the outbox drained, a
	// GC, FreeOSMemory and a second of idling with the watcher connected.
	BaselineRSSKiB int
	PeakRSSKiB     int
	IdleRSSKiB     int
	DrainSeconds   float64 // from the last commit to an empty outbox
	Messages       int     // rows in the outbox, whatever their state
	Pending        int     // of which still pending once drained (0 unless the drain timed out)
	// Go's view at the end, before the idle GC.
	HeapInuseBytes uint64
	GoSysBytes     uint64
	NumGC          uint32
}

// noopTransport is the Matrix transport of the child: delivered at once,
// with an event ID, as the homeserver would answer.
type noopTransport struct{}

func (noopTransport) Deliver(_ context.Context, d outbox.Delivery) (string, error) {
	return "$" + d.TxnID, nil
}

// pipeline is Vigie's alert pipeline wired as cmd/vigie's newApp and
// startAlerts wire it, with the default configuration: the store, the
// incident engine with the built-in rules, the outbox and its Matrix
// sender (delivering to noopTransport), and the watchers' visibility.
type pipeline struct {
	cfg    *config.Config
	store  *store.Store
	engine *incidents.Engine
	vis    *watchers.Visibility
	wg     sync.WaitGroup
}

// startPipeline wires the pipeline in dataDir and starts the engine's
// timers and the sender; stop ends them.
func startPipeline(ctx context.Context, dataDir string) (*pipeline, error) {
	cfg := config.Default()
	st, err := store.Open(ctx, dataDir, nil)
	if err != nil {
		return nil, err
	}
	rules, err := incidents.Rules(cfg.Alerts.DisabledRules, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := cfg.Alerts
	box := outbox.New(st)
	eng := incidents.New(incidents.Config{
		Rules: rules, Routes: []incidents.Route{{Transport: "matrix", Room: "!ops", MinSeverity: incidents.Info}},
		EditInterval: a.EditInterval.Duration, RoomCap: a.RoomCap, ThreadCap: a.ThreadCap,
		FlapWindow: a.FlapWindow.Duration, FlapThreshold: a.FlapThreshold, ReminderInterval: a.ReminderInterval.Duration,
		SettleAfter: a.HealthyAfter.Duration, MaxHold: a.MaxHold.Duration,
		MaxMessageBytes: cfg.Commands.MaxReplyBytes, Waker: box,
	}, st)
	sender := box.NewSender("matrix", st, noopTransport{}, outbox.SenderConfig{
		MinBackoff: cfg.Outbox.MinBackoff.Duration, MaxBackoff: cfg.Outbox.MaxBackoff.Duration,
		GiveUpAfter: cfg.Outbox.GiveUpAfter.Duration,
	}, telemetry.NewMetrics())
	p := &pipeline{cfg: cfg, store: st, engine: eng, vis: watchers.NewVisibility(nil, a.BlindAfter.Duration)}
	p.wg.Go(func() { eng.Run(ctx) })
	p.wg.Go(func() { sender.Run(ctx) }) //nolint:errcheck // ends with ctx
	return p, nil
}

// watch supervises w as cmd/vigie does, handing its batches to sink (the
// engine, observed).
func (p *pipeline) watch(ctx context.Context, sink watchers.Sink, w watchers.Watcher) {
	p.wg.Go(func() {
		watchers.Supervise(ctx, sink, watchers.Backoff{Min: time.Second, Max: time.Minute}, p.vis, w)
	})
}

// stop waits for the goroutines (ctx must be done) and closes the store.
func (p *pipeline) stop() {
	p.wg.Wait()
	p.store.Close()
}

// drain waits until the outbox has no pending message, or for limit.
func (p *pipeline) drain(ctx context.Context, limit time.Duration) (messages, pending int, err error) {
	deadline := time.Now().Add(limit)
	for {
		counts, err := p.store.OutboxCounts(ctx, "matrix")
		if err != nil {
			return 0, 0, err
		}
		messages = 0
		for _, n := range counts {
			messages += n
		}
		pending = counts[store.StatePending]
		if pending == 0 || time.Now().After(deadline) {
			return messages, pending, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// observer is the sink the watcher is given: the engine itself, and after
// each of its commits of a batch of the watched source, a note of where
// the source is. It adds a few loads and stores to each batch, no
// allocation, no I/O unless asked (onCommit).
type observer struct {
	watchers.Sink
	source string
	// done is closed once a batch at or past (finalIndex, finalOffset) has
	// committed; never if finalIndex is 0.
	finalIndex  uint64
	finalOffset int
	done        chan struct{}
	onCommit    func(watchers.Batch) // nil: nothing

	mu         sync.Mutex
	started    bool
	start, end time.Time
	startCPU   time.Duration
	endCPU     time.Duration
	events     int64 // counted from the start mark
	batches    int64
	reachedEnd bool

	// The last committed position, for progress reports.
	index     atomic.Uint64
	offset    atomic.Int64
	allEvents atomic.Int64
}

func newObserver(sink watchers.Sink, source string, finalIndex uint64, finalOffset int) *observer {
	return &observer{Sink: sink, source: source, finalIndex: finalIndex, finalOffset: finalOffset, done: make(chan struct{})}
}

// progress is the last committed position.
func (o *observer) progress() childProgress {
	return childProgress{Index: o.index.Load(), Offset: int(o.offset.Load()), Events: o.allEvents.Load()}
}

// markStart starts the measured span now, if not started yet.
func (o *observer) markStart() {
	now, cpu := time.Now(), cpuTime()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.started {
		o.started, o.start, o.startCPU = true, now, cpu
	}
}

// Consume implements watchers.Sink.
func (o *observer) Consume(ctx context.Context, b watchers.Batch) error {
	if err := o.Sink.Consume(ctx, b); err != nil {
		return err
	}
	if b.Cursor.Name != o.source {
		return nil
	}
	o.allEvents.Add(int64(len(b.Events)))
	o.index.Store(b.Cursor.Index)
	o.offset.Store(int64(b.Cursor.Offset))
	o.mu.Lock()
	if o.started && !o.reachedEnd {
		o.events += int64(len(b.Events))
		o.batches++
	}
	final := !o.reachedEnd && o.finalIndex > 0 &&
		(b.Cursor.Index > o.finalIndex || b.Cursor.Index == o.finalIndex && b.Cursor.Offset >= o.finalOffset)
	if final {
		o.reachedEnd, o.end, o.endCPU = true, time.Now(), cpuTime()
	}
	o.mu.Unlock()
	if final {
		close(o.done)
	}
	if o.onCommit != nil {
		o.onCommit(b)
	}
	return nil
}

// markEnd ends the measured span now, unless a final batch ended it.
func (o *observer) markEnd() {
	now, cpu := time.Now(), cpuTime()
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.reachedEnd {
		o.reachedEnd, o.end, o.endCPU = true, now, cpu
	}
}

// span returns the measured span: events, batches, wall and CPU time.
func (o *observer) span() (events, batches int64, wall, cpu time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.events, o.batches, o.end.Sub(o.start), o.endCPU - o.startCPU
}

// cpuTime is the user+system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusKiB reads fields of /proc/self/status given in kB (VmRSS,
// VmHWM, …).
func procStatusKiB(fields ...string) (map[string]int, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, f := range fields {
			if k == f {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				if err != nil {
					return nil, fmt.Errorf("/proc/self/status %s: %w", k, err)
				}
				out[k] = n
			}
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("no %s in /proc/self/status", f)
		}
	}
	return out, nil
}

// childSide is the child's half of the protocol.
type childSide struct {
	t          *testing.T
	out        *bufio.Writer
	mu         sync.Mutex
	cpuProfile string   // file to write the CPU profile to, "" for none
	profiling  *os.File // the profile being written
}

func (c *childSide) say(kind string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.out, "%s%s %s\n", childPrefix, kind, b)
	c.out.Flush()
}

// startCPUProfile starts the CPU profile if one was asked for.
func (c *childSide) startCPUProfile() {
	if c.cpuProfile == "" || c.profiling != nil {
		return
	}
	f, err := os.Create(c.cpuProfile)
	if err != nil {
		c.fail("cpu profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		c.fail("cpu profile: %v", err)
	}
	c.profiling = f
}

// stopCPUProfile ends the CPU profile, if started.
func (c *childSide) stopCPUProfile() {
	if c.profiling == nil {
		return
	}
	pprof.StopCPUProfile()
	if err := c.profiling.Close(); err != nil {
		c.fail("cpu profile: %v", err)
	}
	c.profiling = nil
}

// fail tells the parent why the child gives up, then fails the test.
func (c *childSide) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.say(kindFailed, msg)
	c.t.Fatal(msg)
}

// childEnv returns the environment variable name, or skips the test when
// it is unset: child tests run only when a benchmark starts them.
func childEnv(t *testing.T, name string) string {
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("runs only as the child process of a benchmark (%s unset)", name)
	}
	return v
}

// runChild is the common life of a child: the logger cmd/vigie would have
// (info level, JSON on stderr), the pipeline wired in dataDir, commands
// read from stdin (cmds gets them; the child exits when its stdin ends),
// the baseline RSS said once wired. run starts the watcher and returns
// its observer once the measured span has ended. When cpuProfileEnv names
// a file, run starts the CPU profile (c.startCPUProfile) when its span
// starts, and it stops as run returns; when memProfileEnv names one, the
// heap profile is taken as run returns. Then finish measures the rest and
// says the result.
func runChild(t *testing.T, dataDir, cpuProfileEnv, memProfileEnv string,
	run func(ctx context.Context, c *childSide, p *pipeline, cmds <-chan string) *observer) {
	c := &childSide{t: t, out: bufio.NewWriter(os.Stdout), cpuProfile: os.Getenv(cpuProfileEnv)}
	log := zerolog.New(zerolog.SyncWriter(os.Stderr)).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	ctx, cancel := context.WithTimeout(log.WithContext(context.Background()), *childTimeout+time.Minute)
	defer cancel()

	cmds := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
		// The parent is gone, or done with us: never linger.
		fmt.Fprintln(os.Stderr, "child: stdin closed; exiting")
		os.Exit(3)
	}()

	p, err := startPipeline(ctx, dataDir)
	if err != nil {
		c.fail("wire the pipeline: %v", err)
	}
	defer func() {
		cancel()
		p.stop()
	}()
	mem, err := procStatusKiB("VmRSS", "VmHWM")
	if err != nil {
		c.fail("%v", err)
	}
	c.say(kindReady, childReady{RSSKiB: mem["VmRSS"], HWMKiB: mem["VmHWM"]})
	defer c.stopCPUProfile() // should run fail
	obs := run(ctx, c, p, cmds)
	c.stopCPUProfile()
	if path := os.Getenv(memProfileEnv); path != "" {
		f, err := os.Create(path)
		if err == nil {
			err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
		}
		if err != nil {
			c.fail("heap profile: %v", err)
		}
	}
	finish(ctx, c, p, obs, mem["VmRSS"])
}

// finish measures the end of a run whose span obs has closed and says the
// result: drain the outbox, the peak RSS, then the idle RSS.
func finish(ctx context.Context, c *childSide, p *pipeline, obs *observer, baselineRSSKiB int) {
	events, batches, wall, cpu := obs.span()
	drainStart := time.Now()
	messages, pending, err := p.drain(ctx, time.Minute)
	if err != nil {
		c.fail("outbox counts: %v", err)
	}
	drained := time.Since(drainStart)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mem, err := procStatusKiB("VmHWM")
	if err != nil {
		c.fail("%v", err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(time.Second)
	idle, err := procStatusKiB("VmRSS")
	if err != nil {
		c.fail("%v", err)
	}
	c.say(kindResult, childResult{
		Events: events, Batches: batches, WallSeconds: wall.Seconds(), CPUSeconds: cpu.Seconds(),
		BaselineRSSKiB: baselineRSSKiB, PeakRSSKiB: mem["VmHWM"], IdleRSSKiB: idle["VmRSS"],
		DrainSeconds: drained.Seconds(), Messages: messages, Pending: pending,
		HeapInuseBytes: ms.HeapInuse, GoSysBytes: ms.Sys, NumGC: ms.NumGC,
	})
}

// progressLoop says where the source is every second until ctx ends.
func progressLoop(ctx context.Context, c *childSide, obs *observer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.say(kindProgress, obs.progress())
		}
	}
}

// child is the parent's handle on a child process.
type child struct {
	b      *testing.B
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	msgs   chan childMsg // closed when the child's stdout ends
	stderr *tailBuffer
	cancel context.CancelFunc
	exited chan struct{}
	err    error // of Wait, once exited is closed
	last   childProgress
	// goals describe what the parent awaits, by message kind, for the
	// message of a timeout.
	goals map[string]string
}

type childMsg struct {
	kind string
	data json.RawMessage
}

// startChild runs the test binary again with -test.run=^test$ and env
// added to the environment. The child is killed when the benchmark ends,
// when the parent dies (SIGKILL on the parent's death, and the child
// exits when its stdin closes) and on stop.
func startChild(b *testing.B, test string, env ...string) *child {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1",
		"-test.timeout="+(*childTimeout+2*time.Minute).String(), "-bench.child-timeout="+childTimeout.String())
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	c := &child{b: b, name: test, cmd: cmd, msgs: make(chan childMsg, 64), stderr: &tailBuffer{max: 64 << 10},
		cancel: cancel, exited: make(chan struct{}), goals: map[string]string{}}
	cmd.Stderr = c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatalf("start the child %s: %v", test, err)
	}
	b.Cleanup(c.stop)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), childPrefix)
			if !ok {
				continue // "PASS" and the like
			}
			kind, data, _ := strings.Cut(line, " ")
			c.msgs <- childMsg{kind, json.RawMessage(data)}
		}
		close(c.msgs)
		c.err = cmd.Wait()
		close(c.exited)
	}()
	return c
}

// stop ends the child (closing its stdin, then killing it if it still
// runs 3 s later) and waits for it.
func (c *child) stop() {
	c.drain()
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(3 * time.Second):
	}
	c.cancel()
	<-c.exited
}

// drain discards what the child says from now on, so that the reader of
// its stdout never blocks.
func (c *child) drain() {
	go func() {
		for range c.msgs {
		}
	}()
}

// send writes a command line to the child.
func (c *child) send(cmd string) {
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		c.fatalf("send %q to the child: %v", cmd, err)
	}
}

// fatalf fails the benchmark with what the child said last on stderr.
func (c *child) fatalf(format string, args ...any) {
	c.b.Helper()
	c.cancel()
	c.drain()
	exit := "did not exit within 5s of SIGKILL"
	select {
	case <-c.exited:
		exit = fmt.Sprint(c.err)
	case <-time.After(5 * time.Second):
	}
	c.b.Fatalf("%s (child %s; last progress: index %d offset %d, %d events consumed; exit: %s)\n--- child stderr (tail) ---\n%s",
		fmt.Sprintf(format, args...), c.name, c.last.Index, c.last.Offset, c.last.Events, exit, c.stderr.String())
}

// await returns the next message of kind, decoded into v, noting progress
// on the way; it fails the benchmark on a failure of the child, its exit,
// or at deadline. consumed, if not nil, is told of every consumed batch.
func (c *child) await(kind string, v any, deadline time.Time, consumed func(childProgress)) {
	c.b.Helper()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				c.fatalf("the child exited before saying %q", kind)
			}
			switch m.kind {
			case kindFailed:
				var msg string
				_ = json.Unmarshal(m.data, &msg)
				c.fatalf("the child failed: %s", msg)
			case kindProgress, kindConsumed:
				var p childProgress
				if err := json.Unmarshal(m.data, &p); err == nil {
					c.last = p
					if m.kind == kindConsumed && consumed != nil {
						consumed(p)
					}
				}
			}
			if m.kind == kind {
				if v != nil {
					if err := json.Unmarshal(m.data, v); err != nil {
						c.fatalf("child's %s: %v", kind, err)
					}
				}
				return
			}
		case <-timer.C:
			goal := c.goals[kind]
			if goal == "" {
				goal = fmt.Sprintf("its %q", kind)
			}
			c.fatalf("the child did not reach %s within the timeout (-bench.child-timeout %s)", goal, *childTimeout)
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}

func kib2mib(k int) float64 { return float64(k) / 1024 }
