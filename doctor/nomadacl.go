package doctor

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Nomad has no endpoint that says what a token may do: the doctor reads
// the token's policies (a token may read its own) and evaluates them as
// Nomad does (acl/policy.go and acl/acl.go): a policy shorthand expands to
// capabilities, the namespace blocks of all policies merge by name, deny
// wins, and a namespace without a block of its own name takes the closest
// matching glob's.

// nomadNamespacePolicy expands a namespace policy shorthand.
func nomadNamespacePolicy(policy string) []string {
	read := []string{"list-jobs", "parse-job", "read-job", "csi-list-volume", "csi-read-volume",
		"read-job-scaling", "list-scaling-policies", "read-scaling-policy", "host-volume-read"}
	switch policy {
	case "deny":
		return []string{"deny"}
	case "read":
		return read
	case "write":
		return append(slices.Clone(read), "scale-job", "submit-job", "dispatch-job", "read-logs", "read-fs",
			"alloc-exec", "alloc-lifecycle", "csi-mount-volume", "csi-write-volume", "submit-recommendation", "host-volume-create")
	case "scale":
		return []string{"list-scaling-policies", "read-scaling-policy", "read-job-scaling", "scale-job", "read-job", "submit-recommendation"}
	}
	return nil
}

// nomadACL is the merged policies of a token.
type nomadACL struct {
	namespaces map[string]map[string]bool // block name (maybe a glob) → capabilities
	node       string                     // the node policy: "", deny, read or write
	policies   []string                   // names, for messages
}

func newNomadACL() *nomadACL {
	return &nomadACL{namespaces: map[string]map[string]bool{}}
}

// add merges one policy's rules.
func (a *nomadACL) add(name, rules string) error {
	items, err := parseHCL(rules)
	if err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	a.policies = append(a.policies, name)
	for _, it := range items {
		switch it.keys[0] {
		case "namespace":
			if len(it.keys) < 2 || it.body == nil {
				continue
			}
			caps := a.namespaces[it.keys[1]]
			if caps == nil {
				caps = map[string]bool{}
				a.namespaces[it.keys[1]] = caps
			}
			if p := it.body.str("policy"); p != "" {
				for _, c := range nomadNamespacePolicy(p) {
					caps[c] = true
				}
			}
			for _, c := range it.body.list("capabilities") {
				caps[c] = true
			}
		case "node":
			if it.body != nil {
				a.node = mergeLevel(a.node, it.body.str("policy"))
			}
		}
	}
	return nil
}

// mergeLevel merges node policies: the most privilege, deny above all.
func mergeLevel(a, b string) string {
	rank := map[string]int{"": 0, "read": 1, "write": 2, "deny": 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// nodeRead tells whether the token may read nodes.
func (a *nomadACL) nodeRead() bool { return a.node == "read" || a.node == "write" }

// capabilities returns the capabilities in namespace ns, and the block
// that grants them ("" if none matches).
func (a *nomadACL) capabilities(ns string) (map[string]bool, string) {
	if caps, ok := a.namespaces[ns]; ok && !strings.Contains(ns, "*") {
		return caps, ns
	}
	best, bestDiff := "", -1
	names := make([]string, 0, len(a.namespaces))
	for name := range a.namespaces {
		names = append(names, name)
	}
	sort.Strings(names) // stable choice among equals
	for _, name := range names {
		if !strings.Contains(name, "*") || !globMatch(name, ns) {
			continue
		}
		diff := len(ns) - len(strings.ReplaceAll(name, "*", ""))
		if bestDiff < 0 || diff < bestDiff {
			best, bestDiff = name, diff
		}
	}
	if best == "" {
		return nil, ""
	}
	return a.namespaces[best], best
}

// allows tells whether the token has every capability of one of the
// alternatives in ns.
func (a *nomadACL) allows(ns string, anyOf [][]string) bool {
	caps, _ := a.capabilities(ns)
	if caps == nil || caps["deny"] {
		return false
	}
	for _, all := range anyOf {
		ok := true
		for _, c := range all {
			ok = ok && caps[c]
		}
		if ok {
			return true
		}
	}
	return false
}

// exactNamespaces are the namespace blocks without a glob, sorted.
func (a *nomadACL) exactNamespaces() []string {
	var out []string
	for name := range a.namespaces {
		if !strings.Contains(name, "*") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// globMatch matches s against a pattern where "*" is any run of
// characters, as Nomad's namespace globs.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// hclItem is one item of an HCL body: `key "label" { body }` or
// `key = value`.
type hclItem struct {
	keys  []string
	body  hclBody // for blocks and object values
	value any     // string or []any, for attributes
}

type hclBody []hclItem

func (b hclBody) find(key string) *hclItem {
	for i := range b {
		if len(b[i].keys) == 1 && b[i].keys[0] == key {
			return &b[i]
		}
	}
	return nil
}

// str is a string attribute's value.
func (b hclBody) str(key string) string {
	if it := b.find(key); it != nil {
		s, _ := it.value.(string)
		return s
	}
	return ""
}

// list is a list attribute's strings.
func (b hclBody) list(key string) []string {
	it := b.find(key)
	if it == nil {
		return nil
	}
	var out []string
	switch v := it.value.(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	case string:
		out = append(out, v)
	}
	return out
}

// parseHCL reads the subset of HCL (and its JSON form) ACL policies are
// written in: blocks with labels, string, bool and number attributes,
// lists, comments.
func parseHCL(src string) (hclBody, error) {
	if strings.HasPrefix(strings.TrimSpace(src), "{") {
		var doc map[string]any
		if err := json.Unmarshal([]byte(src), &doc); err != nil {
			return nil, fmt.Errorf("JSON rules: %w", err)
		}
		return jsonBody(doc), nil
	}
	toks, err := hclTokens(src)
	if err != nil {
		return nil, err
	}
	p := &hclParser{toks: toks}
	body, err := p.body(false)
	if err != nil {
		return nil, err
	}
	return body, nil
}

// jsonBody maps the JSON form of HCL: {"namespace": {"default": {...}}}
// (or a list of such objects) to items.
func jsonBody(doc map[string]any) hclBody {
	var out hclBody
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, jsonItems([]string{k}, doc[k])...)
	}
	return out
}

func jsonItems(keys []string, v any) []hclItem {
	switch v := v.(type) {
	case map[string]any:
		// A labelled block's object holds its labels as keys; an
		// unlabelled one holds attributes. Blocks Vigie reads are
		// "namespace" (labelled) and "node" (not).
		if keys[0] == "namespace" && len(keys) == 1 {
			var out []hclItem
			labels := make([]string, 0, len(v))
			for l := range v {
				labels = append(labels, l)
			}
			sort.Strings(labels)
			for _, l := range labels {
				out = append(out, jsonItems([]string{keys[0], l}, v[l])...)
			}
			return out
		}
		return []hclItem{{keys: keys, body: jsonBody(v)}}
	case []any:
		if len(v) > 0 {
			if _, ok := v[0].(map[string]any); ok {
				var out []hclItem
				for _, e := range v {
					out = append(out, jsonItems(keys, e)...)
				}
				return out
			}
		}
		return []hclItem{{keys: keys, value: v}}
	default:
		return []hclItem{{keys: keys, value: v}}
	}
}

type hclToken struct {
	kind byte // 'i' identifier, 's' string, or the punctuation itself
	text string
	line int
}

func hclTokens(src string) ([]hclToken, error) {
	var toks []hclToken
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || (c == '/' && i+1 < len(src) && src[i+1] == '/'):
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: unterminated comment", line)
			}
			line += strings.Count(src[i:i+2+end], "\n")
			i += end + 4
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; j < len(src) && src[j] != '"'; j++ {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				if src[j] == '\n' {
					return nil, fmt.Errorf("line %d: unterminated string", line)
				}
				b.WriteByte(src[j])
			}
			if j >= len(src) {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			toks = append(toks, hclToken{'s', b.String(), line})
			i = j + 1
		case strings.IndexByte("{}[]=,:", c) >= 0:
			toks = append(toks, hclToken{c, string(c), line})
			i++
		case c == '<' && strings.HasPrefix(src[i:], "<<"):
			return nil, fmt.Errorf("line %d: heredocs are not supported here", line)
		default:
			j := i
			for j < len(src) && (isIdent(src[j])) {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("line %d: unexpected %q", line, c)
			}
			toks = append(toks, hclToken{'i', src[i:j], line})
			i = j
		}
	}
	return toks, nil
}

