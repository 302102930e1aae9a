package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("state-lost", func() Rule { return StateLost{Severity: Critical} })
}

// StateLost says loudly that a new leader started without the last
// leader's state: its incidents, silences, acknowledgements and pending
// messages are gone, and what is still wrong is alerted again as new.
type StateLost struct {
	Severity Severity
}

func (StateLost) Name() string { return "state-lost" }

func (r StateLost) Evaluate(ev *watchers.Event) []Signal {
	l := ev.Leader
	if l == nil || ev.Type != watchers.LeaderStateLost {
		return nil
	}
	return []Signal{{
		Rule: r.Name(), Key: signalKey("leader", fmt.Sprint(l.Term), "state-lost"), Severity: r.Severity, Status: Notice,
		Title: fmt.Sprintf("Vigie instance %s leads without the last leader's state", l.Instance),
		Reason: l.Lost + ": incidents, silences, acknowledgements and unsent messages of the last leader are lost; " +
			"what is still wrong will be alerted again as new",
		Labels: Labels{Sight: "leader"}, At: l.At,
	}}
}
