package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func fixed(r Result) func(context.Context) Result {
	return func(context.Context) Result { return r }
}

func TestRunKeepsOrderWhileRunningConcurrently(t *testing.T) {
	var running, peak atomic.Int32
	slow := func(d time.Duration, r Result) func(context.Context) Result {
		return func(ctx context.Context) Result {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			defer running.Add(-1)
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			return r
		}
	}
	checks := []Check{
		{Component: "a", Name: "slowest", Run: slow(300*time.Millisecond, OK("first"))},
		{Component: "b", Name: "fast", Run: slow(10*time.Millisecond, Warn("second"))},
		{Component: "c", Name: "middle", Run: slow(100*time.Millisecond, Fail("third"))},
	}
	var emitted []string
	start := time.Now()
	out := Run(t.Context(), checks, Options{}, func(o Outcome) { emitted = append(emitted, o.Detail) })
	if took := time.Since(start); took > 250*time.Millisecond*2 {
		t.Errorf("took %v: the checks did not run concurrently", took)
	}
	if peak.Load() != 3 {
		t.Errorf("at most %d checks ran at once, want 3", peak.Load())
	}
	if got := strings.Join(emitted, ","); got != "first,second,third" {
		t.Errorf("emitted %s, want the checks' order", got)
	}
	if out[2].Status != StatusFail || out[1].Component != "b" || out[1].Check != "fast" {
		t.Errorf("outcomes: %+v", out)
	}
	if ExitCode(out) != 1 {
		t.Error("a FAIL must give exit code 1")
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		statuses []Status
		want     int
	}{
		{nil, 0},
		{[]Status{StatusOK, StatusSkip, StatusWarn}, 0},
		{[]Status{StatusOK, StatusFail, StatusWarn}, 1},
	} {
		var out []Outcome
		for _, s := range tc.statuses {
			out = append(out, Outcome{Status: s})
		}
		if got := ExitCode(out); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.statuses, got, tc.want)
		}
	}
}

func TestTimeoutAndPanic(t *testing.T) {
	checks := []Check{
		{Component: "x", Name: "hangs", Run: func(ctx context.Context) Result {
			<-ctx.Done()
			return Fail("gave up: %v", ctx.Err())
		}},
		{Component: "x", Name: "ignores its context", Run: func(context.Context) Result {
			time.Sleep(10 * time.Second)
			return OK("too late")
		}},
		{Component: "x", Name: "panics", Run: func(context.Context) Result { panic("boom") }},
		{Component: "x", Name: "longer timeout", Timeout: 400 * time.Millisecond, Run: func(ctx context.Context) Result {
			select {
			case <-time.After(250 * time.Millisecond):
				return OK("in time")
			case <-ctx.Done():
				return Fail("cut at the default timeout")
			}
		}},
	}
	start := time.Now()
	out := Run(t.Context(), checks, Options{Timeout: 100 * time.Millisecond}, nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %v", took)
	}
	want := []struct {
		status Status
		detail string
	}{
		{StatusFail, "gave up: context deadline exceeded"},
		{StatusFail, "no answer within 100ms"},
		{StatusFail, "internal error: boom"},
		{StatusOK, "in time"},
	}
	for i, w := range want {
		if out[i].Status != w.status || !strings.Contains(out[i].Detail, w.detail) {
			t.Errorf("%s: %s %q, want %s %q", out[i].Check, out[i].Status, out[i].Detail, w.status, w.detail)
		}
	}
}

func TestTableAlignedAndRedacted(t *testing.T) {
	checks := []Check{
		{Component: "matrix", Name: "login", Run: fixed(Fail("token s3cr3t-t0ken refused\nsecond line"))},
		{Component: "postgres", Name: "main-db pg_dump", Run: fixed(OK("pg_dump (PostgreSQL) 17.2"))},
		{Component: "s3", Name: "bucket", Run: fixed(Skip("not used"))},
		{Component: "ldap", Name: "bind", Run: fixed(Warn("abc is short, left alone"))},
	}
	var buf bytes.Buffer
	table := NewTable(&buf, checks)
	out := Run(t.Context(), checks, Options{Secrets: []string{"s3cr3t-t0ken", "abc"}}, table.Row)
	want := `COMPONENT  CHECK            STATUS  DETAIL
matrix     login            FAIL    token [redacted] refused second line
postgres   main-db pg_dump  ok      pg_dump (PostgreSQL) 17.2
s3         bucket           skip    not used
ldap       bind             warn    abc is short, left alone
`
	if buf.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", buf.String(), want)
	}
	if got := Summary(out); got != "1 FAIL, 1 warn, 1 ok, 1 skip" {
		t.Errorf("summary %q", got)
	}
	if got := Summary(out[1:2]); got != "0 FAIL, 1 ok" {
		t.Errorf("summary %q", got)
	}
}

func TestWriteJSON(t *testing.T) {
	out := []Outcome{
		{Component: "nomad", Check: "token", Status: StatusWarn, Detail: "ACLs are disabled", Took: 1500 * time.Millisecond},
		{Component: "s3", Check: "bucket", Status: StatusOK, Detail: "fine"},
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, out); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Checks []struct {
			Component, Check, Status, Detail string
			TookMS                           int64 `json:"took_ms"`
		}
		Summary map[string]int
		OK      bool
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if !doc.OK || len(doc.Checks) != 2 || doc.Checks[0].Status != "warn" || doc.Checks[0].TookMS != 1500 ||
		doc.Summary["warn"] != 1 || doc.Summary["ok"] != 1 || doc.Summary["FAIL"] != 0 {
		t.Errorf("JSON: %s", buf.String())
	}
}

func TestLazyComputesOnce(t *testing.T) {
	var calls atomic.Int32
	l := NewLazy(func(context.Context) (int, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return 42, nil
	})
	if _, ok := l.Peek(); ok {
		t.Fatal("Peek before Get")
	}
	checks := make([]Check, 5)
	for i := range checks {
		checks[i] = Check{Component: "c", Name: "n", Run: func(ctx context.Context) Result {
			v, err := l.Get(ctx)
			if err != nil || v != 42 {
				return Fail("%d %v", v, err)
			}
			return OK("")
		}}
	}
	if ExitCode(Run(t.Context(), checks, Options{}, nil)) != 0 || calls.Load() != 1 {
		t.Errorf("calls %d", calls.Load())
	}
	if v, ok := l.Peek(); !ok || v != 42 {
		t.Errorf("Peek = %d, %v", v, ok)
	}
}

func TestPlanCloseRunsCleanupsInReverse(t *testing.T) {
	var order []int
	p := &Plan{}
	p.OnClose(func(context.Context) { order = append(order, 1) })
	p.OnClose(func(context.Context) { order = append(order, 2) })
	p.Close(t.Context())
	p.Close(t.Context())
	if len(order) != 2 || order[0] != 2 {
		t.Errorf("cleanups ran %v", order)
	}
}
