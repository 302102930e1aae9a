package watchers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hashicorp/consul/api"

	"github.com/vigie/vigie/internal/fakeconsul"
)

// consulBigState returns the body of a health state of n checks, built
// from the captured ones (every field of a real answer), compact as
// Consul sends it, and the Output of each check.
func consulBigState(tb testing.TB, n int) []map[string]any {
	tb.Helper()
	var captured []map[string]any
	if err := json.Unmarshal(fakeconsul.StateBefore(), &captured); err != nil {
		tb.Fatal(err)
	}
	checks := make([]map[string]any, 0, n)
	for i := 0; len(checks) < n; i++ {
		for _, tmpl := range captured {
			if len(checks) == n {
				break
			}
			c := map[string]any{}
			for k, v := range tmpl {
				c[k] = v
			}
			node := fmt.Sprintf("node-%04d", i)
			c["Node"] = node
			if c["ServiceID"] != "" {
				c["ServiceID"] = fmt.Sprintf("%s-%d", c["ServiceID"], i)
			}
			c["Output"] = fmt.Sprintf("%s (%s)", c["Output"], node)
			c["CreateIndex"] = 1000 + len(checks)
			c["ModifyIndex"] = 1000 + len(checks)
			checks = append(checks, c)
		}
	}
	return checks
}

