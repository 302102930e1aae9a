package render

import (
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
)

func TestEscapesUntrustedText(t *testing.T) {
	evil := `<img src=x onerror=alert(1)> & "quotes" <b>job</b> **md** [l](http://x)`
	m := Render(Heading(Text("Job "), Code(evil)), Line(Text(evil)), List(Text(evil), Bold(Text(evil))), Pre(evil))
	if strings.Contains(m.HTML, "<img") || strings.Contains(m.HTML, "<b>") {
		t.Fatalf("markup injected into HTML: %s", m.HTML)
	}
	if !strings.Contains(m.HTML, "&lt;img src=x onerror=alert(1)&gt; &amp; &#34;quotes&#34;") {
		t.Fatalf("text not escaped as expected: %s", m.HTML)
	}
	if strings.Count(m.Plain, evil) != 5 {
		t.Fatalf("plain text must carry the text verbatim 5 times:\n%s", m.Plain)
	}
	assertWellFormed(t, m.HTML)
}

func TestStructure(t *testing.T) {
	m := Render(Heading(Text("Commands")), List(Group(Code("ping"), Text(" — check")), Code("help")), Line(Text("a")), Text("b\nc"))
	wantHTML := "<strong>Commands</strong><br><ul><li><code>ping</code> — check</li><li><code>help</code></li></ul>a<br>b<br>c"
	if m.HTML != wantHTML {
		t.Errorf("HTML\n got %s\nwant %s", m.HTML, wantHTML)
	}
	wantPlain := "Commands\n- ping — check\n- help\na\nb\nc"
	if m.Plain != wantPlain {
		t.Errorf("plain\n got %q\nwant %q", m.Plain, wantPlain)
	}
	pre := Render(Text("log:"), Pre("line1\nline2"))
	if pre.Plain != "log:\nline1\nline2" || pre.HTML != "log:<pre><code>line1\nline2</code></pre>" {
		t.Errorf("pre: %q / %q", pre.Plain, pre.HTML)
	}
}

func TestTable(t *testing.T) {
	m := Render(Text("Jobs:"), Table([]string{"ID", "Status", "Running"}, []string{"web", "running", "2"}, []string{"<crasher>", "dead", "0"}))
	wantPlain := "Jobs:\nID         Status   Running\n---------------------------\nweb        running  2\n<crasher>  dead     0"
	if m.Plain != wantPlain {
		t.Errorf("plain\n got %q\nwant %q", m.Plain, wantPlain)
	}
	wantHTML := "Jobs:<table><thead><tr><th>ID</th><th>Status</th><th>Running</th></tr></thead><tbody><tr><td>web</td><td>running</td><td>2</td></tr>" +
		"<tr><td>&lt;crasher&gt;</td><td>dead</td><td>0</td></tr></tbody></table>"
	if m.HTML != wantHTML {
		t.Errorf("html\n got %s\nwant %s", m.HTML, wantHTML)
	}
	assertWellFormed(t, m.HTML)
	long := RenderLimit(1000, Table([]string{"a"}, func() [][]string {
		var rows [][]string
		for range 500 {
			rows = append(rows, []string{"row"})
		}
		return rows
	}()...))
	if len(long.HTML) > 1000 || len(long.Plain) > 1000 || !strings.Contains(long.Plain, "truncated") {
		t.Errorf("long table: %d/%d bytes", len(long.HTML), len(long.Plain))
	}
	assertWellFormed(t, long.HTML)
}

func TestTruncation(t *testing.T) {
	long := strings.Repeat("<é>", 100000)
	m := RenderLimit(4000, Heading(Text("title")), Pre(long), List(Text("never shown")))
	for name, out := range map[string]string{"html": m.HTML, "plain": m.Plain} {
		if len(out) > 4000 {
			t.Errorf("%s: %d bytes, over the limit", name, len(out))
		}
		if len(out) < 3000 {
			t.Errorf("%s: %d bytes, cut far more than needed", name, len(out))
		}
		if !utf8.ValidString(out) {
			t.Errorf("%s: invalid UTF-8", name)
		}
		if !strings.Contains(out, truncNote) {
			t.Errorf("%s: no truncation note", name)
		}
		if strings.Contains(out, "never shown") {
			t.Errorf("%s: content after the cut was rendered", name)
		}
	}
	assertWellFormed(t, m.HTML)
	if strings.HasSuffix(strings.TrimSuffix(m.HTML, "<br><em>"+truncNote+"</em>"), "&") {
		t.Error("entity split")
	}
	small := RenderLimit(4000, Text("short"))
	if small.Plain != "short" || strings.Contains(small.HTML, truncNote) {
		t.Errorf("short message altered: %+v", small)
	}
}

