package commands

import (
	"fmt"
	"strings"
	"unicode"
)

// Invocation is a parsed command line: the command name, its positional
// arguments and its key=value options.
type Invocation struct {
	Name    string
	Args    []string
	Options map[string]string
}

// ParseError says what is wrong with a command line and where.
type ParseError struct {
	Column int // 1-based, in runes
	Msg    string
}

func (e *ParseError) Error() string { return fmt.Sprintf("column %d: %s", e.Column, e.Msg) }

// quotes maps opening quote runes to their closing rune. Typographic quotes
// are accepted because phone keyboards substitute them for straight ones.
var quotes = map[rune]rune{'"': '"', '\'': '\'', '“': '”', '‘': '’', '«': '»'}

// Parse splits a command line like a shell would, minus expansion: words
// are separated by white space, single or double quotes group words, a
// backslash escapes the next character (outside single quotes). A word of
// the form key=value (key unquoted) is an option; "key=value" in quotes is
// a positional argument.
func Parse(line string) (Invocation, error) {
	words, err := split(line)
	if err != nil {
		return Invocation{}, err
	}
	inv := Invocation{Options: map[string]string{}}
	for i, w := range words {
		if i == 0 {
			if w.quoted || w.text == "" {
				return inv, &ParseError{Column: w.col, Msg: "the command name cannot be quoted or empty"}
			}
			inv.Name = strings.ToLower(w.text)
			continue
		}
		if key, value, ok := strings.Cut(w.text, "="); ok && w.keyLen > len(key) && validKey(key) {
			key = strings.ToLower(key)
			if _, dup := inv.Options[key]; dup {
				return inv, &ParseError{Column: w.col, Msg: fmt.Sprintf("option %q given twice", key)}
			}
			inv.Options[key] = value
			continue
		}
		inv.Args = append(inv.Args, w.text)
	}
	return inv, nil
}

type word struct {
	text   string
	col    int
	quoted bool
	keyLen int // bytes before the first quote or escape: the = of an option must come before them
}

func split(line string) ([]word, error) {
	var words []word
	var cur strings.Builder
	var w *word
	col := 0
	var closing rune
	quoteCol := 0
	escaped := false
	for _, r := range line {
		col++
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case closing != 0 && r == closing:
			closing = 0
		case closing == '\'' || closing == '’':
			cur.WriteRune(r)
		case r == '\\':
			if w == nil {
				w = &word{col: col, keyLen: -1}
			}
			w.markSpecial(cur.Len())
			escaped = true
		case closing != 0:
			cur.WriteRune(r)
		case quotes[r] != 0:
			if w == nil {
				w = &word{col: col, keyLen: -1}
			}
			w.markSpecial(cur.Len())
			w.quoted = true
			closing, quoteCol = quotes[r], col
		case unicode.IsSpace(r):
			if w != nil {
				w.finish(&cur)
				words = append(words, *w)
				w = nil
			}
		default:
			if w == nil {
				w = &word{col: col, keyLen: -1}
			}
			cur.WriteRune(r)
		}
	}
	if closing != 0 {
		return nil, &ParseError{Column: quoteCol, Msg: fmt.Sprintf("unterminated quote: missing %c", closing)}
	}
	if escaped {
		return nil, &ParseError{Column: col, Msg: "a backslash at the end escapes nothing"}
	}
	if w != nil {
		w.finish(&cur)
		words = append(words, *w)
	}
	return words, nil
}

func (w *word) markSpecial(at int) {
	if w.keyLen < 0 {
		w.keyLen = at
	}
}

func (w *word) finish(cur *strings.Builder) {
	w.text = cur.String()
	if w.keyLen < 0 {
		w.keyLen = len(w.text)
	}
	cur.Reset()
}

// validKey accepts option names like image, dry-run, group.count.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		letter := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !letter && (i == 0 || !(r == '-' || r == '.' || (r >= '0' && r <= '9'))) {
			return false
		}
	}
	return true
}