func consulMarshal(tb testing.TB, checks []map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(checks)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func BenchmarkConsulSplit(b *testing.B) {
	body := consulMarshal(b, consulBigState(b, 10000))
	b.SetBytes(int64(len(body)))
	var spans []consulSpan
	for b.Loop() {
		var err error
		if spans, _, err = consulSplit(body, spans, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// One check of 10,000 changed since the last snapshot delivered.
func BenchmarkConsulParseOneChanged(b *testing.B) {
	checks := consulBigState(b, 10000)
	base := consulMarshal(b, checks)
	checks[5000]["Status"] = "critical"
	changed := consulMarshal(b, checks)
	m := newConsulMemory()
	s, err := m.parse(base, 1)
	if err != nil {
		b.Fatal(err)
	}
	m.commit(s)
	b.SetBytes(int64(len(changed)))
	bodies := [][]byte{changed, base}
	i := 0
	for b.Loop() {
		s, err := m.parse(bodies[i%2], uint64(i+2))
		if err != nil {
			b.Fatal(err)
		}
		m.commit(s)
		i++
	}
}

// consulTestChecks is a small state: two nodes, a service with two checks.
func consulTestChecks() []map[string]any {
	mk := func(node, id, svc, status, output string) map[string]any {
		return map[string]any{"Node": node, "CheckID": id, "Name": id + " check", "Status": status, "Notes": "", "Output": output,
			"ServiceID": svc, "ServiceName": strings.TrimSuffix(svc, "-1"), "ServiceTags": []string{"v1"}, "Type": "http",
			"Definition": map[string]any{}, "CreateIndex": 10, "ModifyIndex": 10}
	}
	return []map[string]any{
		mk("a", "serfHealth", "", "passing", "Agent alive"),
		mk("a", "web-http", "web-1", "passing", "HTTP GET /health: 200 OK"),
		mk("a", "web-tcp", "web-1", "passing", "TCP connect: Success"),
		mk("b", "serfHealth", "", "passing", "Agent alive"),
		mk("b", "db", "db-1", "passing", "ok"),
	}
}

// parseOK parses body against m and checks the events against a decoding
// of body with encoding/json into api.HealthCheck.
func parseOK(t *testing.T, m *consulMemory, body []byte, index uint64) consulSnapshot {
	t.Helper()
	s, err := m.parse(body, index)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var want []api.HealthCheck
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatal(err)
	}
	if len(s.events) != len(want) {
		t.Fatalf("%d events, want %d", len(s.events), len(want))
	}
	for i, e := range s.events {
		w, c := want[i], e.Check
		if c.Node != w.Node || c.CheckID != w.CheckID || c.Name != w.Name || c.Status != w.Status || c.Output != w.Output ||
			c.ServiceID != w.ServiceID || c.ServiceName != w.ServiceName || !slices.Equal(c.ServiceTags, w.ServiceTags) ||
			c.Notes != w.Notes || e.Namespace != w.Namespace || e.Type != w.Status || e.Index != index || e.Source != "consul" || e.Topic != "Check" {
			t.Errorf("event %d: %+v, check %+v; want %+v", i, e, *c, w)
		}
	}
	return s
}

// unchanged lists the Unchanged flags of s's events.
func unchanged(s consulSnapshot) []bool {
	out := make([]bool, len(s.events))
	for i, e := range s.events {
		out[i] = e.Unchanged
	}
	return out
}

func TestConsulMemoryMarksWhatChanged(t *testing.T) {
	checks := consulTestChecks()
	m := newConsulMemory()
	s := parseOK(t, m, consulMarshal(t, checks), 1)
	if slices.Contains(unchanged(s), true) || s.same {
		t.Fatalf("first answer: unchanged %v, same %v", unchanged(s), s.same)
	}
	m.commit(s)
	first := s

	// The same again: nothing to deliver, all unchanged, the same Checks.
	s = parseOK(t, m, consulMarshal(t, checks), 2)
	if !s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("same answer: same %v, unchanged %v", s.same, unchanged(s))
	}
	for i := range s.events {
		if s.events[i].Check != first.events[i].Check {
			t.Errorf("check %d decoded again", i)
		}
	}

	// One check changed.
	checks[2]["Status"], checks[2]["Output"], checks[2]["ModifyIndex"] = "critical", "TCP connect: refused", 11
	s = parseOK(t, m, consulMarshal(t, checks), 3)
	if s.same || !slices.Equal(unchanged(s), []bool{true, true, false, true, true}) {
		t.Fatalf("one changed: same %v, unchanged %v", s.same, unchanged(s))
	}
	// Not delivered (the sink failed): the next answer is told against
	// the last snapshot delivered still.
	checks[4]["Output"] = "slow"
	s = parseOK(t, m, consulMarshal(t, checks), 4)
	if s.same || !slices.Equal(unchanged(s), []bool{true, true, false, true, false}) {
		t.Fatalf("after an undelivered answer: same %v, unchanged %v", s.same, unchanged(s))
	}
	m.commit(s)

	// A change of nothing the pipeline acts on (indexes, name, tags) is no
	// news, but once another change is delivered the check is not
	// Unchanged: its Check differs from the one delivered.
	checks[1]["ModifyIndex"], checks[1]["Name"], checks[1]["ServiceTags"] = 12, "renamed", []string{"v2"}
	s = parseOK(t, m, consulMarshal(t, checks), 5)
	if !s.same || !slices.Equal(unchanged(s), []bool{true, false, true, true, true}) {
		t.Fatalf("name changed: same %v, unchanged %v", s.same, unchanged(s))
	}
	checks[3]["Status"] = "critical"
	s = parseOK(t, m, consulMarshal(t, checks), 6)
	if s.same || !slices.Equal(unchanged(s), []bool{true, false, true, false, true}) {
		t.Fatalf("name changed, then a status: same %v, unchanged %v", s.same, unchanged(s))
	}
	m.commit(s)

	// A check removed: fewer checks, the rest unchanged.
	checks = slices.Delete(checks, 0, 1)
	s = parseOK(t, m, consulMarshal(t, checks), 7)
	if s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("removed: same %v, unchanged %v", s.same, unchanged(s))
	}
	m.commit(s)

	// The same checks in another order: no news.
	slices.Reverse(checks)
	s = parseOK(t, m, consulMarshal(t, checks), 8)
	if !s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("reordered: same %v, unchanged %v", s.same, unchanged(s))
	}
}

