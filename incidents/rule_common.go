package incidents

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/vigie/vigie/watchers"
)

// signalKey joins key segments, escaping each one: dispatched job IDs
// contain "/", and without escaping the "alloc/<ns>/backup/*" resolution
// of a stopped parent job would also match its children's keys.
func signalKey(segments ...string) string {
	escaped := make([]string, len(segments))
	for i, s := range segments {
		escaped[i] = url.PathEscape(s)
	}
	return strings.Join(escaped, "/")
}

// eventNamespace is the event's Nomad namespace; an empty one means the
// default namespace, so that keys never hold an empty segment.
func eventNamespace(ev *watchers.Event) string {
	if ev.Namespace == "" {
		return "default"
	}
	return ev.Namespace
}

// nomadShortID abbreviates a Nomad UUID the way the Nomad CLI does.
func nomadShortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// jobEnded reports whether a Job event says the job was stopped or purged,
// which ends every problem the job had: nothing will resolve them later.
func jobEnded(ev *watchers.Event) (reason string, ended bool) {
	switch j := ev.Job; {
	case j == nil:
		return "", false
	case j.Purged:
		return "job purged", true
	case j.Stop:
		return "job stopped", true
	}
	return "", false
}

// maxOutputLine bounds the untrusted check output quoted in a reason.
const maxOutputLine = 200

// firstOutputLine is the first non-empty line of s, trimmed and cut to
// maxOutputLine characters.
func firstOutputLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	if utf8.RuneCountInString(s) > maxOutputLine {
		s = string([]rune(s)[:maxOutputLine-1]) + "…"
	}
	return s
}
