package commands

import (
	"context"

	"github.com/vigie/vigie/render"
)

// Ping answers pong: the cheapest way to see that the bot is alive and
// reading this room.
type Ping struct{}

// Spec implements Handler.
func (Ping) Spec() Spec {
	return Spec{Name: "ping", Access: Public, Summary: "check that Vigie is alive and listening here", MaxArgs: 0}
}

// Run implements Handler.
func (Ping) Run(context.Context, *Request) (render.Node, error) {
	return render.Text("pong"), nil
}