func TestConsulMemoryMaintenance(t *testing.T) {
	checks := consulTestChecks()
	m := newConsulMemory()
	m.commit(parseOK(t, m, consulMarshal(t, checks), 1))

	maint := func(s consulSnapshot) []string {
		var out []string
		for _, e := range s.events {
			out = append(out, e.Check.Maintenance)
		}
		return out
	}
	// Service maintenance: the service's checks change, not their bytes.
	svc := map[string]any{"Node": "a", "CheckID": consulServiceMaint + "web-1", "Name": "Service Maintenance Mode", "Status": "critical",
		"Notes": "deploy", "ServiceID": "web-1", "ServiceName": "web"}
	checks = append(checks, svc)
	s := parseOK(t, m, consulMarshal(t, checks), 2)
	if !slices.Equal(unchanged(s), []bool{true, false, false, true, true, false}) ||
		!slices.Equal(maint(s), []string{"", MaintenanceService, MaintenanceService, "", "", MaintenanceService}) {
		t.Fatalf("service maintenance: unchanged %v, maintenance %q", unchanged(s), maint(s))
	}
	m.commit(s)

	// Node maintenance of b.
	node := map[string]any{"Node": "b", "CheckID": consulNodeMaint, "Name": "Node Maintenance Mode", "Status": "critical", "Notes": "reboot"}
	checks = append(checks, node)
	s = parseOK(t, m, consulMarshal(t, checks), 3)
	if !slices.Equal(unchanged(s), []bool{true, true, true, false, false, true, false}) ||
		!slices.Equal(maint(s), []string{"", MaintenanceService, MaintenanceService, MaintenanceNode, MaintenanceNode, MaintenanceService, MaintenanceNode}) {
		t.Fatalf("node maintenance: unchanged %v, maintenance %q", unchanged(s), maint(s))
	}
	m.commit(s)
	same := parseOK(t, m, consulMarshal(t, checks), 4)
	if !same.same || slices.Contains(unchanged(same), false) {
		t.Fatalf("maintenance unchanged: same %v, unchanged %v", same.same, unchanged(same))
	}

	// Both over.
	checks = checks[:5]
	s = parseOK(t, m, consulMarshal(t, checks), 5)
	if !slices.Equal(unchanged(s), []bool{true, false, false, false, false}) || slices.ContainsFunc(maint(s), func(m string) bool { return m != "" }) {
		t.Fatalf("maintenance over: unchanged %v, maintenance %q", unchanged(s), maint(s))
	}
	// Delivered Checks are never modified afterwards.
	for _, e := range same.events {
		if e.Check.Node == "b" && e.Check.Maintenance != MaintenanceNode {
			t.Fatalf("a Check delivered was changed: %+v", *e.Check)
		}
	}
}

func TestConsulMemoryDuplicates(t *testing.T) {
	checks := consulTestChecks()
	twice := append(slices.Clone(checks), checks[1])
	m := newConsulMemory()
	s := parseOK(t, m, consulMarshal(t, twice), 1)
	if s.events[1].Check != s.events[5].Check {
		t.Errorf("the same bytes twice decoded twice")
	}
	m.commit(s)
	s = parseOK(t, m, consulMarshal(t, twice), 2)
	if !s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("same answer with a duplicate: same %v, unchanged %v", s.same, unchanged(s))
	}
	// One copy gone: news (a check fewer), the other copy unchanged.
	s = parseOK(t, m, consulMarshal(t, checks), 3)
	if s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("one copy gone: same %v, unchanged %v", s.same, unchanged(s))
	}
	m.commit(s)
	// Three copies: the first unchanged, the others news.
	thrice := append(slices.Clone(checks), checks[1], checks[1])
	s = parseOK(t, m, consulMarshal(t, thrice), 4)
	if s.same || !slices.Equal(unchanged(s), []bool{true, true, true, true, true, false, false}) {
		t.Fatalf("three copies: same %v, unchanged %v", s.same, unchanged(s))
	}
	m.commit(s)
	s = parseOK(t, m, consulMarshal(t, thrice), 5)
	if !s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("three copies again: same %v, unchanged %v", s.same, unchanged(s))
	}
}

// Output with quotes, backslashes and brackets, escaped or not: the split
// must not take them for the array's structure.
func TestConsulMemoryTrickyStrings(t *testing.T) {
	checks := consulTestChecks()
	outputs := []string{
		`{"server":{"ok":true}}`,
		`}],[{"Node":"x"},`,
		`a \" quote \\" and \\\" more`,
		"\\",
		`\\`,
		"ends with a backslash \\",
		"unicode é ☃ \u2028 \u0000 <>&",
		`"`,
	}
	m := newConsulMemory()
	for i, out := range outputs {
		checks[i%len(checks)]["Output"] = out
		checks[(i+1)%len(checks)]["Notes"] = out + "]"
		body := consulMarshal(t, checks)
		s := parseOK(t, m, body, uint64(i+1))
		m.commit(s)
		// Escapes as another encoder writes them.
		body = bytes.ReplaceAll(body, []byte(`\u003c`), []byte(`<`))
		body = bytes.ReplaceAll(body, []byte(`":"`), []byte(`" : "`))
		m.commit(parseOK(t, m, body, uint64(i+1)))
	}
	// Pretty-printed, as ?pretty answers.
	pretty, err := json.MarshalIndent(checks, "", "    ")
	if err != nil {
		t.Fatal(err)
	}
	parseOK(t, m, pretty, 99)
}

