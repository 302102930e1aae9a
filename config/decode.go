package config

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/vigie/vigie/internal/suggest"
)

// decoder copies a TOML document into a Config and collects every problem on
// the way. It walks the document itself instead of relying on go-toml's
// struct decoding, which stops at the first type error.
type decoder struct {
	file     string
	lines    map[string]int // dotted key (and "key[i]" for array entries) → line
	problems []Problem
}

// add records a problem located at key's line, if the key is in the file.
func (d *decoder) add(key, format string, args ...any) {
	d.addAt(key, d.lines[key], format, args...)
}

func (d *decoder) addAt(key string, line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// entryLine is the line of the i-th element of the array at key, falling
// back to the key's own line.
func (d *decoder) entryLine(key string, i int) int {
	if l, ok := d.lines[entryKey(key, i)]; ok {
		return l
	}
	return d.lines[key]
}

func entryKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

// decodeDocument parses data and copies it into c. It reports false when the
// document is not valid TOML, in which case nothing else can be checked.
func (d *decoder) decodeDocument(data []byte, c *Config) bool {
	// Unmarshalling into a generic map does full TOML validation (syntax,
	// duplicate keys, table redefinitions) and yields typed values that the
	// schema walk below can check key by key.
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		p := Problem{File: d.file, Msg: "invalid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
		// No Key: go-toml's is relative to the current [table], which
		// would be misleading, and file:line:column is precise enough.
		var de *toml.DecodeError
		if errors.As(err, &de) {
			p.Line, p.Column = de.Position()
		}
		d.problems = append(d.problems, p)
		return false
	}
	d.lines = keyLines(data)
	d.table(nil, doc, reflect.ValueOf(c).Elem())
	return true
}

// table decodes the TOML table m, found at path, into the struct v.
func (d *decoder) table(path []string, m map[string]any, v reflect.Value) {
	fields := tomlFields(v.Type())
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic problem order for equal lines
	for _, name := range names {
		sub := append(slices.Clip(path), name)
		i, ok := fields[name]
		if !ok {
			d.unknown(sub, m[name], fields)
			continue
		}
		d.value(sub, m[name], v.Field(i))
	}
}

// value decodes one TOML value into the struct field fv.
func (d *decoder) value(path []string, raw any, fv reflect.Value) {
	key := joinKey(path)
	switch dst := fv.Addr().Interface().(type) {
	case *Duration:
		s, ok := raw.(string)
		if !ok {
			if n, isInt := raw.(int64); isInt {
				d.add(key, `must be a duration string with a unit, got the bare number %d (write "%ds" or "%dm")`, n, n, n)
				return
			}
			d.add(key, `must be a duration string such as "30s" or "5m", got %s`, tomlType(raw))
			return
		}
		if err := dst.UnmarshalText([]byte(s)); err != nil {
			d.add(key, "%v", err)
		}
	case *Size:
		switch v := raw.(type) {
		case int64:
			if v < 0 {
				d.add(key, "must not be negative, got %d", v)
				return
			}
			*dst = Size(v)
		case string:
			if err := dst.UnmarshalText([]byte(v)); err != nil {
				d.add(key, "%v", err)
			}
		default:
			d.add(key, "must be %s; got %s", sizeForms, tomlType(raw))
		}
	case *string:
		s, ok := raw.(string)
		if !ok {
			d.add(key, "must be a string, got %s", tomlType(raw))
			return
		}
		*dst = s
	case *bool:
		b, ok := raw.(bool)
		if !ok {
			d.add(key, "must be true or false, got %s", tomlType(raw))
			return
		}
		*dst = b
	case *int:
		n, ok := raw.(int64)
		if !ok {
			d.add(key, "must be an integer, got %s", tomlType(raw))
			return
		}
		if fv.OverflowInt(n) {
			d.add(key, "%d is too large", n)
			return
		}
		*dst = int(n)
	case *[]string:
		arr, ok := raw.([]any)
		if !ok {
			d.add(key, "must be an array of strings, got %s", tomlType(raw))
			return
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				d.addAt(key, d.entryLine(key, i), "entry %d must be a string, got %s", i+1, tomlType(e))
				continue
			}
			out = append(out, s)
		}
		*dst = out
	default:
		if fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct {
			d.arrayOfTables(path, raw, fv)
			return
		}
		if fv.Kind() != reflect.Struct {
			panic("config: unsupported field type " + fv.Type().String())
		}
		m, ok := raw.(map[string]any)
		if !ok {
			d.add(key, "must be a table ([%s] section), got %s", key, tomlType(raw))
			return
		}
		d.table(path, m, fv)
	}
}

