package commands

import (
	"context"
	"strings"

	"github.com/vigie/vigie/render"
)

// Identifier tells who a user is to the directory.
type Identifier interface {
	Identify(ctx context.Context, matrixID string) (Principal, error)
}

// WhoAmI shows the caller's directory entry, groups, and the commands they
// may run here: each registered command is put to the same Authorizer as
// a real invocation, so the list includes what the policy opens to all.
type WhoAmI struct {
	Directory  Identifier // nil without LDAP
	Registry   *Registry
	Authorizer Authorizer
}

// Spec implements Handler.
func (w *WhoAmI) Spec() Spec {
	return Spec{Name: "whoami", Access: Public, Summary: "show your LDAP entry, your groups and what you may run here"}
}

// Run implements Handler.
func (w *WhoAmI) Run(ctx context.Context, req *Request) (render.Node, error) {
	var out []render.Node
	if w.Directory == nil {
		out = append(out, render.Line(render.Text("No directory (LDAP) is configured: changes are refused.")))
	} else {
		who, err := w.Directory.Identify(ctx, req.Sender)
		if err != nil {
			return render.Node{}, err
		}
		out = append(out, render.Line(render.Text("You are "), render.Code(req.Sender), render.Text(", LDAP entry "), render.Code(orDash(who.DN))))
		groups := make([]render.Node, len(who.Groups))
		for i, g := range who.Groups {
			groups[i] = render.Code(g)
		}
		if len(groups) > 0 {
			out = append(out, render.Line(render.Text("Groups:")), render.List(groups...))
		} else {
			out = append(out, render.Line(render.Text("Groups: none")))
		}
	}
	allowed := w.allowed(ctx, req)
	if len(allowed) == 0 {
		out = append(out, render.Text("You may run no command here."))
	} else {
		out = append(out, render.Text("You may run here: "+strings.Join(allowed, ", ")))
	}
	return render.Group(out...), nil
}

// allowed asks the authorizer about every command, as if the caller ran it.
func (w *WhoAmI) allowed(ctx context.Context, req *Request) []string {
	var out []string
	for _, spec := range w.Registry.Specs() {
		probe := &Request{Invocation: Invocation{Name: spec.Name}, Transport: req.Transport, Room: req.Room, Sender: req.Sender}
		if _, err := w.Authorizer.Authorize(ctx, probe, spec, StepRun); err == nil {
			out = append(out, spec.Name)
		}
	}
	return out
}
