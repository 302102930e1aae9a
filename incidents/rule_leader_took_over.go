package incidents

import (
	"fmt"
	"strings"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("leader-took-over", func() Rule { return LeaderTookOver{Severity: Info} })
}

// LeaderTookOver says which instance leads after a takeover and from what
// state, so that the room knows why a gap or a repeat may follow; refused
// replicas (corrupt, unverifiable) make it a warning.
type LeaderTookOver struct {
	Severity Severity
}

func (LeaderTookOver) Name() string { return "leader-took-over" }

func (r LeaderTookOver) Evaluate(ev *watchers.Event) []Signal {
	l := ev.Leader
	if l == nil || ev.Type != watchers.LeaderTookOver {
		return nil
	}
	sev, reason := r.Severity, "State restored from "+l.From
	if len(l.Refused) > 0 {
		sev = max(sev, Warning)
		reason += fmt.Sprintf("; refused %d newer replica(s): %s", len(l.Refused), strings.Join(l.Refused, "; "))
	}
	return []Signal{{
		Rule: r.Name(), Key: signalKey("leader", fmt.Sprint(l.Term)), Severity: sev, Status: Notice,
		Title:  fmt.Sprintf("Vigie instance %s now leads (term %d)", l.Instance, l.Term),
		Reason: reason, Labels: Labels{Sight: "leader"}, At: l.At,
	}}
}
