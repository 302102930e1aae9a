package commands

import (
	"context"
	"fmt"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// Alerts lists the open incidents, and the sources Vigie cannot see: an
// empty list means nothing only if Vigie is watching.
type Alerts struct {
	Book    IncidentBook
	Sources Sources // nil: no watcher
}

// Spec implements Handler.
func (a *Alerts) Spec() Spec {
	return Spec{Name: "alerts", Aliases: []string{"incidents"}, Access: Read, Summary: "list the open incidents",
		Help: "Shows every open incident, and those held back during a deployment or a drain, oldest first."}
}

// Run implements Handler.
func (a *Alerts) Run(ctx context.Context, req *Request) (render.Node, error) {
	live, err := a.Book.Live(ctx)
	if err != nil {
		return render.Node{}, err
	}
	unseen := unseenSources(a.Sources)
	if len(live) == 0 && len(unseen) == 0 {
		if seen := seenSources(a.Sources); seen != "" {
			return render.Text("✅ No open incident; Vigie sees " + seen + "."), nil
		}
		return render.Text("✅ No open incident."), nil
	}
	var blind []render.Node
	if len(unseen) > 0 {
		blind = []render.Node{render.Heading(render.Text("⚠️ What Vigie cannot see, it cannot alert on")), render.List(unseen...)}
	}
	if len(live) == 0 {
		return render.Group(append(blind, render.Line(render.Text("No open incident among what it sees.")))...), nil
	}
	items := make([]render.Node, len(live))
	for i, in := range live {
		var notes []render.Node
		notes = append(notes, render.Text(" — "+in.Reason+" · "+since(in.OpenedAt, req.Now())))
		switch {
		case in.State == store.IncidentHeld:
			notes = append(notes, render.Text(" · held during the "+in.HoldReason))
		case in.AckedBy != "":
			notes = append(notes, render.Text(" · 👀 "+in.AckedBy))
		}
		if in.SilencedBy != "" {
			notes = append(notes, render.Text(" · 🔇 "+in.SilencedBy))
		}
		items[i] = render.Group(append([]render.Node{render.Bold(render.Text(incidentLine(in)))}, notes...)...)
	}
	return render.Group(append(blind, render.Heading(render.Text(fmt.Sprintf("%d open incident(s)", len(live)))), render.List(items...))...), nil
}
