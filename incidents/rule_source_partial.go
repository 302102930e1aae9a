package incidents

import (
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("source-partial", func() Rule { return SourcePartial{Severity: Warning} })
}

// SourcePartial fires when a source answers Vigie but leaves part of its
// state out (Consul filtering checks by ACL): what it leaves out can never
// raise an alert, and the answers look healthy. It resolves when the
// source shows everything again.
type SourcePartial struct {
	Severity Severity
}

func (SourcePartial) Name() string { return "source-partial" }

func (r SourcePartial) Evaluate(ev *watchers.Event) []Signal {
	s := ev.Sight
	if s == nil {
		return nil
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("sight", ev.Source, "partial"), Severity: r.Severity,
		Title:  "Vigie sees only part of " + s.Source,
		Labels: Labels{Sight: ev.Source}, At: s.Since,
	}
	switch ev.Type {
	case watchers.SightPartial:
		sig.Status, sig.Reason = Firing, s.Reason
		if !strings.Contains(s.Reason, s.Address) {
			sig.Reason += " (" + s.Address + ")"
		}
	case watchers.SightWhole:
		sig.Status, sig.Reason = Resolved, "Vigie sees all of "+s.Source+" again"
	default:
		return nil
	}
	return []Signal{sig}
}
