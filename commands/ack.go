package commands

import (
	"context"

	"github.com/vigie/vigie/render"
)

// Ack acknowledges an incident: someone is on it, reminders stop.
type Ack struct{ Book IncidentBook }

// Spec implements Handler.
func (a *Ack) Spec() Spec {
	return Spec{Name: "ack", Access: State, Summary: "acknowledge an incident", Usage: "<incident>",
		Help:    "Marks the incident as taken care of by you; its message shows it and reminders stop. Reacting 👀 to the message does the same.",
		MinArgs: 1, MaxArgs: 1}
}

// Run implements Handler.
func (a *Ack) Run(ctx context.Context, req *Request) (render.Node, error) {
	id, err := parseID("an incident", req.Args[0])
	if err != nil {
		return render.Node{}, err
	}
	in, err := a.Book.Acknowledge(ctx, id, req.Sender)
	if err != nil {
		return render.Node{}, err
	}
	return render.Text("👀 Acknowledged " + incidentLine(in)), nil
}
