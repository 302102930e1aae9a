// Package incidents turns watcher events into living incidents: rules map
// events to signals, the engine keys signals into incidents, suppresses,
// silences and bounds them, and persists every message an incident causes
// in the outbox together with the watcher's cursor.
package incidents

import (
	"fmt"
	"sort"
	"time"

	"github.com/vigie/vigie/watchers"
)

// Severity orders signals for routing and reminders.
type Severity int

const (
	Info Severity = iota + 1
	Warning
	Critical
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// ParseSeverity reads a severity name.
func ParseSeverity(s string) (Severity, error) {
	for _, v := range []Severity{Info, Warning, Critical} {
		if v.String() == s {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q (info, warning, critical)", s)
}

// Status is what a signal says about its incident.
type Status int

const (
	// Firing: the problem is present (opens the incident or updates it).
	Firing Status = iota + 1
	// Resolved: the problem is gone (resolves the open incident, if any).
	Resolved
	// Notice: a one-off informational fact (a job was stopped): posted
	// once, never open.
	Notice
)

// Labels describe what a signal is about, for routing, silences and
// suppression. Empty fields are unknown or not applicable.
type Labels struct {
	Namespace  string
	Job        string
	Group      string
	Node       string // node name (Nomad) or Consul node
	Check      string // Consul check ID
	Service    string // Consul service name
	Alloc      string // allocation ID
	Deployment string // deployment ID
	// Sight: the source (watcher name) an incident about Vigie's own watch
	// is about. Such incidents go to every alert room whatever its
	// filters: a room is told when Vigie cannot see what it would be told.
	Sight string
}

// Detail is one entry of an incident's thread: a line and an optional
// preformatted block (a task's stderr). Both are untrusted text.
type Detail struct {
	Text string
	Pre  string
}

// Signal is a rule's verdict on one event.
type Signal struct {
	Rule     string
	Key      string // one incident per key at a time, e.g. "alloc/default/web/api"
	Severity Severity
	Status   Status
	Title    string  // stable headline of the incident, e.g. "web/api: allocations failing"
	Reason   string  // the latest reason, e.g. "task server exited with code 1"
	Detail   *Detail // for the thread, nil if nothing worth a thread entry
	Labels   Labels
	At       time.Time // when it happened at the source; zero: now
	// Occurrence names what happened, e.g. "alloc <ID> failed": Nomad tells
	// one failure in several events (Allocation, Deployment and Node
	// topics, plan results), and an occurrence the incident has counted is
	// not counted or posted again. Empty: every change of reason counts.
	Occurrence string
	// Settle: a resolution that holds only once the key has stayed quiet
	// for Config.SettleAfter (a task up for a moment between two crashes
	// is not healthy again); a firing signal meanwhile cancels it.
	Settle bool
	// Hold: a new incident waits, unposted, until the incident whose
	// Releases is this reason ends, or Config.MaxHold passes.
	Hold string
	// Releases: the hold reason this incident's end releases.
	Releases string
}

// Rule maps one event to signals. Rules are pure: no I/O, no state.
type Rule interface {
	Name() string
	Evaluate(ev *watchers.Event) []Signal
}

// SnapshotRule also sees whole Consul snapshots, for facts no single check
// tells (a service with no instance left). known lists the services of the
// previous snapshot.
type SnapshotRule interface {
	Rule
	EvaluateSnapshot(checks []*watchers.Event, known []string) (signals []Signal, services []string)
}

// defaultRules is filled by each rule file's init, by name.
var defaultRules = map[string]func() Rule{}

func register(name string, f func() Rule) {
	if _, dup := defaultRules[name]; dup {
		panic("incidents: rule registered twice: " + name)
	}
	defaultRules[name] = f
}

// RuleNames lists the built-in rules, sorted.
func RuleNames() []string {
	names := make([]string, 0, len(defaultRules))
	for n := range defaultRules {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Rules builds the built-in rules minus the disabled ones, with severities
// overridden by name. Unknown names are errors (config validation).
func Rules(disabled []string, severity map[string]Severity) ([]Rule, error) {
	off := map[string]bool{}
	for _, n := range disabled {
		if _, ok := defaultRules[n]; !ok {
			return nil, fmt.Errorf("unknown rule %q", n)
		}
		off[n] = true
	}
	for n := range severity {
		if _, ok := defaultRules[n]; !ok {
			return nil, fmt.Errorf("unknown rule %q", n)
		}
	}
	var out []Rule
	for _, n := range RuleNames() {
		if off[n] {
			continue
		}
		r := defaultRules[n]()
		if s, ok := severity[n]; ok {
			r = withSeverity{Rule: r, severity: s}
		}
		out = append(out, r)
	}
	return out, nil
}

// withSeverity overrides the severity of a rule's firing signals.
type withSeverity struct {
	Rule
	severity Severity
}

func (w withSeverity) Evaluate(ev *watchers.Event) []Signal {
	return w.override(w.Rule.Evaluate(ev))
}

func (w withSeverity) override(sigs []Signal) []Signal {
	for i := range sigs {
		if sigs[i].Status != Resolved {
			sigs[i].Severity = w.severity
		}
	}
	return sigs
}
