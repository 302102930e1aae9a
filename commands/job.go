package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie/vigie/render"
)

// Job shows one job.
type Job struct{ Nomad NomadReader }

// Spec implements Command.
func (j *Job) Spec() Spec {
	return Spec{Name: "job", Access: Read, Summary: "a job: groups running/desired, images, latest deployment, versions", Usage: "<job>", MinArgs: 1, MaxArgs: 1}
}

// Run implements Handler.
func (j *Job) Run(ctx context.Context, req *Request) (render.Node, error) {
	d, err := j.Nomad.Job(ctx, req.Args[0])
	if err != nil {
		return render.Node{}, nomadError(err)
	}
	stable := ""
	if d.Stable {
		stable = ", stable"
	}
	nodes := []render.Node{render.Heading(render.Code(d.ID), render.Text(fmt.Sprintf(" %s job, %s, version %d%s", d.Type, d.Status, d.Version, stable)))}
	var groups []render.Node
	for _, g := range d.Groups {
		line := []render.Node{render.Text(fmt.Sprintf("%s: %d/%d running", g.Name, g.Allocs.Running, g.Desired))}
		if g.Allocs.Failed > 0 {
			line = append(line, render.Text(fmt.Sprintf(", %d failed", g.Allocs.Failed)))
		}
		for _, t := range g.Tasks {
			line = append(line, render.Text(" · "+t.Name+" ("+t.Driver+")"))
			if t.Image != "" {
				line = append(line, render.Text(" "), render.Code(t.Image))
			}
		}
		groups = append(groups, render.Group(line...))
	}
	nodes = append(nodes, render.List(groups...))
	if d.LatestDeployment != nil {
		nodes = append(nodes, renderProgress(*d.LatestDeployment, 0))
	}
	var versions []string
	for i, v := range d.Versions {
		if i == 5 {
			break
		}
		s := fmt.Sprintf("v%d %s", v.Version, v.SubmitTime.UTC().Format(time.DateTime))
		if v.Stable {
			s += " stable"
		}
		versions = append(versions, s)
	}
	nodes = append(nodes, render.Text("Versions: "+joinOr(versions, "none")))
	return render.Group(nodes...), nil
}
