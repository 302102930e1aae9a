package commands

import (
	"context"
	"fmt"
	"strconv"

	"github.com/vigie/vigie/render"
)

// Jobs lists jobs.
type Jobs struct{ Nomad NomadReader }

// Spec implements Command.
func (j *Jobs) Spec() Spec {
	return Spec{Name: "jobs", Access: Read, Summary: "list the jobs, optionally matching a glob", Usage: "[glob]", MaxArgs: 1}
}

// Run implements Handler.
func (j *Jobs) Run(ctx context.Context, req *Request) (render.Node, error) {
	glob := "*"
	if len(req.Args) == 1 {
		glob = req.Args[0]
	}
	jobs, err := j.Nomad.Jobs(ctx, glob)
	if err != nil {
		return render.Node{}, err
	}
	if len(jobs) == 0 {
		return render.Text("No job matches " + glob + "."), nil
	}
	rows := make([][]string, len(jobs))
	for i, job := range jobs {
		a := job.Allocs
		rows[i] = []string{job.ID, job.Type, job.Status, strconv.Itoa(a.Running), strconv.Itoa(a.Starting), strconv.Itoa(a.Queued), strconv.Itoa(a.Failed)}
	}
	return render.Group(render.Heading(render.Text(fmt.Sprintf("%d job(s)", len(jobs)))),
		render.Table([]string{"Job", "Type", "Status", "Running", "Starting", "Queued", "Failed"}, rows...)), nil
}
