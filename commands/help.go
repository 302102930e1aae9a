package commands

import (
	"context"
	"strings"

	"github.com/vigie/vigie/render"
)

// Help lists the commands, or explains one.
type Help struct {
	Registry *Registry
}

// Spec implements Handler.
func (h *Help) Spec() Spec {
	return Spec{
		Name: "help", Aliases: []string{"?"}, Access: Public,
		Summary: "list the commands, or explain one",
		Usage:   "[command]",
		Help:    "Without an argument, lists every command. With a command name, shows its usage and what it does.",
		MaxArgs: 2, // "help backup report"
	}
}

// Run implements Handler.
func (h *Help) Run(_ context.Context, req *Request) (render.Node, error) {
	if len(req.Args) > 0 {
		return h.one(req, strings.ToLower(strings.Join(req.Args, " ")))
	}
	byAccess := map[Access][]render.Node{}
	for _, s := range h.Registry.Specs() {
		byAccess[s.Access] = append(byAccess[s.Access], render.Group(render.Code(strings.TrimSpace(s.Name+" "+s.Usage)), render.Text(" — "+s.Summary)))
	}
	out := []render.Node{render.Heading(render.Text("Vigie commands")), render.Line(render.Text("Write "), render.Code(commandLine(req.Prefix, "<command>")), render.Text("."))}
	for _, a := range []Access{Public, Read, Private, State, Change} {
		if items := byAccess[a]; len(items) > 0 {
			out = append(out, render.Line(render.Text(accessHeadings[a]+":")), render.List(items...))
		}
	}
	out = append(out, render.Text("Details: "), render.Code(commandLine(req.Prefix, "help <command>")))
	return render.Group(out...), nil
}

var accessHeadings = map[Access]string{
	Public:  "For anyone",
	Read:    "Reading",
	Private: "Reading what not everyone may see",
	State:   "Changing what Vigie tells the rooms (audited)",
	Change:  "Changing the infrastructure (audited; what destroys or replaces is previewed and confirmed)",
}

func (h *Help) one(req *Request, name string) (render.Node, error) {
	handler, ok := h.Registry.Lookup(name)
	if !ok {
		if near, ok := h.Registry.Suggest(name); ok {
			return render.Node{}, Usagef("no command %q (did you mean %q?)", name, near)
		}
		return render.Node{}, Usagef("no command %q", name)
	}
	s := handler.Spec()
	out := []render.Node{
		render.Heading(render.Code(strings.TrimSpace(commandLine(req.Prefix, s.Name) + " " + s.Usage))),
		render.Line(render.Text(s.Summary)),
	}
	if s.Help != "" {
		out = append(out, render.Line(render.Text(s.Help)))
	}
	if len(s.Aliases) > 0 {
		out = append(out, render.Line(render.Text("Also: "+strings.Join(s.Aliases, ", "))))
	}
	access := s.Access.describe()
	if _, confirmed := handler.(Confirmable); s.Access == Change && !confirmed {
		access = "changes the infrastructure, destroying nothing: by policy rule, audited, run at once"
	}
	if s.TwoPerson {
		access += "; a second person approves it unless its policy rule says two_person = false"
	}
	out = append(out, render.Text("Access: "+access))
	return render.Group(out...), nil
}