func TestConsulMalformedBodies(t *testing.T) {
	good := string(consulMarshal(t, consulTestChecks()))
	for _, tc := range []struct{ name, body, err string }{
		{"empty", "", "empty body"},
		{"blank", " \n", "empty body"},
		{"object", `{"Node":"a"}`, `unexpected '{' at byte 0, want a JSON array of checks`},
		{"HTML", `<html>502 Bad Gateway</html>`, `unexpected '<' at byte 0`},
		{"truncated", good[:len(good)/2], "check 2 (from byte 482): truncated in a string"},
		{"truncated between checks", good[:strings.Index(good, "},{")+2], "truncated after 1 checks: the array is not closed"},
		{"truncated after the bracket", "[", "truncated after 0 checks"},
		{"truncated in a string", `[{"Node":"a\"]}]`, "check 0 (from byte 1): truncated in a string from byte 9"},
		{"unbalanced", `[{"Node":"a"}}]`, `unexpected '}' at byte 13 after check 0, want , or ]`},
		{"unclosed object", `[{"Node":{"a":1}]`, `check 0 (from byte 1): unbalanced: ']' at byte 16, want '}'`},
		{"unclosed array", `[{"Node":"a","ServiceTags":["x"}]`, `check 0 (from byte 1): unbalanced: '}' at byte 31, want ']'`},
		{"truncated object", `[{"Node":"a","Definition":{}`, `check 0 (from byte 1): truncated: the object is not closed`},
		{"trailing comma", `[{"Node":"a"},]`, `unexpected ']' at byte 14: check 1 is not a JSON object`},
		{"missing comma", `[{"Node":"a"} {"Node":"b"}]`, `unexpected '{' at byte 14 after check 0, want , or ]`},
		{"not an object", `[{"Node":"a"},"b"]`, `check 1 is not a JSON object`},
		{"null check", `[null]`, `check 0 is not a JSON object`},
		{"trailing garbage", good + "x", `after the array`},
		{"two arrays", "[][]", `unexpected '[' at byte 2 after the array`},
		{"null and more", "null []", `unexpected '[' after null at byte 5`},
		{"binary", "\x00\x01", `unexpected byte 0x00 at byte 0`},
		{"invalid JSON in a check", `[{"Node":"a",}]`, `check 0 (byte 1): invalid character '}'`},
		{"wrong type", `[{"Node":1}]`, `check 0 (byte 1): json: cannot unmarshal number into Go struct field consulCheckJSON.Node of type string`},
		{"control character", "[{\"Node\":\"a\x01\"}]", `check 0 (byte 1): invalid character '\x01' in string literal`},
		{"bad escape", `[{"Node":"a\x"}]`, `invalid character 'x' in string escape code`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newConsulMemory()
			// Against nothing, and against a good answer whose bytes it
			// shares.
			_, err := m.parse([]byte(tc.body), 1)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if json.Unmarshal([]byte(tc.body), new([]api.HealthCheck)) == nil && tc.name != "null check" {
				t.Fatalf("encoding/json takes it")
			}
			m.commit(parseOK(t, m, []byte(good), 2))
			if _, err := m.parse([]byte(tc.body), 3); err == nil {
				t.Fatalf("no error after a good answer")
			}
			parseOK(t, m, []byte(good), 4)
		})
	}
	for _, body := range []string{"[]", " [ ] \n", "null", " null "} {
		m := newConsulMemory()
		if s, err := m.parse([]byte(body), 1); err != nil || len(s.events) != 0 {
			t.Errorf("%q: %d events, error %v", body, len(s.events), err)
		}
	}
}

