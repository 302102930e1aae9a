package backups

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// source is what one target backs up, for one run: it opens the streams
// of a backup and, once they are all read, says what the source held.
type source interface {
	parts(ctx context.Context) ([]part, error)
	facts() Facts
}

// part is one stream of a backup.
type part struct {
	ext      string // object name extension: "dump", "app.dump", "globals.sql", "snap"
	kind     string // partDump, partGlobals, partSnapshot
	database string
	// open starts the stream. Reading it to EOF means the producer
	// succeeded; its failure is the read error. Close releases it.
	open func(ctx context.Context) (io.ReadCloser, error)
}

// ToolError is a command-line tool (pg_dump, pg_restore) that failed; its
// stderr tail goes to the incident's thread.
type ToolError struct {
	Tool   string
	Status string // "exit status 1", "signal: killed"
	Stderr string // the end of its standard error
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s failed (%s)", e.Tool, e.Status)
	if last := lastLine(e.Stderr); last != "" {
		msg += ": " + last
	}
	return msg
}

// Detail is what the tool said, for the thread of the incident.
func (e *ToolError) Detail() string { return e.Stderr }

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// stderrTail keeps the last bytes a tool wrote to stderr.
type stderrTail struct {
	mu  sync.Mutex
	buf []byte
}

const stderrKeep = 4096

func (t *stderrTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*stderrKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-stderrKeep:]...)
	}
	return len(p), nil
}

func (t *stderrTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > stderrKeep {
		b = b[len(b)-stderrKeep:]
	}
	return string(bytes.ToValidUTF8(b, nil))
}

// toolEnv is the environment of the PostgreSQL tools: Vigie's, without
// any PG* variable of the operator's shell, plus what the run sets (the
// password file, the SSL mode).
func toolEnv(set map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	for k, v := range set {
		env = append(env, k+"="+v)
	}
	return env
}

// toolOutput is a running tool's standard output. Its read error at the
// end is the tool's failure, so a dump that dies mid-way fails the upload
// rather than storing a truncated file.
type toolOutput struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *stderrTail
	tool   string
	waited bool
	err    error
}

// startTool runs a tool and streams its standard output.
func startTool(ctx context.Context, path string, args []string, env []string) (*toolOutput, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	t := &toolOutput{cmd: cmd, stderr: &stderrTail{}, tool: toolName(path)}
	cmd.Stderr = t.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	t.out = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot run %s: %w", path, err)
	}
	return t, nil
}

func toolName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func (t *toolOutput) Read(p []byte) (int, error) {
	n, err := t.out.Read(p)
	if errors.Is(err, io.EOF) {
		if werr := t.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// wait reaps the tool once and turns a failure into a ToolError.
func (t *toolOutput) wait() error {
	if t.waited {
		return t.err
	}
	t.waited = true
	if err := t.cmd.Wait(); err != nil {
		t.err = &ToolError{Tool: t.tool, Status: err.Error(), Stderr: t.stderr.String()}
	}
	return t.err
}

// Close stops the tool if it still runs and reaps it.
func (t *toolOutput) Close() error {
	if !t.waited && t.cmd.Process != nil {
		_ = t.cmd.Process.Kill() // not read to the end: the run failed elsewhere
	}
	_ = t.wait()
	return nil
}
