package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/testenv"
)

// The end-to-end tests run the real binary, built once per test run into
// binDir (removed by TestMain), so that a SIGKILL kills exactly what an
// operator would run.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	// Tests reach only the servers they start: a shell set up for the
	// operator's clusters (NOMAD_ADDR, NOMAD_TOKEN, CONSUL_HTTP_ADDR,
	// VIGIE_CONFIG...) must not steer them, nor the binaries they run.
	testenv.IsolateEnv()
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func vigieBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "vigie-e2e-bin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "vigie")
		args := []string{"build", "-tags", "goolm", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// botProcess is one run of "vigie run". It lives until the test that
// started it ends, even when driven from subtests, so its methods take the
// calling test.
type botProcess struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	started time.Time
}

func startBot(t *testing.T, configPath string) *botProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "vigie.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vigieBinary(t), "run", "--config", configPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "VIGIE_MATRIX_ACCESS_TOKEN=", "VIGIE_MATRIX_PASSWORD=", "VIGIE_MATRIX_PICKLE_KEY=")
	p := &botProcess{cmd: cmd, logPath: logPath, exited: make(chan struct{}), started: time.Now()}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("vigie log tail (%s):\n%s", logPath, p.logTail(40))
		}
	})
	return p
}

func (p *botProcess) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop ends the process gracefully and expects exit status 0.
func (p *botProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("vigie did not stop on SIGTERM\n%s", p.logTail(20))
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("vigie exited %d after SIGTERM\n%s", code, p.logTail(20))
	}
}

// kill is a crash: SIGKILL, no chance to clean up.
func (p *botProcess) kill() {
	if p.running() {
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *botProcess) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("vigie still running after %s\n%s", timeout, p.logTail(20))
		return -1
	}
}

func (p *botProcess) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *botProcess) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.log(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitReady polls /readyz: the store is open and a Matrix sync completed.
func (p *botProcess) waitReady(t *testing.T, listen string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			t.Fatalf("vigie exited with %d before being ready\n%s", p.cmd.ProcessState.ExitCode(), p.logTail(30))
		}
		resp, err := http.Get("http://" + listen + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("vigie not ready after 90s\n%s", p.logTail(30))
	return 0
}

// rssKiB reads the resident set size of the process.
func (p *botProcess) rssKiB() int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var kb int
		if _, err := fmt.Sscanf(s.Text(), "VmRSS: %d kB", &kb); err == nil {
			return kb
		}
	}
	return -1
}

func metricsText(t *testing.T, listen string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listen+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
