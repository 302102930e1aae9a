package commands

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigie/vigie/render"
)

// Logs shows the end of a task's output.
type Logs struct{ Nomad NomadReader }

// maxLogLines bounds one logs reply; beyond inlineLogLines they go to a
// thread so that the room stays readable.
const (
	maxLogLines    = 200
	inlineLogLines = 10
)

// Spec implements Command.
func (l *Logs) Spec() Spec {
	return Spec{Name: "logs", Access: Private, Summary: "the last lines of a task's stdout or stderr",
		Usage:   "<job|alloc> [task] [lines] [stderr]",
		Help:    "A job means its most recent allocation; an allocation ID prefix needs 8 characters. Default: 20 lines of stdout, at most 200.",
		MinArgs: 1, MaxArgs: 4}
}

// Run implements Handler.
func (l *Logs) Run(ctx context.Context, req *Request) (render.Node, error) {
	task, lines, stderr := "", 20, false
	for _, a := range req.Args[1:] {
		if n, err := strconv.Atoi(a); err == nil {
			if n < 1 || n > maxLogLines {
				return render.Node{}, Usagef("%d lines: give 1 to %d", n, maxLogLines)
			}
			lines = n
			continue
		}
		switch a {
		case "stderr":
			stderr = true
		case "stdout":
		default:
			task = a
		}
	}
	tail, err := l.Nomad.Logs(ctx, req.Args[0], task, lines, stderr)
	if err != nil {
		return render.Node{}, nomadError(err)
	}
	head := fmt.Sprintf("%s of %s/%s, alloc %s (job %s), last %d line(s)", tail.Stream, tail.Group, tail.Task, short(tail.AllocID), tail.JobID, len(tail.Lines))
	if len(tail.Lines) == 0 {
		return render.Text(head + ": empty."), nil
	}
	out := render.Pre(render.Terminal(strings.Join(tail.Lines, "\n")))
	if len(tail.Lines) > inlineLogLines {
		req.InThread(out)
		return render.Text("📄 " + head + ": in the thread."), nil
	}
	return render.Group(render.Heading(render.Text(head)), out), nil
}