// assertWellFormed checks that the HTML uses only our tags, all balanced.
func assertWellFormed(t testing.TB, s string) {
	t.Helper()
	allowed := map[string]bool{"strong": true, "em": true, "code": true, "pre": true, "ul": true, "li": true, "br": true,
		"table": true, "thead": true, "tbody": true, "tr": true, "th": true, "td": true}
	var stack []string
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			if len(stack) != 0 {
				t.Fatalf("unclosed tags %v in %q", stack, s)
			}
			return
		case html.StartTagToken:
			name, hasAttr := z.TagName()
			if !allowed[string(name)] || hasAttr {
				t.Fatalf("unexpected tag %q in %q", name, s)
			}
			if string(name) != "br" {
				stack = append(stack, string(name))
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if len(stack) == 0 || stack[len(stack)-1] != string(name) {
				t.Fatalf("unbalanced </%s> (open %v) in %q", name, stack, s)
			}
			stack = stack[:len(stack)-1]
		case html.SelfClosingTagToken:
			t.Fatalf("unexpected self-closing tag in %q", s)
		}
	}
}

func FuzzRender(f *testing.F) {
	f.Add("hello <b>", 300, uint8(0))
	f.Add(strings.Repeat("&", 500), 100, uint8(3))
	f.Add("\xff\xfe", 0, uint8(5))
	f.Fuzz(func(t *testing.T, s string, limit int, shape uint8) {
		if limit < 0 || limit > 1<<16 {
			limit = 0
		}
		nodes := []Node{Text(s), Code(s), Pre(s), List(Text(s), Bold(Italic(Text(s)))), Line(Heading(Text(s))), Table([]string{s, "b"}, []string{"x", s})}
		k := int(shape) % len(nodes)
		m := RenderLimit(limit, nodes[k:]...)
		if limit > 0 && (len(m.HTML) > limit || len(m.Plain) > limit) {
			t.Fatalf("over limit %d: html %d plain %d", limit, len(m.HTML), len(m.Plain))
		}
		if !utf8.ValidString(m.HTML) || !utf8.ValidString(m.Plain) {
			t.Fatal("invalid UTF-8")
		}
		if limit == 0 || limit >= 1024 {
			assertWellFormed(t, m.HTML)
		}
	})
}

func TestExcerpt(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 20, "short"},
		{"headline\nmore lines", 20, "headline…"},
		{"headline\n\n", 20, "headline"},
		{"🔴 CRITICAL · web: allocations failing", 20, "🔴 CRITICAL ·…"},
		{"one two three", 12, "one two…"},
		{"one two three", 10, "one two…"},
		{"unbreakableword", 8, "unbre…"},
		{"ééééé", 6, "é…"},
	} {
		if got := Excerpt(c.in, c.max); got != c.want || len(got) > c.max {
			t.Errorf("Excerpt(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}

func FuzzExcerpt(f *testing.F) {
	f.Add("🔴 CRITICAL · web: allocations failing\nLatest: x", 20)
	f.Add("a b", 1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = max(n%300, -n%300) + 4
		got := Excerpt(s, n)
		if len(got) > n || !utf8.ValidString(got) && utf8.ValidString(s) || strings.Contains(got, "\n") {
			t.Fatalf("Excerpt(%q, %d) = %q", s, n, got)
		}
	})
}

func TestTerminal(t *testing.T) {
	for in, want := range map[string]string{
		"plain\ttext\nlines": "plain\ttext\nlines",
		"\x1b[31merror:\x1b[0m boom \x1b]8;;http://x\x07link\x1b]8;;\x07\x1b(B": "error: boom link",
		"windows\r\nlines\r\n":           "windows\nlines\n",
		"progress 10%\rprogress 100%\n":  "progress 100%\n",
		"bell\a back\bspace \x00nul\x7f": "bell backspace nul",
		"bad \xff\xfe utf8":              "bad \uFFFD utf8",
	} {
		if got := Terminal(in); got != want {
			t.Errorf("Terminal(%q) = %q, want %q", in, got, want)
		}
	}
}
