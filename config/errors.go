package config

import (
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with the configuration, located as precisely as
// possible so the user can go straight to it.
type Problem struct {
	File   string // config file path as given to Load; "" without a file
	Line   int    // 1-based; 0 when the key is not in the file (default, environment)
	Column int    // 1-based, only for syntax errors; 0 otherwise
	Key    string // dotted key, e.g. "matrix.homeserver"; "" for some syntax errors
	Msg    string
}

// String formats the problem as "file:line: key: message", omitting the parts
// that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	loc := p.File
	if p.Line > 0 {
		if loc == "" {
			loc = "line"
		}
		loc += ":" + strconv.Itoa(p.Line)
		if p.Column > 0 {
			loc += ":" + strconv.Itoa(p.Column)
		}
	}
	if loc != "" {
		b.WriteString(loc + ": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Errors is the error returned by Load: every problem found, not just the
// first, so one edit-and-retry cycle fixes them all.
type Errors struct {
	Problems []Problem
}

// Error prints one problem per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sortProblems orders problems as they appear in the file; those without a
// line (defaults, environment) come last, by key.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		if a.Column != b.Column {
			return a.Column - b.Column
		}
		return strings.Compare(a.Key, b.Key)
	})
}
