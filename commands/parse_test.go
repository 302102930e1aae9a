package commands

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode"
)

func TestParse(t *testing.T) {
	cases := []struct {
		line string
		want Invocation
	}{
		{"ping", Invocation{Name: "ping"}},
		{"  PING  ", Invocation{Name: "ping"}},
		{`deploy web image=nginx:1.27 "two words" 'single $x'`, Invocation{Name: "deploy", Args: []string{"web", "two words", "single $x"}, Options: map[string]string{"image": "nginx:1.27"}}},
		{`say "key=value" key2="quoted value" a\ b`, Invocation{Name: "say", Args: []string{"key=value", "a b"}, Options: map[string]string{"key2": "quoted value"}}},
		{`x "esc \" inside" 'no \ escape'`, Invocation{Name: "x", Args: []string{`esc " inside`, `no \ escape`}}},
		{`x “smart quotes” ‘too’ «fr»`, Invocation{Name: "x", Args: []string{"smart quotes", "too", "fr"}}},
		{`x a=b=c =v 9k=v url=http://h/?a=1`, Invocation{Name: "x", Args: []string{"=v", "9k=v"}, Options: map[string]string{"a": "b=c", "url": "http://h/?a=1"}}},
		{`x ""`, Invocation{Name: "x", Args: []string{""}}},
		{"", Invocation{}},
	}
	for _, c := range cases {
		got, err := Parse(c.line)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.line, err)
			continue
		}
		if c.want.Options == nil {
			c.want.Options = map[string]string{}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q)\n got %#v\nwant %#v", c.line, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ line, msg string }{
		{`deploy "web`, `column 8: unterminated quote: missing "`},
		{`deploy 'web`, `column 8: unterminated quote: missing '`},
		{`deploy “web`, `column 8: unterminated quote: missing ”`},
		{`deploy web\`, "a backslash at the end escapes nothing"},
		{`deploy a=1 a=2`, `option "a" given twice`},
		{`"deploy" web`, "command name cannot be quoted"},
	}
	for _, c := range cases {
		_, err := Parse(c.line)
		var pe *ParseError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Parse(%q) = %v, want ParseError containing %q", c.line, err, c.msg)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`deploy web image="a b"`, `x 'a\'`, "x “a”", "a=b", `\`, "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		inv, err := Parse(line)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Column < 1 {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		if inv.Name != strings.ToLower(inv.Name) {
			t.Fatalf("name not lower-cased: %q", inv.Name)
		}
		// Re-quoting the parsed words and parsing again gives the same result.
		var b strings.Builder
		b.WriteString(escapeWord(inv.Name))
		for _, a := range inv.Args {
			b.WriteString(" " + quote(a))
		}
		for k, v := range inv.Options {
			b.WriteString(" " + k + "=" + quote(v))
		}
		again, err := Parse(b.String())
		if inv.Name == "" {
			return
		}
		if err != nil || !reflect.DeepEqual(again, inv) {
			t.Fatalf("round trip of %q via %q: %#v vs %#v (%v)", line, b.String(), inv, again, err)
		}
	})
}

// escapeWord backslash-escapes every rune Parse treats specially.
func escapeWord(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r == '\\' || quotes[r] != 0 || unicode.IsSpace(r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quote wraps s in double quotes, escaping what Parse treats specially.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}