// arrayOfTables decodes [[key]] entries into a slice of structs, naming
// each entry key[i] in problems.
func (d *decoder) arrayOfTables(path []string, raw any, fv reflect.Value) {
	key := joinKey(path)
	arr, ok := raw.([]any)
	if !ok {
		if tables, isTables := raw.([]map[string]any); isTables {
			for _, t := range tables {
				arr = append(arr, t)
			}
		} else {
			d.add(key, "must be an array of tables ([[%s]] sections), got %s", key, tomlType(raw))
			return
		}
	}
	out := reflect.MakeSlice(fv.Type(), len(arr), len(arr))
	for i, e := range arr {
		m, ok := e.(map[string]any)
		sub := append(slices.Clip(path[:len(path)-1]), entryKey(path[len(path)-1], i))
		if !ok {
			d.addAt(key, d.entryLine(key, i), "entry %d must be a table, got %s", i+1, tomlType(e))
			continue
		}
		d.table(sub, m, out.Index(i))
	}
	fv.Set(out)
}

// unknown reports a key that is not in the schema, with the best hint.
func (d *decoder) unknown(path []string, raw any, fields map[string]int) {
	key := joinKey(path)
	name := path[len(path)-1]
	if s, ok := inlineSecret(path); ok {
		d.add(key, "secrets are not accepted inline; use %s or the %s environment variable", s.fileKey, s.env)
		return
	}
	if looksSecret(name) {
		d.add(key, "secrets are not accepted inline; name a file with a *_file key or use an environment variable (see config.example.toml)")
		return
	}
	what := "key"
	if _, ok := raw.(map[string]any); ok {
		what = "table"
	}
	if hint := suggestKey(path, fields); hint != "" {
		d.add(key, "unknown %s (did you mean %q?)", what, hint)
		return
	}
	d.add(key, "unknown %s", what)
}

// suggestKey proposes a valid dotted key for the unknown path: the closest
// name in the same table, else the same name in another table (a key written
// under the wrong [section]).
func suggestKey(path []string, fields map[string]int) string {
	name := path[len(path)-1]
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names) // Closest breaks ties by order
	if best, ok := suggest.Closest(name, names); ok {
		return joinKey(append(slices.Clip(path[:len(path)-1]), best))
	}
	for _, k := range schemaKeys() {
		if strings.EqualFold(k[len(k)-1], name) {
			return joinKey(k)
		}
	}
	return ""
}

// looksSecret catches inline credentials that are not near any known secret
// name, so that they get the "not inline" explanation rather than a vague
// "unknown key".
func looksSecret(name string) bool {
	n := strings.ToLower(name)
	if strings.HasSuffix(n, "_file") {
		return false
	}
	for _, w := range []string{"token", "password", "passwd", "secret", "pickle", "apikey", "api_key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// tomlFields maps the TOML names of t's fields to their index.
func tomlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name := tomlName(t.Field(i)); name != "" {
			fields[name] = i
		}
	}
	return fields
}

// tomlName is the field's TOML key, "" for fields that are not TOML keys.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// schemaKeys lists the path of every leaf key of Config, in struct order.
func schemaKeys() [][]string {
	var keys [][]string
	var walk func(prefix []string, t reflect.Type)
	walk = func(prefix []string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			path := append(slices.Clip(prefix), name)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
				walk(path, f.Type)
				continue
			}
			if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
				walk(path, f.Type.Elem())
				continue
			}
			keys = append(keys, path)
		}
	}
	walk(nil, reflect.TypeFor[Config]())
	return keys
}

