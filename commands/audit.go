package commands

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// AuditReader reads the audit log.
type AuditReader interface {
	AuditLog(ctx context.Context, f store.AuditFilter) ([]store.AuditRecord, error)
}

// Audit shows who asked for what, and what came of it.
type Audit struct{ Log AuditReader }

// maxAuditLines bounds one audit listing.
const maxAuditLines = 100

// Spec implements Handler.
func (a *Audit) Spec() Spec {
	return Spec{Name: "audit", Access: Private, Summary: "show the audit log", Usage: "[n] [user=@x:y] [command=name]",
		Help:    "The most recent commands (default 10, at most 100), newest first: who, their directory entry, where, what, the decision and outcome, how long it took.",
		MaxArgs: 1, Options: []string{"user", "command"}}
}

// Run implements Handler.
func (a *Audit) Run(ctx context.Context, req *Request) (render.Node, error) {
	f := store.AuditFilter{Limit: 10, Actor: req.Options["user"], Command: req.Options["command"]}
	if len(req.Args) == 1 {
		n, err := strconv.Atoi(req.Args[0])
		if err != nil || n < 1 || n > maxAuditLines {
			return render.Node{}, Usagef("%q: give a number of records from 1 to %d", req.Args[0], maxAuditLines)
		}
		f.Limit = n
	}
	log, err := a.Log.AuditLog(ctx, f)
	if err != nil {
		return render.Node{}, err
	}
	if len(log) == 0 {
		return render.Text("No audit record matches."), nil
	}
	rows := make([]render.Node, len(log))
	for i, r := range log {
		line := fmt.Sprintf("%s %s %s %s → %s (%s)", r.At.UTC().Format("01-02 15:04:05"), r.Actor, orDash(r.Command), clip(r.Args, 80), r.Outcome,
			r.Duration.Round(time.Millisecond))
		parts := []render.Node{render.Text(line)}
		if r.Principal != "" {
			parts = append(parts, render.Text(" · "), render.Code(r.Principal))
		}
		if r.Detail != "" {
			parts = append(parts, render.Text(" · "+clip(r.Detail, 200)))
		}
		rows[i] = render.Group(parts...)
	}
	return render.Group(render.Heading(render.Text(fmt.Sprintf("Audit: %d record(s)", len(log)))), render.List(rows...)), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
