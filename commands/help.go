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
		Name: "help", Aliases: []string{"?"}, Access: Read,
		Summary: "list the commands, or explain one",
		Usage:   "[command]",
		Help:    "Without an argument, lists every command. With a command name, shows its usage and what it does.",
		MaxArgs: 1,
	}
}

// Run implements Handler.
func (h *Help) Run(_ context.Context, req *Request) (render.Node, error) {
	if len(req.Args) == 1 {
		return h.one(req, strings.ToLower(req.Args[0]))
	}
	var reads, changes []render.Node
	for _, s := range h.Registry.Specs() {
		item := render.Group(render.Code(strings.TrimSpace(s.Name+" "+s.Usage)), render.Text(" — "+s.Summary))
		if s.Access == Read {
			reads = append(reads, item)
		} else {
			changes = append(changes, item)
		}
	}
	out := []render.Node{render.Heading(render.Text("Vigie commands")), render.Line(render.Text("Write "), render.Code(commandLine(req.Prefix, "<command>")), render.Text(". Read-only:")), render.List(reads...)}
	if len(changes) > 0 {
		out = append(out, render.Line(render.Text("Changing the infrastructure (authorized and audited):")), render.List(changes...))
	}
	out = append(out, render.Text("Details: "), render.Code(commandLine(req.Prefix, "help <command>")))
	return render.Group(out...), nil
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
	access := "reads only"
	if s.Access == Change {
		access = "changes the infrastructure: authorized and audited"
	}
	out = append(out, render.Text("Access: "+access))
	return render.Group(out...), nil
}
