package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a test server's process (Dendrite, slapd): run in its own
// process group with its output appended to a log file, killed with its
// group by Stop.
type process struct {
	name    string // in messages
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
}

// start runs cmd (in a process group of its own, with what SysProcAttr it
// has, such as a user to run as) and polls ready every 25ms until it
// reports nil, the process exits, or timeout passes.
func (p *process) start(cmd *exec.Cmd, timeout time.Duration, ready func() error) error {
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own copy of the descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // so Stop kills anything it spawns
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the exit status is in the log; we only need the reap
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New(p.name + " exited before becoming ready")
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
	}
}

// startRetrying calls launch until it succeeds, retrying twice when the
// log says a port picked free was taken before the server bound it: that
// race is worth a retry, nothing else is.
func (p *process) startRetrying(t testing.TB, launch func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := launch()
		if err == nil {
			return
		}
		p.Stop()
		if attempt < 3 && strings.Contains(strings.ToLower(p.LogTail(10)), "address already in use") {
			continue
		}
		t.Fatalf("%s did not start: %v\n%s", p.name, err, p.LogTail(40))
	}
}

// stopAtCleanup stops the server when the test ends, showing its log if
// the test failed.
func (p *process) stopAtCleanup(t testing.TB) {
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", p.logPath, p.LogTail(60))
		}
	})
}

// Stop kills the server (SIGKILL to its process group: its data is
// disposable) and waits for it to exit. The log file stays. Safe to call
// more than once; also called at cleanup.
func (p *process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// LogTail returns the last n lines of the server's log.
func (p *process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	return tail(b, n)
}
