package incidents

import (
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("source-blind", func() Rule { return SourceBlind{Severity: Critical} })
}

// SourceBlind fires when Vigie cannot read one of its sources (down,
// refusing the token, stuck) for longer than the grace period: whatever
// happens there meanwhile raises nothing, and the room must know. Seeing
// the source again resolves it.
type SourceBlind struct {
	Severity Severity
}

func (SourceBlind) Name() string { return "source-blind" }

func (r SourceBlind) Evaluate(ev *watchers.Event) []Signal {
	s := ev.Sight
	if s == nil {
		return nil
	}
	sig := Signal{
		Rule: r.Name(), Key: signalKey("sight", ev.Source), Severity: r.Severity,
		Title:  "Vigie cannot see " + s.Source + " since " + s.Since.UTC().Format("15:04 UTC"),
		Labels: Labels{Sight: ev.Source}, At: s.Since,
	}
	switch ev.Type {
	case watchers.SightBlind:
		sig.Status, sig.Reason = Firing, s.Reason
		if !strings.Contains(s.Reason, s.Address) {
			sig.Reason += " (" + s.Address + ")"
		}
	case watchers.SightSeeing:
		sig.Status, sig.Reason = Resolved, "Vigie sees "+s.Source+" again"
	default:
		return nil
	}
	return []Signal{sig}
}
