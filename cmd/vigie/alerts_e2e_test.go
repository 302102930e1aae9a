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

// alertConfig writes a config watching the fakes, with fast timers; reads
// (alerts) are open to the console's user, as there is no directory.
func alertConfig(t *testing.T, dir, nomadURL, consulURL, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "vigie.toml")
	body := fmt.Sprintf(`data_dir = %q
[log]
level = "debug"
format = "json"
[policy]
read_open = true
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

// alertConsole is "vigie console" watching the fakes, with the frames of
// the capture before captureStart in Nomad's buffer.
type alertConsole struct {
	nomad  *fakenomad.Server
	consul *fakeconsul.Server
	stdin  io.WriteCloser
	out    *lineReader
	cmd    *exec.Cmd
	stderr *strings.Builder
}

// startAlertConsole starts the console and waits until its watchers are
// connected (Nomad's stream open: its start index is then taken). extra
// goes in the config's [alerts] section.
func startAlertConsole(t *testing.T, extra string) *alertConsole {
	t.Helper()
	c := &alertConsole{
		nomad:  fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: fakenomad.CaptureFrames()[:captureStart]}),
		consul: fakeconsul.New(),
		stderr: &strings.Builder{},
	}
	t.Cleanup(c.consul.Close)
	c.cmd = exec.Command(vigieBinary(t), "console", "--config", alertConfig(t, t.TempDir(), c.nomad.URL, c.consul.URL, extra))
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill() })
	c.out = readLines(stdout)
	waitRequests(t, func() bool {
		return slices.ContainsFunc(c.nomad.Requests(), func(r string) bool { return strings.HasPrefix(r, "/v1/event/stream") }) &&
			len(c.consul.Requests()) > 0
	})
	return c
}

// end closes the console's input and waits for it to exit.
func (c *alertConsole) end(t *testing.T) {
	t.Helper()
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("console exited with %v\nstderr:\n%s", err, c.stderr.String())
	}
	t.Logf("console output:\n%s", c.out.text())
}

// The captured scenario, replayed live by the fakes, as the console shows it.
func TestConsoleShowsAlertsFromNomadAndConsul(t *testing.T) {
	t.Parallel()
	c := startAlertConsole(t, "")
	c.nomad.Append(fakenomad.CaptureFrames()[captureStart:]...)
	c.consul.ExpireTTL()

	c.out.waitFor(t, 20*time.Second,
		"🔴 CRITICAL · crasher/crasher: allocations failing",
		"task boom exited with code 1",
		"crashing on purpose", // its stderr, in the thread
		"🔴 CRITICAL · crasher: deployment failed",
		"ℹ️ Job crasher stopped",
		"✅ RESOLVED · crasher/crasher: allocations failing",
		"TTL expired",
	)
	fmt.Fprintln(c.stdin, "alerts")
	c.out.waitFor(t, 10*time.Second, "open incident(s)")
	c.end(t)
	text := c.out.text()
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
	t.Parallel()
	c := startAlertConsole(t, `blind_after = "1s"`)
	stopped := time.Now()
	c.nomad.Stop()
	c.out.waitFor(t, 20*time.Second, "🔴 CRITICAL · Vigie cannot see Nomad since", "connection refused", c.nomad.URL)
	t.Logf("FIGURE Nomad stopped → blind incident shown (blind_after 1s): %v", time.Since(stopped))
	fmt.Fprintln(c.stdin, "alerts")
	c.out.waitFor(t, 10*time.Second, "What Vigie cannot see, it cannot alert on", "1 open incident(s)")

	// A new agent whose history ends at index 9, below the 11 Vigie read.
	frames := fakenomad.CaptureFrames()
	restarted := time.Now()
	if err := c.nomad.Restart(frames[:2]...); err != nil {
		t.Fatal(err)
	}
	c.out.waitFor(t, 30*time.Second, "Nomad's history restarted at index 9; resuming from there", "✅ RESOLVED · Vigie cannot see Nomad")
	t.Logf("FIGURE Nomad back with a lower index → notice and resolution shown: %v (reconnection backoff included)", time.Since(restarted))
	// It follows the new cluster from there: the crasher failing is news.
	c.nomad.Append(fakenomad.Reindex(frameAt(t, frames, 23), 10))
	c.out.waitFor(t, 20*time.Second, "🔴 CRITICAL · crasher/crasher: allocations failing")
	c.end(t)
}

// Consul turning ACLs on with a deny policy answers Vigie (no token)
// with an empty list and no error: the room is told that Vigie sees only
// part of Consul, and told again when it sees all of it.
func TestConsoleSaysWhatConsulHides(t *testing.T) {
	t.Parallel()
	c := startAlertConsole(t, "")
	c.consul.SetToken("management-only")
	c.out.waitFor(t, 20*time.Second, "Vigie sees only part of Consul", "the anonymous token", c.consul.URL)
	fmt.Fprintln(c.stdin, "alerts")
	c.out.waitFor(t, 10*time.Second, "🟠 Vigie sees only part of Consul: Consul's default ACL policy is deny")
	c.consul.SetToken("")
	c.out.waitFor(t, 20*time.Second, "RESOLVED · Vigie sees only part of Consul", "Vigie sees all of Consul again")
	c.end(t)
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
	t.Parallel()
	c := startAlertConsole(t, "")
	c.nomad.Append(fakenomad.RestartLoopFrames()...)
	c.out.waitFor(t, 20*time.Second,
		"🟠 WARNING · looper/looper: task boom restarting",
		"task boom restarted 2 times, last exited with code 1",
		"task boom restarted 3 times, last exited with code 1 — Exceeded allowed attempts, applying a delay",
	)

	if err := c.consul.AddMaintenance("vm", ""); err != nil {
		t.Fatal(err)
	}
	c.out.waitFor(t, 20*time.Second, "ℹ️ INFO · node vm in maintenance", "reason: no reason given")
	if err := c.consul.UpdateCheck("vm", "chatops-ttl", "critical", "TTL expired"); err != nil {
		t.Fatal(err)
	}
	// Held, not posted: "alerts" lists it once the watcher has seen it.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(c.out.text(), "held during the maintenance of node vm") {
		if time.Now().After(deadline) {
			t.Fatalf("the failing check is not held:\n%s", c.out.text())
		}
		fmt.Fprintln(c.stdin, "alerts")
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(c.out.text(), "CRITICAL · check chatops TTL demo") {
		t.Fatalf("a check under maintenance was posted:\n%s", c.out.text())
	}
	c.consul.RemoveMaintenance("vm", "")
	c.out.waitFor(t, 20*time.Second,
		"✅ RESOLVED · node vm in maintenance",
		"critical: TTL expired (still failing after the maintenance of node vm ended)",
	)
	c.end(t)
	if text := c.out.text(); strings.Count(text, "] 🟠 WARNING · looper/looper") != 1 || strings.Contains(text, "Firing again") {
		t.Errorf("the restart loop is not one message:\n%s", text)
	}
}
