// Package render turns Vigie's message model into Matrix HTML with a plain
// text fallback, and into console text. All escaping lives here: callers
// build messages from untrusted strings with Text, Code and Pre and can never
// inject markup.
package render

import (
	"fmt"
	"html"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Node is a piece of a message. Build nodes with the functions below.
type Node struct {
	kind     kind
	text     string
	children []Node
}

type kind int

const (
	kText kind = iota + 1
	kBold
	kItalic
	kCode
	kPre
	kLine    // children, then a line break
	kList    // children are items
	kGroup   // children in sequence
	kHeading // a short bold title line
	kTable   // children are rows (kRow) of text cells; the first is the header
	kRow
)

// Text is plain untrusted text.
func Text(s string) Node { return Node{kind: kText, text: s} }

// Textf formats then escapes.
func Textf(format string, args ...any) Node { return Text(fmt.Sprintf(format, args...)) }

// Bold wraps nodes in <strong>.
func Bold(n ...Node) Node { return Node{kind: kBold, children: n} }

// Italic wraps nodes in <em>.
func Italic(n ...Node) Node { return Node{kind: kItalic, children: n} }

// Code is inline monospace text (job names, IDs).
func Code(s string) Node { return Node{kind: kCode, text: s} }

// Pre is a preformatted block (log lines, tables).
func Pre(s string) Node { return Node{kind: kPre, text: s} }

// Line is nodes followed by a line break.
func Line(n ...Node) Node { return Node{kind: kLine, children: n} }

// List is a bulleted list; each item is one node.
func List(items ...Node) Node { return Node{kind: kList, children: items} }

// Group is nodes in sequence.
func Group(n ...Node) Node { return Node{kind: kGroup, children: n} }

// Heading is a title line.
func Heading(n ...Node) Node { return Node{kind: kHeading, children: n} }

// Table is rows of untrusted text under a header row: an HTML table for
// Matrix clients, columns aligned with spaces in plain text.
func Table(header []string, rows ...[]string) Node {
	t := Node{kind: kTable}
	for _, cells := range append([][]string{header}, rows...) {
		row := Node{kind: kRow}
		for _, c := range cells {
			row.children = append(row.children, Text(c))
		}
		t.children = append(t.children, row)
	}
	return t
}

// IsZero reports whether n is the zero Node: nothing to render.
func (n Node) IsZero() bool { return n.kind == 0 }

// Message is a rendered message: HTML for Matrix clients and the plain text
// that is both the Matrix fallback body and what the console prints.
type Message struct {
	Plain string
	HTML  string
}

// Render renders nodes with no size limit.
func Render(nodes ...Node) Message { return RenderLimit(0, nodes...) }

// truncNote is appended where a message was cut.
const truncNote = "… (truncated)"

// RenderLimit renders nodes so that each of Plain and HTML stays within
// maxBytes (0: unlimited). Text is cut on rune boundaries before escaping is
// counted, so a cut never splits an entity, a tag or a UTF-8 sequence, and
// every opened tag is closed.
func RenderLimit(maxBytes int, nodes ...Node) Message {
	root := Group(nodes...)
	return Message{
		Plain: renderWith(maxBytes, root, plainWriter{}),
		HTML:  renderWith(maxBytes, root, htmlWriter{}),
	}
}

// reserve keeps room for closing tags and the truncation note.
const reserve = 256

func renderWith(maxBytes int, root Node, w writer) string {
	r := &renderer{w: w, budget: -1}
	if maxBytes > 0 {
		r.budget = max(maxBytes-reserve, 64)
	}
	r.node(root)
	out := strings.TrimRight(r.sb.String(), "\n")
	if r.truncated {
		out += w.note()
	}
	if maxBytes > 0 && len(out) > maxBytes {
		// Only deep nesting can outgrow the reserve; cut hard as a last resort.
		out = truncateUTF8(out, maxBytes)
	}
	return out
}

type renderer struct {
	w         writer
	sb        strings.Builder
	budget    int // remaining bytes for content; -1 is unlimited
	truncated bool
	listDepth int
}

func (r *renderer) node(n Node) {
	if r.truncated {
		return
	}
	switch n.kind {
	case kText:
		r.text(n.text, r.w.escape)
	case kCode:
		r.raw(r.w.open(kCode, r.listDepth))
		r.text(n.text, r.w.escapeCode)
		r.raw(r.w.close(kCode, r.listDepth))
	case kPre:
		r.blockStart()
		r.raw(r.w.open(kPre, r.listDepth))
		r.text(n.text, r.w.escapePre)
		r.raw(r.w.close(kPre, r.listDepth))
	case kTable:
		r.blockStart()
		r.w.table(r, n)
	case kList:
		r.blockStart()
		r.raw(r.w.open(kList, r.listDepth))
		r.listDepth++
		for _, item := range n.children {
			if r.truncated {
				break
			}
			r.raw(r.w.itemOpen(r.listDepth))
			r.node(item)
			r.raw(r.w.itemClose())
		}
		r.listDepth--
		r.raw(r.w.close(kList, r.listDepth))
	default:
		r.raw(r.w.open(n.kind, r.listDepth))
		for _, c := range n.children {
			r.node(c)
		}
		r.raw(r.w.close(n.kind, r.listDepth))
	}
}

// blockStart puts a block (list, preformatted text) on a line of its own.
func (r *renderer) blockStart() {
	out := r.sb.String()
	if out != "" && !strings.HasSuffix(out, "\n") {
		r.raw(r.w.blockBreak())
	}
}

// raw writes markup; it is always written so tags stay balanced, and only
// counts against the budget.
func (r *renderer) raw(s string) {
	r.sb.WriteString(s)
	if r.budget >= 0 {
		r.budget = max(r.budget-len(s), 0)
	}
}

// text writes escaped text, cutting it when the budget runs out.
func (r *renderer) text(s string, escape func(string) string) {
	if r.truncated {
		return
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	e := escape(s)
	if r.budget < 0 || len(e) <= r.budget {
		r.sb.WriteString(e)
		if r.budget >= 0 {
			r.budget -= len(e)
		}
		return
	}
	// Escaping is per rune, so the escaped width of a prefix is the sum of
	// its runes' widths.
	cut := 0
	for i, c := range s {
		w := len(escape(s[i : i+utf8.RuneLen(c)]))
		if w > r.budget {
			break
		}
		r.budget -= w
		cut = i + utf8.RuneLen(c)
	}
	r.sb.WriteString(escape(s[:cut]))
	r.budget = 0
	r.truncated = true
}

func truncateUTF8(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

type writer interface {
	escape(string) string
	escapeCode(string) string
	escapePre(string) string
	open(k kind, depth int) string
	close(k kind, depth int) string
	itemOpen(depth int) string
	itemClose() string
	blockBreak() string
	note() string
	table(r *renderer, t Node)
}

type htmlWriter struct{}

func (htmlWriter) escape(s string) string {
	return strings.ReplaceAll(html.EscapeString(s), "\n", "<br>")
}
func (htmlWriter) escapeCode(s string) string { return html.EscapeString(s) }
func (htmlWriter) escapePre(s string) string  { return html.EscapeString(s) }

func (htmlWriter) open(k kind, _ int) string {
	switch k {
	case kBold, kHeading:
		return "<strong>"
	case kItalic:
		return "<em>"
	case kCode:
		return "<code>"
	case kPre:
		return "<pre><code>"
	case kList:
		return "<ul>"
	}
	return ""
}

func (htmlWriter) close(k kind, _ int) string {
	switch k {
	case kBold:
		return "</strong>"
	case kHeading:
		return "</strong><br>"
	case kItalic:
		return "</em>"
	case kCode:
		return "</code>"
	case kPre:
		return "</code></pre>"
	case kList:
		return "</ul>"
	case kLine:
		return "<br>"
	}
	return ""
}

func (htmlWriter) itemOpen(int) string { return "<li>" }
func (htmlWriter) itemClose() string   { return "</li>" }
func (htmlWriter) blockBreak() string  { return "" }

func (htmlWriter) table(r *renderer, t Node) {
	r.raw("<table>")
	body := false
	for i, row := range t.children {
		if r.truncated {
			break
		}
		cell := "td"
		if i == 0 {
			cell = "th"
			r.raw("<thead>")
		} else if i == 1 {
			r.raw("<tbody>")
			body = true
		}
		r.raw("<tr>")
		for _, c := range row.children {
			r.raw("<" + cell + ">")
			r.node(c)
			r.raw("</" + cell + ">")
		}
		r.raw("</tr>")
		if i == 0 {
			r.raw("</thead>")
		}
	}
	if body {
		r.raw("</tbody>")
	}
	r.raw("</table>")
}
func (htmlWriter) note() string { return "<br><em>" + truncNote + "</em>" }

type plainWriter struct{}

func (plainWriter) escape(s string) string     { return s }
func (plainWriter) escapeCode(s string) string { return s }
func (plainWriter) escapePre(s string) string  { return s }

func (plainWriter) open(kind, int) string { return "" }

func (plainWriter) close(k kind, _ int) string {
	switch k {
	case kPre, kLine, kHeading:
		return "\n"
	}
	return ""
}

func (plainWriter) itemOpen(depth int) string { return strings.Repeat("  ", depth-1) + "- " }
func (plainWriter) itemClose() string         { return "\n" }
func (plainWriter) blockBreak() string        { return "\n" }

// table pads columns to their widest cell, in runes; the last column is
// not padded, and a dashed line separates the header.
func (plainWriter) table(r *renderer, t Node) {
	var widths []int
	for _, row := range t.children {
		for j, c := range row.children {
			if j >= len(widths) {
				widths = append(widths, 0)
			}
			widths[j] = max(widths[j], utf8.RuneCountInString(c.text))
		}
	}
	for i, row := range t.children {
		if r.truncated {
			return
		}
		for j, c := range row.children {
			if j > 0 {
				r.raw("  ")
			}
			r.text(c.text, func(s string) string { return s })
			if j < len(row.children)-1 {
				r.raw(strings.Repeat(" ", widths[j]-utf8.RuneCountInString(c.text)))
			}
		}
		r.raw("\n")
		if i == 0 {
			total := 0
			for _, w := range widths {
				total += w + 2
			}
			r.raw(strings.Repeat("-", max(total-2, 0)) + "\n")
		}
	}
}
func (plainWriter) note() string { return "\n" + truncNote }

// Excerpt is the start of a plain text for places that only take a line
// (an edit's fallback body): its first line, cut at a word boundary to at
// most maxBytes, with "…" when anything was left out. Never mid-word,
// never mid-character.
func Excerpt(s string, maxBytes int) string {
	line, rest, more := strings.Cut(strings.TrimSpace(s), "\n")
	line = strings.TrimSpace(line)
	more = more && strings.TrimSpace(rest) != ""
	const ellipsis = "…"
	if len(line) <= maxBytes && !more {
		return line
	}
	if len(line)+len(ellipsis) <= maxBytes {
		return line + ellipsis
	}
	cut := truncateUTF8(line, max(maxBytes-len(ellipsis), 0))
	// Back up to the last space, unless the cut falls just before one (a
	// single word longer than the limit is cut, on a character boundary).
	if len(cut) < len(line) && line[len(cut)] != ' ' {
		if i := strings.LastIndexByte(cut, ' '); i > 0 {
			cut = cut[:i]
		}
	}
	return strings.TrimRight(cut, " ") + ellipsis
}

// ansiEscape matches terminal escape sequences: CSI (colours, cursor), OSC
// (titles, links) and the two-byte ones.
var ansiEscape = regexp.MustCompile(`\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])`)

// Terminal turns what a program wrote for a terminal (a task's log) into
// plain text: escape sequences dropped, a line rewritten with carriage
// returns (a progress bar) kept as a terminal would last show it, other
// control characters dropped, invalid UTF-8 replaced. Tabs and newlines
// stay.
func Terminal(s string) string {
	s = strings.ToValidUTF8(ansiEscape.ReplaceAllString(s, ""), "\uFFFD")
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		if j := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); j >= 0 {
			l = l[j+1:]
		}
		lines[i] = strings.Map(func(r rune) rune {
			if r == '\t' || !unicode.IsControl(r) {
				return r
			}
			return -1
		}, l)
	}
	return strings.Join(lines, "\n")
}
