// Package doctor runs "vigie doctor": it connects to everything a
// configuration names (Matrix, Nomad, Consul, LDAP, S3, PostgreSQL) and
// says, one line per check, what works, what does not and how to fix it.
//
// A Check is a component, a name and a probe. Run runs every check at once,
// each under its own timeout, and reports them in the order given, each as
// soon as it and all those before it are done, so the table reads the same
// from one run to the next. A FAIL is something Vigie needs that is broken:
// the exit code says so. Details never hold a secret: the probes do not
// print them, and Run replaces any configured secret that a server or a
// library might echo back.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Status is the verdict of one check.
type Status int

// Statuses, from the best to the worst.
const (
	StatusOK   Status = iota // works
	StatusSkip               // not used by this configuration, or not checkable
	StatusWarn               // works, but something deserves attention
	StatusFail               // something Vigie needs is broken
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusSkip:
		return "skip"
	case StatusWarn:
		return "warn"
	}
	return "FAIL"
}

// MarshalText writes the status as the table shows it.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is what a probe found: a status and a one-line detail, which for
// anything but ok says what failed and how to fix it.
type Result struct {
	Status Status
	Detail string
}

// OK, Warn, Fail and Skip build results with a formatted detail.
func OK(format string, args ...any) Result   { return Result{StatusOK, fmt.Sprintf(format, args...)} }
func Warn(format string, args ...any) Result { return Result{StatusWarn, fmt.Sprintf(format, args...)} }
func Fail(format string, args ...any) Result { return Result{StatusFail, fmt.Sprintf(format, args...)} }
func Skip(format string, args ...any) Result { return Result{StatusSkip, fmt.Sprintf(format, args...)} }

// Check is one line of the report.
type Check struct {
	Component string // "matrix", "nomad", ...
	Name      string // what is checked, e.g. "reachable"
	// Run probes; it must return soon after ctx ends. A check that does
	// not answer within its timeout fails.
	Run func(ctx context.Context) Result
	// Timeout raises Options.Timeout for this check (e.g. a stream whose
	// first line may take a heartbeat interval).
	Timeout time.Duration
}

// Outcome is a check with its result.
type Outcome struct {
	Component string        `json:"component"`
	Check     string        `json:"check"`
	Status    Status        `json:"status"`
	Detail    string        `json:"detail"`
	Took      time.Duration `json:"took_ms"`
}

// MarshalJSON writes Took in milliseconds.
func (o Outcome) MarshalJSON() ([]byte, error) {
	type plain Outcome
	return json.Marshal(struct {
		plain
		Took int64 `json:"took_ms"`
	}{plain(o), o.Took.Milliseconds()})
}

// DefaultTimeout bounds each check when Options.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// grace is how long after its timeout a check that ignores its context is
// waited for before it is declared failed.
const grace = time.Second

// Options tune Run.
type Options struct {
	Timeout time.Duration // per check; 0: DefaultTimeout
	// Secrets are replaced by "[redacted]" wherever they appear in a
	// detail. Values shorter than 4 bytes are left alone: they would
	// redact ordinary words.
	Secrets []string
}

// Run runs the checks concurrently and calls emit with each outcome in
// the order of checks, as soon as that outcome and all before it are
// known. It returns every outcome, in that order.
func Run(ctx context.Context, checks []Check, opts Options, emit func(Outcome)) []Outcome {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	redact := redactor(opts.Secrets)
	out := make([]Outcome, len(checks))
	done := make([]chan struct{}, len(checks))
	for i, c := range checks {
		done[i] = make(chan struct{})
		go func() {
			defer close(done[i])
			timeout := opts.Timeout
			timeout = max(timeout, c.Timeout)
			start := time.Now()
			r := runOne(ctx, c, timeout)
			out[i] = Outcome{Component: c.Component, Check: c.Name, Status: r.Status,
				Detail: redact(oneLine(r.Detail)), Took: time.Since(start)}
		}()
	}
	for i := range checks {
		<-done[i]
		if emit != nil {
			emit(out[i])
		}
	}
	return out
}

// runOne runs a check under its timeout, turning a panic or a probe that
// outlives its context into a failure.
func runOne(ctx context.Context, c Check, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := make(chan Result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				res <- Fail("internal error: %v (please report it)", p)
			}
		}()
		if c.Run == nil {
			res <- Skip("nothing to check")
			return
		}
		res <- c.Run(ctx)
	}()
	select {
	case r := <-res:
		return r
	case <-ctx.Done():
	}
	select {
	case r := <-res:
		return r
	case <-time.After(grace):
		return Fail("no answer within %s", timeout)
	}
}

// redactor replaces the secrets in a string.
func redactor(secrets []string) func(string) string {
	var pairs []string
	for _, s := range secrets {
		if len(s) >= 4 {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	if len(pairs) == 0 {
		return func(s string) string { return s }
	}
	r := strings.NewReplacer(pairs...)
	return r.Replace
}

// oneLine keeps a detail on its line of the table.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "?")
	}
	return strings.Join(strings.Fields(s), " ")
}

