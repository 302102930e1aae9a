package incidents

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/vigie/vigie/internal/suggest"
	"github.com/vigie/vigie/store"
)

// MatcherLabels are the labels a silence can match on.
var MatcherLabels = []string{"namespace", "job", "group", "node", "check", "service", "rule", "key", "severity"}

// Matcher is one label=glob condition of a silence.
type Matcher struct {
	Label string
	Glob  string
}

// ParseMatchers reads "job=web*,node=n1": every condition must hold.
func ParseMatchers(s string) ([]Matcher, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty matcher: write label=glob, e.g. job=web or node=worker-*")
	}
	var out []Matcher
	for _, part := range strings.Split(s, ",") {
		label, glob, ok := strings.Cut(strings.TrimSpace(part), "=")
		label = strings.ToLower(strings.TrimSpace(label))
		if !ok || glob == "" {
			return nil, fmt.Errorf("matcher %q: write label=glob, e.g. job=web", part)
		}
		if !slices.Contains(MatcherLabels, label) {
			if near, ok := suggest.Closest(label, MatcherLabels); ok {
				return nil, fmt.Errorf("unknown label %q (did you mean %q?)", label, near)
			}
			return nil, fmt.Errorf("unknown label %q; use one of %s", label, strings.Join(MatcherLabels, ", "))
		}
		if _, err := path.Match(glob, ""); err != nil {
			return nil, fmt.Errorf("matcher %q: bad glob: %v", part, err)
		}
		out = append(out, Matcher{Label: label, Glob: glob})
	}
	return out, nil
}

// FormatMatchers writes matchers back in their canonical form.
func FormatMatchers(ms []Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Label + "=" + m.Glob
	}
	return strings.Join(parts, ",")
}

// matches reports whether every matcher holds for the incident.
func matches(ms []Matcher, in *store.Incident) bool {
	l := labelsOf(in)
	values := map[string]string{
		"namespace": l.Namespace, "job": l.Job, "group": l.Group, "node": l.Node, "check": l.Check,
		"service": l.Service, "rule": in.Rule, "key": in.Key, "severity": Severity(in.Severity).String(),
	}
	for _, m := range ms {
		v := values[m.Label]
		if ok, _ := path.Match(m.Glob, v); !ok || v == "" {
			return false
		}
	}
	return true
}

// silencedBy names the active silence covering an incident, or "".
func (p *pass) silencedBy(ctx context.Context, in *store.Incident) (string, error) {
	active, err := p.tx.ActiveSilences(ctx, p.now)
	if err != nil {
		return "", err
	}
	for _, s := range active {
		if s.IncidentID != 0 {
			if s.IncidentID == in.ID {
				return s.CreatedBy, nil
			}
			continue
		}
		ms, err := ParseMatchers(s.Matchers)
		if err == nil && matches(ms, in) {
			return "silence #" + strconv.FormatInt(s.ID, 10) + " (" + s.CreatedBy + ")", nil
		}
	}
	return "", nil
}
