package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
)

// captureStart is how many captured frames exist before Vigie's first
// start (the node registering, indexes 8 to 10): the stream then begins
// after them, and the rest of the scenario happens while Vigie watches.
const captureStart = 3

// lineReader collects a process's output lines as they come.
type lineReader struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func readLines(r io.Reader) *lineReader {
	l := &lineReader{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		s := bufio.NewScanner(r)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for s.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, s.Text())
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *lineReader) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *lineReader) waitFor(t *testing.T, timeout time.Duration, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := l.text()
		missing := ""
		for _, w := range wants {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("output lacks %q after %s:\n%s", missing, timeout, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alertConfig writes a config watching the fakes, with fast timers.
func alertConfig(t *testing.T, dir, nomadURL, consulURL, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "vigie.toml")
	body := fmt.Sprintf(`data_dir = %q
[log]
level = "debug"
format = "json"
[nomad]
address = %q
stream_timeout = "3s"
[consul]
address = %q
wait = "2s"
min_interval = "10ms"
[alerts]
edit_interval = "200ms"
%s`, filepath.Join(dir, "data"), nomadURL, consulURL, extra)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The captured scenario, replayed live by the fakes, as the console shows it.
func TestConsoleShowsAlertsFromNomadAndConsul(t *testing.T) {
	frames := fakenomad.CaptureFrames()
	nomad := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames[:captureStart]})
	consul := fakeconsul.New()
	defer consul.Close()
	dir := t.TempDir()
	cmd := exec.Command(vigieBinary(t), "console", "--config", alertConfig(t, dir, nomad.URL, consul.URL, ""))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := readLines(stdout)

	// Wait until the watchers are connected (Nomad's stream open: its start
	// index is then taken), then let the scenario happen.
	waitRequests(t, func() bool {
		return slices.ContainsFunc(nomad.Requests(), func(r string) bool { return strings.HasPrefix(r, "/v1/event/stream") }) &&
			len(consul.Requests()) > 0
	})
	nomad.Append(frames[captureStart:]...)
	consul.ExpireTTL()

	out.waitFor(t, 20*time.Second,
		"🔴 CRITICAL · crasher/crasher: allocations failing",
		"task boom exited with code 1",
		"crashing on purpose", // its stderr, in the thread
		"🔴 CRITICAL · crasher: deployment failed",
		"ℹ️ Job crasher stopped",
		"✅ RESOLVED · crasher/crasher: allocations failing",
		"TTL expired",
	)
	fmt.Fprintln(stdin, "alerts")
	out.waitFor(t, 10*time.Second, "open incident(s)")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("console exited with %v\nstderr:\n%s", err, stderr.String())
	}
	text := out.text()
	// The normal web replacements during its deployment and the drain never alert.
	for _, never := range []string{"web/web: allocations failing", "exit code 130"} {
		if strings.Contains(text, never) {
			t.Errorf("output contains %q:\n%s", never, text)
		}
	}
	// One message per incident: its title appears once as a new message.
	if n := strings.Count(text, "\n🔴 CRITICAL · crasher/crasher: allocations failing"); n > 1 {
		t.Errorf("incident posted %d times:\n%s", n, text)
	}
	t.Logf("console output:\n%s", text)
}