// ExitCode is the process's exit status for outcomes: 1 when a check
// failed, 0 otherwise (warnings and skips included).
func ExitCode(outcomes []Outcome) int {
	for _, o := range outcomes {
		if o.Status == StatusFail {
			return 1
		}
	}
	return 0
}

// Counts tallies outcomes per status.
func Counts(outcomes []Outcome) map[Status]int {
	n := map[Status]int{}
	for _, o := range outcomes {
		n[o.Status]++
	}
	return n
}

// Summary is the last line of the table: "2 FAIL, 1 warn, 14 ok, 3 skip".
func Summary(outcomes []Outcome) string {
	n := Counts(outcomes)
	var parts []string
	for _, s := range []Status{StatusFail, StatusWarn, StatusOK, StatusSkip} {
		if n[s] > 0 || s == StatusFail {
			parts = append(parts, fmt.Sprintf("%d %s", n[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// Table writes outcomes as an aligned plain-text table. The widths come
// from the checks, known before any result, so rows can be written as
// they arrive.
type Table struct {
	w             io.Writer
	compW, nameW  int
	statusW       int
	mu            sync.Mutex
	headerWritten bool
}

// NewTable sizes a table for checks.
func NewTable(w io.Writer, checks []Check) *Table {
	t := &Table{w: w, compW: len("COMPONENT"), nameW: len("CHECK"), statusW: len("STATUS")}
	for _, c := range checks {
		t.compW = max(t.compW, utf8.RuneCountInString(c.Component))
		t.nameW = max(t.nameW, utf8.RuneCountInString(c.Name))
	}
	return t
}

// Row writes one outcome, after the header if it is the first.
func (t *Table) Row(o Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.headerWritten {
		t.headerWritten = true
		t.line("COMPONENT", "CHECK", "STATUS", "DETAIL")
	}
	t.line(o.Component, o.Check, o.Status.String(), o.Detail)
}

func (t *Table) line(comp, name, status, detail string) {
	row := pad(comp, t.compW) + "  " + pad(name, t.nameW) + "  " + pad(status, t.statusW) + "  " + detail
	fmt.Fprintln(t.w, strings.TrimRight(row, " "))
}

func pad(s string, w int) string {
	if n := utf8.RuneCountInString(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// WriteJSON writes outcomes and their summary as one JSON document.
func WriteJSON(w io.Writer, outcomes []Outcome) error {
	n := Counts(outcomes)
	doc := struct {
		Checks  []Outcome      `json:"checks"`
		Summary map[string]int `json:"summary"`
		OK      bool           `json:"ok"`
	}{Checks: outcomes, Summary: map[string]int{}, OK: ExitCode(outcomes) == 0}
	if doc.Checks == nil {
		doc.Checks = []Outcome{}
	}
	for _, s := range []Status{StatusOK, StatusSkip, StatusWarn, StatusFail} {
		doc.Summary[s.String()] = n[s]
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// Lazy computes a value shared by several checks once, with the context
// of the first check that asks for it; the others wait for it or for
// their own context.
type Lazy[T any] struct {
	once    sync.Once
	started atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	f       func(ctx context.Context) (T, error)
	v       T
	err     error
}

// NewLazy wraps f.
func NewLazy[T any](f func(ctx context.Context) (T, error)) *Lazy[T] {
	return &Lazy[T]{f: f, done: make(chan struct{})}
}

// Get returns f's value, computing it on the first call.
func (l *Lazy[T]) Get(ctx context.Context) (T, error) {
	l.once.Do(func() {
		l.started.Store(true)
		go func() {
			defer close(l.done)
			v, err := l.f(ctx)
			l.mu.Lock()
			l.v, l.err = v, err
			l.mu.Unlock()
		}()
	})
	select {
	case <-l.done:
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v, l.err
}

// Peek returns the value if it has been computed without error.
func (l *Lazy[T]) Peek() (T, bool) {
	select {
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.v, l.err == nil
	default:
		var zero T
		return zero, false
	}
}

// Wait waits until a computation that was started ends, or ctx does,
// and returns its value if it succeeded: for cleanups, which must not miss
// a value that came after the check waiting for it gave up.
func (l *Lazy[T]) Wait(ctx context.Context) (T, bool) {
	if !l.started.Load() {
		var zero T
		return zero, false
	}
	select {
	case <-l.done:
	case <-ctx.Done():
	}
	return l.Peek()
}

// Plan is the checks of a configuration and what to undo once they have
// run (a temporary Matrix login).
type Plan struct {
	Checks   []Check
	cleanups []func(context.Context)
}

// Add appends checks.
func (p *Plan) Add(cs ...Check) { p.Checks = append(p.Checks, cs...) }

// OnClose registers f to run at Close.
func (p *Plan) OnClose(f func(context.Context)) { p.cleanups = append(p.cleanups, f) }

// Close runs the cleanups, last registered first.
func (p *Plan) Close(ctx context.Context) {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i](ctx)
	}
	p.cleanups = nil
}
