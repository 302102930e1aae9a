package incidents

import (
	"fmt"

	"github.com/vigie/vigie/watchers"
)

func init() {
	register("source-rewound", func() Rule { return SourceRewound{Severity: Warning} })
}

// SourceRewound says so when a source's history restarted below what
// Vigie had read (a rebuilt cluster, a restored snapshot, a new dev
// agent): Vigie follows it from its new position, and what happened
// between the old cluster's end and that position was never seen.
type SourceRewound struct {
	Severity Severity
}

func (SourceRewound) Name() string { return "source-rewound" }

func (r SourceRewound) Evaluate(ev *watchers.Event) []Signal {
	s := ev.Sight
	if s == nil || ev.Type != watchers.SightRewound {
		return nil
	}
	return []Signal{{
		Rule: r.Name(), Key: signalKey("sight", ev.Source, "rewound"), Severity: r.Severity, Status: Notice,
		Title: fmt.Sprintf("%s's history restarted at index %d; resuming from there", s.Source, s.To),
		Reason: fmt.Sprintf("Vigie had read %s up to index %d (cluster rebuilt, snapshot restored or a new agent): what happened there before index %d was not seen",
			s.Address, s.From, s.To),
		Labels: Labels{Sight: ev.Source}, At: s.Since,
	}}
}