func waitRequests(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("the watchers never called the fakes")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// When Nomad goes away, the room is told within the grace period, and when
// it comes back as a new cluster (a lower index), Vigie says its history
// restarted, follows it from there and sees it again.
func TestConsoleSaysWhenItCannotSee(t *testing.T) {
	frames := fakenomad.CaptureFrames()
	nomad := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames[:captureStart]})
	consul := fakeconsul.New()
	defer consul.Close()
	dir := t.TempDir()
	cmd := exec.Command(vigieBinary(t), "console", "--config", alertConfig(t, dir, nomad.URL, consul.URL, `blind_after = "1s"`))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := readLines(stdout)
	waitRequests(t, func() bool {
		return slices.ContainsFunc(nomad.Requests(), func(r string) bool { return strings.HasPrefix(r, "/v1/event/stream") })
	})

	nomad.Stop()
	out.waitFor(t, 20*time.Second, "🔴 CRITICAL · Vigie cannot see Nomad since", "connection refused", nomad.URL)
	fmt.Fprintln(stdin, "alerts")
	out.waitFor(t, 10*time.Second, "What Vigie cannot see, it cannot alert on", "1 open incident(s)")

	// A new agent whose history ends at index 9, below the 11 Vigie read.
	if err := nomad.Restart(frames[:2]...); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 30*time.Second, "Nomad's history restarted at index 9; resuming from there", "✅ RESOLVED · Vigie cannot see Nomad")
	// It follows the new cluster from there: the crasher failing is news.
	nomad.Append(fakenomad.Reindex(frameAt(t, frames, 23), 10))
	out.waitFor(t, 20*time.Second, "🔴 CRITICAL · crasher/crasher: allocations failing")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("console exited with %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("console output:\n%s", out.text())
}

// frameAt returns the first captured frame at index.
func frameAt(t *testing.T, frames []string, index uint64) string {
	t.Helper()
	for _, f := range frames {
		var head struct{ Index uint64 }
		if err := json.Unmarshal([]byte(f), &head); err == nil && head.Index == index {
			return f
		}
	}
	t.Fatalf("no captured frame at %d", index)
	return ""
}

// A task crash-looping and a node put in maintenance, in Nomad's and
// Consul's own shapes, through the real watchers to the console.
func TestConsoleShowsRestartLoopsAndMaintenance(t *testing.T) {
	frames := fakenomad.CaptureFrames()
	nomad := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames[:captureStart]})
	consul := fakeconsul.New()
	defer consul.Close()
	dir := t.TempDir()
	cmd := exec.Command(vigieBinary(t), "console", "--config", alertConfig(t, dir, nomad.URL, consul.URL, ""))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	out := readLines(stdout)
	waitRequests(t, func() bool {
		return slices.ContainsFunc(nomad.Requests(), func(r string) bool { return strings.HasPrefix(r, "/v1/event/stream") }) &&
			len(consul.Requests()) > 0
	})

	nomad.Append(fakenomad.RestartLoopFrames()...)
	out.waitFor(t, 20*time.Second,
		"🟠 WARNING · looper/looper: task boom restarting",
		"task boom restarted 2 times, last exited with code 1",
		"task boom restarted 3 times, last exited with code 1 — Exceeded allowed attempts, applying a delay",
	)

	if err := consul.AddMaintenance("vm", ""); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, 20*time.Second, "ℹ️ INFO · node vm in maintenance", "reason: no reason given")
	if err := consul.UpdateCheck("vm", "chatops-ttl", "critical", "TTL expired"); err != nil {
		t.Fatal(err)
	}
	// Held, not posted: "alerts" lists it once the watcher has seen it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.text(), "held during the maintenance of node vm") {
		if time.Now().After(deadline) {
			t.Fatalf("the failing check is not held:\n%s", out.text())
		}
		fmt.Fprintln(stdin, "alerts")
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(out.text(), "CRITICAL · check chatops TTL demo") {
		t.Fatalf("a check under maintenance was posted:\n%s", out.text())
	}
	consul.RemoveMaintenance("vm", "")
	out.waitFor(t, 20*time.Second,
		"✅ RESOLVED · node vm in maintenance",
		"critical: TTL expired (still failing after the maintenance of node vm ended)",
	)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("console exited with %v\nstderr:\n%s", err, stderr.String())
	}
	if text := out.text(); strings.Count(text, "] 🟠 WARNING · looper/looper") != 1 || strings.Contains(text, "Firing again") {
		t.Errorf("the restart loop is not one message:\n%s", text)
	}
	t.Logf("console output:\n%s", out.text())
}
