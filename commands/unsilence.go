package commands

import (
	"context"
	"fmt"

	"github.com/vigie/vigie/render"
)

// Unsilence ends a silence early.
type Unsilence struct{ Book IncidentBook }

// Spec implements Handler.
func (u *Unsilence) Spec() Spec {
	return Spec{Name: "unsilence", Access: State, Summary: "end a silence now", Usage: "<silence>",
		Help: "Incidents it covered are posted (or updated) within a second.", MinArgs: 1, MaxArgs: 1}
}

// Run implements Handler.
func (u *Unsilence) Run(ctx context.Context, req *Request) (render.Node, error) {
	id, err := parseID("a silence", req.Args[0])
	if err != nil {
		return render.Node{}, err
	}
	if err := u.Book.EndSilence(ctx, id); err != nil {
		return render.Node{}, err
	}
	return render.Text(fmt.Sprintf("🔔 Silence #%d ended.", id)), nil
}
