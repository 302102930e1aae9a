package commands

import (
	"context"
	"strings"

	"github.com/vigie/vigie/render"
)

// Explainer tells who a user is to the directory and what they may run.
type Explainer interface {
	Explain(ctx context.Context, matrixID, room string) (who Principal, allowed []string, err error)
}

// WhoAmI shows the caller's directory entry, groups and allowed commands.
type WhoAmI struct{ Directory Explainer }

// Spec implements Handler.
func (w *WhoAmI) Spec() Spec {
	return Spec{Name: "whoami", Access: Read, Summary: "show your LDAP entry, your groups and what you may run here"}
}

// Run implements Handler.
func (w *WhoAmI) Run(ctx context.Context, req *Request) (render.Node, error) {
	if w.Directory == nil {
		return render.Text("No directory (LDAP) is configured: only read-only commands are available, and only if the policy allows them."), nil
	}
	who, allowed, err := w.Directory.Explain(ctx, req.Sender, req.Room)
	if err != nil {
		return render.Node{}, err
	}
	groups := make([]render.Node, len(who.Groups))
	for i, g := range who.Groups {
		groups[i] = render.Code(g)
	}
	out := []render.Node{
		render.Line(render.Text("You are "), render.Code(req.Sender), render.Text(", LDAP entry "), render.Code(orDash(who.DN))),
	}
	if len(groups) > 0 {
		out = append(out, render.Line(render.Text("Groups:")), render.List(groups...))
	} else {
		out = append(out, render.Line(render.Text("Groups: none")))
	}
	if len(allowed) == 0 {
		out = append(out, render.Text("You may run no command here."))
	} else {
		out = append(out, render.Text("You may run here: "+strings.Join(allowed, ", ")))
	}
	return render.Group(out...), nil
}