// tomlType names the TOML type of a decoded value for error messages.
func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time, toml.LocalDateTime:
		return "a date-time"
	case toml.LocalDate:
		return "a date"
	case toml.LocalTime:
		return "a time"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// joinKey writes a key path the way it would be written in TOML, quoting
// parts that are not bare keys so that "a.b" and a.b stay distinct.
func joinKey(path []string) string {
	parts := make([]string, len(path))
	for i, p := range path {
		parts[i] = p
		// An [[array.table]] entry part, "rooms[1]", stays bare.
		if j := strings.LastIndexByte(p, '['); j > 0 && strings.HasSuffix(p, "]") {
			if _, err := strconv.Atoi(p[j+1 : len(p)-1]); err == nil {
				p = p[:j]
			}
		}
		if p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) {
			parts[i] = strconv.Quote(p)
		}
	}
	return strings.Join(parts, ".")
}

// keyLines maps every key of a valid document to the line where it first
// appears: table headers, dotted keys, keys of inline tables, and array
// entries as "key[i]". go-toml's decoder does not expose positions of keys
// that decode fine but fail validation, hence this separate pass.
func keyLines(data []byte) map[string]int {
	var nl []int // offsets of '\n', to turn byte offsets into lines
	for i, b := range data {
		if b == '\n' {
			nl = append(nl, i)
		}
	}
	lw := lineWalker{lines: map[string]int{}, nl: nl}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	arrayTables := map[string]int{} // entries seen per [[array.table]]
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table = lw.key(nil, e.Key())
			// A sub-table of an array entry, [backups.targets.postgres],
			// belongs to the entry last opened: backups.targets[2].postgres.
			named := slices.Clone(table)
			for i := range table {
				if n := arrayTables[joinKey(named[:i+1])]; n > 0 {
					table[i] = entryKey(named[i], n-1)
				}
			}
			lw.lines[joinKey(table)] = lw.lastLine
		case unstable.ArrayTable:
			// Entries are named like array entries, "alerts.rooms[1]", so
			// that their keys get lines of their own.
			table = lw.key(nil, e.Key())
			base := joinKey(table)
			i := arrayTables[base]
			arrayTables[base]++
			table[len(table)-1] = entryKey(table[len(table)-1], i)
			lw.lines[joinKey(table)] = lw.lastLine
		case unstable.KeyValue:
			lw.keyValue(table, e)
		}
	}
	return lw.lines
}

type lineWalker struct {
	lines    map[string]int
	nl       []int
	lastLine int // line of the last key part walked
}

func (w *lineWalker) line(r unstable.Range) int {
	return sort.SearchInts(w.nl, int(r.Offset)) + 1
}

func (w *lineWalker) record(key string, r unstable.Range) {
	if _, ok := w.lines[key]; !ok {
		w.lines[key] = w.line(r)
	}
}

// key records each prefix of a (dotted) key and returns the full path.
func (w *lineWalker) key(prefix []string, it unstable.Iterator) []string {
	path := slices.Clone(prefix)
	for it.Next() {
		n := it.Node()
		path = append(path, string(n.Data))
		w.record(joinKey(path), n.Raw)
		w.lastLine = w.line(n.Raw)
	}
	return path
}

func (w *lineWalker) keyValue(prefix []string, kv *unstable.Node) {
	path := w.key(prefix, kv.Key())
	v := kv.Value()
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				w.keyValue(path, n)
			}
		}
	case unstable.Array:
		key := joinKey(path)
		i := 0
		it := v.Children()
		for it.Next() {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			// Nested arrays carry no position; they fall back to the key's line.
			if n.Raw.Length > 0 {
				w.record(entryKey(key, i), n.Raw)
			}
			// An inline table entry's keys are named as those of an
			// [[array.table]] entry: stolon.clusters[0].name.
			if n.Kind == unstable.InlineTable {
				entry := append(slices.Clip(path[:len(path)-1]), entryKey(path[len(path)-1], i))
				kvs := n.Children()
				for kvs.Next() {
					if kv := kvs.Node(); kv.Kind == unstable.KeyValue {
						w.keyValue(entry, kv)
					}
				}
			}
			i++
		}
	}
}