// A first answer is decoded in one call; a bad check in it is still named.
func TestConsulMalformedLargeBody(t *testing.T) {
	checks := consulBigState(t, 200)
	checks[170]["Node"] = 5
	body := consulMarshal(t, checks)
	_, err := newConsulMemory().parse(body, 1)
	if err == nil || !strings.Contains(err.Error(), "check 170 (byte ") || !strings.Contains(err.Error(), "cannot unmarshal number into Go struct field consulCheckJSON.Node of type string") {
		t.Fatalf("error %v", err)
	}
}

// A commit of a snapshot other than the last parsed forgets all: what
// comes next is all news.
func TestConsulMemoryCommitOutOfTurn(t *testing.T) {
	body := consulMarshal(t, consulTestChecks())
	m := newConsulMemory()
	m.commit(parseOK(t, m, body, 1))
	s2 := parseOK(t, m, body, 2)
	parseOK(t, m, body, 3)
	m.commit(s2)
	s := parseOK(t, m, body, 4)
	if s.same || slices.Contains(unchanged(s), true) {
		t.Fatalf("after a commit out of turn: same %v, unchanged %v", s.same, unchanged(s))
	}
}

// The buffer of a giant answer is not kept; a usual one is.
func TestConsulMemoryBuffer(t *testing.T) {
	m := newConsulMemory()
	body := consulMarshal(t, consulTestChecks())
	got, err := m.read(bytes.NewReader(body), -1)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %q, %v", got, err)
	}
	first := &got[0]
	s, err := m.parse(got, 1)
	if err != nil {
		t.Fatal(err)
	}
	m.commit(s)
	got, err = m.read(bytes.NewReader(body), int64(len(body)))
	if err != nil || !bytes.Equal(got, body) || &got[0] != first {
		t.Fatalf("read %q, %v (not into the same buffer?)", got, err)
	}
	if _, err := m.read(io.MultiReader(bytes.NewReader(body), iotest.ErrReader(io.ErrUnexpectedEOF)), -1); err != io.ErrUnexpectedEOF {
		t.Fatalf("broken body: %v", err)
	}
	if m.buf == nil {
		t.Fatal("a small buffer was dropped")
	}
	// Longer than the buffer, in short reads: the buffer grows.
	long := consulMarshal(t, consulBigState(t, 3000))
	got, err = m.read(iotest.HalfReader(bytes.NewReader(long)), -1)
	if err != nil || !bytes.Equal(got, long) {
		t.Fatalf("long body: %d bytes, %v; want %d", len(got), err, len(long))
	}
	if _, err := m.read(io.MultiReader(bytes.NewReader(long), iotest.ErrReader(io.ErrUnexpectedEOF)), -1); err != io.ErrUnexpectedEOF {
		t.Fatalf("broken long body: %v", err)
	}
	giant := io.LimitReader(zeros{}, consulKeepBuffer+1)
	if got, err := m.read(giant, -1); err != nil || len(got) != consulKeepBuffer+1 {
		t.Fatalf("giant body: %d bytes, %v", len(got), err)
	}
	if m.buf != nil {
		t.Fatalf("a buffer of %d bytes kept", cap(m.buf))
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// The split that reuses the last answer's spans finds the spans of a plain
// split, and fails as it does.
func TestConsulSplitReuse(t *testing.T) {
	checks := consulBigState(t, 200)
	base := consulMarshal(t, checks)
	var variants [][]byte
	edit := func(f func(c []map[string]any) []map[string]any) {
		c := make([]map[string]any, len(checks))
		for i := range checks {
			c[i] = maps.Clone(checks[i])
		}
		variants = append(variants, consulMarshal(t, f(c)))
	}
	edit(func(c []map[string]any) []map[string]any { return c })
	edit(func(c []map[string]any) []map[string]any { c[0]["Status"] = "critical"; return c })
	edit(func(c []map[string]any) []map[string]any { c[199]["Status"] = "critical"; return c })
	edit(func(c []map[string]any) []map[string]any { c[100]["Output"] = `"},{"x":"`; return c })
	edit(func(c []map[string]any) []map[string]any { c[100]["Output"] = "x"; c[150]["Output"] = "y"; return c })
	edit(func(c []map[string]any) []map[string]any { return slices.Delete(c, 50, 51) })
	edit(func(c []map[string]any) []map[string]any { return slices.Delete(c, 0, 1) })
	edit(func(c []map[string]any) []map[string]any { return c[:199] })
	edit(func(c []map[string]any) []map[string]any { return slices.Insert(c, 70, c[3]) })
	edit(func(c []map[string]any) []map[string]any { return c[:0] })
	variants = append(variants, append(slices.Clone(base), ' '), append([]byte(" "), base...), []byte("null"),
		bytes.Replace(base, []byte(`},{`), []byte(`}, {`), 1), base[:len(base)-1], append(slices.Clone(base[:len(base)-1]), ",{}]"...),
		bytes.Replace(base, []byte(`},{`), []byte(`},"`), 1))
	oldSpans, _, err := consulSplit(base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range variants {
		want, _, wantErr := consulSplit(v, nil, nil)
		got, r, err := consulSplit(v, nil, consulExactPrior(v, base, oldSpans))
		if (err == nil) != (wantErr == nil) || err == nil && !slices.Equal(got, want) {
			t.Errorf("variant %d: spans %v, %v; want %v, %v", i, got, err, want, wantErr)
			continue
		}
		if err == nil && (!slices.Equal(got[:r.prefix], oldSpans[:r.prefix]) || len(got)-r.at != len(oldSpans)-r.from) {
			t.Errorf("variant %d: reuse %+v of %d spans", i, r, len(got))
		}
		if i == 0 && (r.prefix != len(oldSpans)) {
			t.Errorf("the same body: reuse %+v", r)
		}
		if i == 1 && (r.prefix != 0 || r.at != 1 || r.from != 1) {
			t.Errorf("the first check changed: reuse %+v", r)
		}
	}
}

// FuzzConsulSplit checks the split against encoding/json: a body is a
// health list (a JSON array of objects, or null) if and only if the split
// takes it and every span it gives is valid JSON, and then its spans are
// the objects' bytes. Split after another body, reusing its spans, it
// gives the same.
func FuzzConsulSplit(f *testing.F) {
	f.Add(fakeconsul.StateBefore(), []byte("[]"))
	f.Add(fakeconsul.StateTTLExpired(), fakeconsul.StateBefore())
	f.Add(consulMarshal(f, consulTestChecks()), consulMarshal(f, consulTestChecks()[1:]))
	f.Add([]byte(`[{"a":"\"}],[{\\"},{"b":[1,{"c":"]"}]}]`), []byte(`[{"a":"\"}],[{\\"}]`))
	f.Add([]byte(` null `), []byte(`[{}, {} ]`))
	f.Add([]byte(`[{"a":"b"}}]`), []byte(`[{"a":"b"},{}]`))
	f.Fuzz(func(t *testing.T, body, other []byte) {
		var raw []json.RawMessage
		jsonErr := json.Unmarshal(body, &raw)
		if jsonErr == nil {
			for _, r := range raw {
				if r[0] != '{' {
					jsonErr = errors.New("not an object")
				}
			}
		}
		check := func(what string, spans []consulSpan, err error) {
			if err == nil {
				for _, s := range spans {
					if !json.Valid(body[s.start:s.end]) {
						err = fmt.Errorf("span %v invalid", s)
						break
					}
				}
			}
			if (err == nil) != (jsonErr == nil) {
				t.Fatalf("%s: split error %v, encoding/json error %v", what, err, jsonErr)
			}
			if err != nil {
				return
			}
			if len(spans) != len(raw) {
				t.Fatalf("%s: %d spans, encoding/json %d elements", what, len(spans), len(raw))
			}
			for i, s := range spans {
				if !bytes.Equal(body[s.start:s.end], raw[i]) {
					t.Fatalf("%s: span %d %q, encoding/json %q", what, i, body[s.start:s.end], raw[i])
				}
			}
		}
		spans, _, err := consulSplit(body, nil, nil)
		check("plain", spans, err)
		otherSpans, _, err := consulSplit(other, nil, nil)
		if err != nil {
			return // the prior is always a body split without error
		}
		prior := consulExactPrior(body, other, otherSpans)
		spans, _, err = consulSplit(body, nil, prior)
		check("after another", spans, err)
		// What the chunks tell is a lower bound.
		if len(body) > 0 {
			prior.prefix -= min(prior.prefix, int(body[0]))
			prior.suffix -= min(prior.suffix, int(body[len(body)-1]))
			spans, _, err = consulSplit(body, nil, prior)
			check("after another, less known", spans, err)
		}
	})
}

// consulExactPrior is what body shares with old, whose spans are oldSpans,
// to the byte.
func consulExactPrior(body, old []byte, oldSpans []consulSpan) *consulPrior {
	p := consulCommonPrefix(body, old)
	return &consulPrior{length: len(old), prefix: p, suffix: consulCommonSuffix(body[p:], old[p:]), spans: oldSpans}
}

// consulCommonPrefix is the length of the longest common prefix of a and b.
func consulCommonPrefix(a, b []byte) int {
	const chunk = 4 << 10
	n := min(len(a), len(b))
	i := 0
	for i+chunk <= n && bytes.Equal(a[i:i+chunk], b[i:i+chunk]) {
		i += chunk
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// consulCommonSuffix is the length of the longest common suffix of a and b.
func consulCommonSuffix(a, b []byte) int {
	const chunk = 4 << 10
	n := min(len(a), len(b))
	ea, eb := len(a), len(b)
	i := 0
	for i+chunk <= n && bytes.Equal(a[ea-i-chunk:ea-i], b[eb-i-chunk:eb-i]) {
		i += chunk
	}
	for i < n && a[ea-i-1] == b[eb-i-1] {
		i++
	}
	return i
}

// Answers of a few hundred checks (many chunks) edited at random: the
// memory, which splits against the last answer's chunks, agrees with
// encoding/json, with a plain split, and with a memory that splits every
// answer afresh.
func TestConsulMemoryLargeEdits(t *testing.T) {
	checks := consulBigState(t, 300)
	r := rand.New(rand.NewPCG(7, 11))
	m, fresh := newConsulMemory(), newConsulMemory()
	tricky := []string{`"},{"x":"`, `]]]}}}`, `\`, `"`, "é\u2028", strings.Repeat("long ", 2000)}
	for step := range 150 {
		if step > 0 {
			for range 1 + r.IntN(3) {
				i := r.IntN(len(checks))
				switch r.IntN(8) {
				case 0:
					checks = slices.Delete(checks, i, i+1)
				case 1:
					checks = slices.Insert(checks, i, maps.Clone(checks[r.IntN(len(checks))]))
				case 2:
					checks[i] = maps.Clone(checks[i])
					checks[i]["Output"] = tricky[r.IntN(len(tricky))]
				case 3:
					checks[i] = maps.Clone(checks[i])
					checks[i]["ModifyIndex"] = 5000 + step
				case 4:
					c := maps.Clone(checks[i])
					c["CheckID"], c["Status"] = consulNodeMaint, "critical"
					checks = slices.Insert(checks, i, c)
				case 5:
					checks = checks[:max(1, len(checks)-r.IntN(3))]
				default:
					checks[i] = maps.Clone(checks[i])
					checks[i]["Status"] = []string{"passing", "warning", "critical", "maintenance"}[r.IntN(4)]
				}
			}
		}
		body := consulMarshal(t, checks)
		if r.IntN(10) == 0 {
			body = append(body, '\n')
		}
		s := parseOK(t, m, body, uint64(step+1))
		fresh.last = consulParsed{} // nothing to split against
		want := parseOK(t, fresh, body, uint64(step+1))
		plain, _, err := consulSplit(body, nil, nil)
		if err != nil || !slices.Equal(m.last.spans, plain) {
			t.Fatalf("step %d: spans differ from a plain split (%v)", step, err)
		}
		if s.same != want.same || !slices.Equal(unchanged(s), unchanged(want)) {
			t.Fatalf("step %d: same %v, unchanged %v; split afresh: %v, %v", step, s.same, unchanged(s), want.same, unchanged(want))
		}
		for i := range s.events {
			if !reflect.DeepEqual(*s.events[i].Check, *want.events[i].Check) {
				t.Fatalf("step %d: check %d %+v, split afresh %+v", step, i, *s.events[i].Check, *want.events[i].Check)
			}
		}
		if r.IntN(4) > 0 { // sometimes not delivered
			m.commit(s)
			fresh.commit(want)
		}
	}
}
