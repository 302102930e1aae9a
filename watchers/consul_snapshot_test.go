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
	r := bytes.NewReader(body)
	for b.Loop() {
		r.Reset(body)
		split := consulSplitter{r: r}
		for {
			more, err := split.next()
			if err != nil {
				b.Fatal(err)
			}
			if !more {
				break
			}
			if _, err := split.object(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// One check of 10,000 changed since the last snapshot delivered, or one
// added (and removed).
func BenchmarkConsulParseOneChanged(b *testing.B) {
	checks := consulBigState(b, 10000)
	base := consulMarshal(b, checks)
	changed := slices.Clone(checks)
	changed[5000] = maps.Clone(checks[5000])
	changed[5000]["Status"] = "critical"
	added := slices.Insert(slices.Clone(checks), 5000, maps.Clone(checks[5000]))
	added[5000]["CheckID"] = "new"
	for _, bc := range []struct {
		name  string
		other []byte
	}{{"changed", consulMarshal(b, changed)}, {"added", consulMarshal(b, added)}} {
		b.Run(bc.name, func(b *testing.B) {
			m := newConsulMemory()
			s, err := m.parse(bytes.NewReader(base), 1)
			if err != nil {
				b.Fatal(err)
			}
			m.commit(s)
			b.SetBytes(int64(len(bc.other)))
			bodies := [][]byte{bc.other, base}
			r := bytes.NewReader(nil)
			i := 0
			for b.Loop() {
				r.Reset(bodies[i%2])
				s, err := m.parse(r, uint64(i+2))
				if err != nil {
					b.Fatal(err)
				}
				m.commit(s)
				i++
			}
		})
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

// consulPieces reads r in pieces of 1 to 97 bytes, so that checks are
// cut at every place.
type consulPieces struct {
	r io.Reader
	n int
}

func (p *consulPieces) Read(b []byte) (int, error) {
	p.n = p.n%97 + 1
	return p.r.Read(b[:min(len(b), p.n)])
}

// parseOK parses body against m, read in pieces, and checks the events
// against a decoding of body with encoding/json into api.HealthCheck.
func parseOK(t *testing.T, m *consulMemory, body []byte, index uint64) consulSnapshot {
	t.Helper()
	s, err := m.parse(&consulPieces{r: bytes.NewReader(body)}, index)
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
	first := slices.Clone(s.events) // the next parse reuses them

	// The same again: nothing to deliver, all unchanged, the same Checks.
	s = parseOK(t, m, consulMarshal(t, checks), 2)
	if !s.same || slices.Contains(unchanged(s), false) {
		t.Fatalf("same answer: same %v, unchanged %v", s.same, unchanged(s))
	}
	for i := range s.events {
		if s.events[i].Check != first[i].Check {
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
	delivered := slices.Clone(same.events) // the next parse reuses them

	// Both over.
	checks = checks[:5]
	s = parseOK(t, m, consulMarshal(t, checks), 5)
	if !slices.Equal(unchanged(s), []bool{true, false, false, false, false}) || slices.ContainsFunc(maint(s), func(m string) bool { return m != "" }) {
		t.Fatalf("maintenance over: unchanged %v, maintenance %q", unchanged(s), maint(s))
	}
	// Delivered Checks are never modified afterwards.
	for _, e := range delivered {
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
			_, err := m.parse(strings.NewReader(tc.body), 1)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one with %q", err, tc.err)
			}
			if json.Unmarshal([]byte(tc.body), new([]api.HealthCheck)) == nil && tc.name != "null check" {
				t.Fatalf("encoding/json takes it")
			}
			m.commit(parseOK(t, m, []byte(good), 2))
			if _, err := m.parse(&consulPieces{r: strings.NewReader(tc.body)}, 3); err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("after a good answer, read in pieces: error %v, want one with %q", err, tc.err)
			}
			parseOK(t, m, []byte(good), 4)
		})
	}
	for _, body := range []string{"[]", " [ ] \n", "null", " null "} {
		m := newConsulMemory()
		if s, err := m.parse(strings.NewReader(body), 1); err != nil || len(s.events) != 0 {
			t.Errorf("%q: %d events, error %v", body, len(s.events), err)
		}
	}
}

// A check that does not decode is named, unless the body is cut short
// after it: a broken answer is told as such.
func TestConsulMalformedLargeBody(t *testing.T) {
	checks := consulBigState(t, 200)
	checks[170]["Node"] = 5
	body := consulMarshal(t, checks)
	_, err := newConsulMemory().parse(bytes.NewReader(body), 1)
	if err == nil || !strings.Contains(err.Error(), "check 170 (byte ") || !strings.Contains(err.Error(), "cannot unmarshal number into Go struct field consulCheckJSON.Node of type string") {
		t.Fatalf("error %v", err)
	}
	_, err = newConsulMemory().parse(bytes.NewReader(body[:len(body)-2]), 1)
	if err == nil || !strings.Contains(err.Error(), "check 199 (from byte ") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("cut short: error %v", err)
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

// A body that breaks off leaves the memory as it was: the next answer is
// told against the last snapshot delivered. A check larger than the
// window is read whole.
func TestConsulMemoryBrokenBody(t *testing.T) {
	checks := consulBigState(t, 300)
	base := consulMarshal(t, checks)
	m := newConsulMemory()
	m.commit(parseOK(t, m, base, 1))
	checks[150]["Output"] = strings.Repeat("large ", 3*consulWindow/5)
	changed := consulMarshal(t, checks)
	for _, cut := range []int{1, len(changed) / 2, len(changed) - 1} {
		broken := io.MultiReader(bytes.NewReader(changed[:cut]), iotest.ErrReader(io.ErrUnexpectedEOF))
		if _, err := m.parse(broken, 2); err == nil {
			t.Fatalf("cut at %d: no error", cut)
		}
	}
	s := parseOK(t, m, changed, 3)
	want := make([]bool, len(checks))
	for i := range want {
		want[i] = i != 150
	}
	if s.same || !slices.Equal(unchanged(s), want) {
		t.Fatalf("after broken answers: same %v, unchanged %v", s.same, unchanged(s))
	}
}

// FuzzConsulSplit checks the parse against encoding/json: a body is a
// health list (a JSON array of objects, or null) if and only if the parse
// takes it, and then its checks are encoding/json's; so after another
// body, delivered or not (read the first bit of how), and read in pieces
// of any size (the other bits).
func FuzzConsulSplit(f *testing.F) {
	f.Add(fakeconsul.StateBefore(), []byte("[]"), uint8(0))
	f.Add(fakeconsul.StateTTLExpired(), fakeconsul.StateBefore(), uint8(1))
	f.Add(consulMarshal(f, consulTestChecks()), consulMarshal(f, consulTestChecks()[1:]), uint8(2))
	f.Add([]byte(`[{"a":"\"}],[{\\"},{"b":[1,{"c":"]"}]}]`), []byte(`[{"a":"\"}],[{\\"}]`), uint8(3))
	f.Add([]byte(` null `), []byte(`[{}, {} ]`), uint8(4))
	f.Add([]byte(`[{"a":"b"}}]`), []byte(`[{"a":"b"},{}]`), uint8(5))
	f.Add([]byte(`[{"Node":"a"},{"Node":"b"}]`), []byte(`[{"Node":"b"},{"Node":"a"},{"Node":"b"}]`), uint8(7))
	f.Fuzz(func(t *testing.T, body, other []byte, how uint8) {
		var raw []json.RawMessage
		jsonErr := json.Unmarshal(body, &raw)
		want := make([]consulCheckJSON, len(raw))
		for i, r := range raw {
			if r[0] != '{' {
				jsonErr = errors.New("not an object")
			} else if err := json.Unmarshal(r, &want[i]); err != nil {
				jsonErr = err
			}
		}
		pieces := func(b []byte) io.Reader {
			if how>>1 == 0 {
				return bytes.NewReader(b)
			}
			return &consulPieces{r: bytes.NewReader(b), n: int(how >> 1)}
		}
		m := newConsulMemory()
		if s, err := m.parse(pieces(other), 1); err == nil && how&1 == 1 {
			m.commit(s)
		}
		s, err := m.parse(pieces(body), 2)
		if (err == nil) != (jsonErr == nil) {
			t.Fatalf("parse error %v, encoding/json error %v", err, jsonErr)
		}
		if err != nil {
			return
		}
		if len(s.events) != len(want) {
			t.Fatalf("%d checks, encoding/json %d", len(s.events), len(want))
		}
		for i, e := range s.events {
			w, c := want[i], e.Check
			if c.Node != w.Node || c.CheckID != w.CheckID || c.Name != w.Name || c.Status != w.Status || c.Output != w.Output ||
				c.ServiceID != w.ServiceID || c.ServiceName != w.ServiceName || !slices.Equal(c.ServiceTags, w.ServiceTags) ||
				c.Notes != w.Notes || e.Namespace != w.Namespace {
				t.Fatalf("check %d %+v, encoding/json %+v", i, *c, w)
			}
		}
	})
}

// Answers of a few hundred checks edited at random: the memory, which
// reads each against the last answer, agrees with encoding/json and with
// a memory that reads every answer afresh.
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
		fresh.last = nil // nothing to read against
		want := parseOK(t, fresh, body, uint64(step+1))
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