func isIdent(c byte) bool {
	return c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

type hclParser struct {
	toks []hclToken
	pos  int
}

func (p *hclParser) peek() *hclToken {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *hclParser) errorf(format string, args ...any) error {
	line := 0
	if t := p.peek(); t != nil {
		line = t.line
	} else if len(p.toks) > 0 {
		line = p.toks[len(p.toks)-1].line
	}
	return fmt.Errorf("line %d: %s", line, fmt.Sprintf(format, args...))
}

// body reads items until "}" (nested) or the end.
func (p *hclParser) body(nested bool) (hclBody, error) {
	var out hclBody
	for {
		t := p.peek()
		switch {
		case t == nil && nested:
			return nil, p.errorf("missing }")
		case t == nil:
			return out, nil
		case t.kind == '}' && nested:
			p.pos++
			return out, nil
		case t.kind == ',':
			p.pos++ // HCL1 allows commas between object items
			continue
		case t.kind != 'i' && t.kind != 's':
			return nil, p.errorf("unexpected %q", t.text)
		}
		var it hclItem
		for t := p.peek(); t != nil && (t.kind == 'i' || t.kind == 's'); t = p.peek() {
			it.keys = append(it.keys, t.text)
			p.pos++
		}
		t = p.peek()
		switch {
		case t == nil:
			return nil, p.errorf("%s: missing = or {", it.keys[0])
		case t.kind == '=' || t.kind == ':':
			p.pos++
			v, body, err := p.value()
			if err != nil {
				return nil, err
			}
			it.value, it.body = v, body
		case t.kind == '{':
			p.pos++
			body, err := p.body(true)
			if err != nil {
				return nil, err
			}
			it.body = body
		default:
			return nil, p.errorf("%s: unexpected %q", it.keys[0], t.text)
		}
		out = append(out, it)
	}
}

// value reads an attribute's value: a string or identifier (true, 3), a
// list, or an object.
func (p *hclParser) value() (any, hclBody, error) {
	t := p.peek()
	if t == nil {
		return nil, nil, p.errorf("missing value")
	}
	p.pos++
	switch t.kind {
	case 's', 'i':
		return t.text, nil, nil
	case '{':
		body, err := p.body(true)
		return nil, body, err
	case '[':
		var list []any
		for {
			t := p.peek()
			if t == nil {
				return nil, nil, p.errorf("missing ]")
			}
			if t.kind == ']' {
				p.pos++
				return list, nil, nil
			}
			if t.kind == ',' {
				p.pos++
				continue
			}
			v, body, err := p.value()
			if err != nil {
				return nil, nil, err
			}
			if body != nil {
				list = append(list, body)
			} else {
				list = append(list, v)
			}
		}
	}
	return nil, nil, p.errorf("unexpected %q", t.text)
}
