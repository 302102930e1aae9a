package commands

import (
	"context"
	"fmt"
	"sort"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// NomadReader is what the read-only Nomad commands need.
type NomadReader interface {
	Status(ctx context.Context) (nomadops.ClusterStatus, error)
	Jobs(ctx context.Context, glob string) ([]nomadops.JobSummary, error)
	Job(ctx context.Context, id string) (nomadops.JobDetail, error)
	Logs(ctx context.Context, target, task string, lines int, stderr bool) (nomadops.LogTail, error)
}

// Status summarises the cluster, and what Vigie sees of it.
type Status struct {
	Nomad   NomadReader
	Sources Sources // nil: no watcher
}

// Spec implements Command.
func (s *Status) Spec() Spec {
	return Spec{Name: "status", Access: Read, Summary: "the cluster at a glance: leader, nodes, jobs, deployments"}
}

// Run implements Handler.
func (s *Status) Run(ctx context.Context, _ *Request) (render.Node, error) {
	st, err := s.Nomad.Status(ctx)
	if err != nil {
		return render.Node{}, err
	}
	n := st.Nodes
	lines := append(watchSection(s.Sources),
		render.Heading(render.Text("Nomad")),
		render.Line(render.Text("Leader: "), render.Code(st.Leader)),
		render.Line(render.Text(fmt.Sprintf("Nodes: %d ready of %d, %d down, %d ineligible", n.Ready, n.Total, n.Down, n.Ineligible))),
	)
	var problems []render.Node
	for _, p := range n.Problems {
		what := p.Status + ", " + p.Eligibility
		if p.Drain {
			what += ", draining"
		}
		problems = append(problems, render.Group(render.Code(p.Name), render.Text(" "+what)))
	}
	if len(problems) > 0 {
		lines = append(lines, render.List(problems...))
	}
	statuses := make([]string, 0, len(st.Jobs))
	for k := range st.Jobs {
		statuses = append(statuses, k)
	}
	sort.Strings(statuses)
	jobs := ""
	for _, k := range statuses {
		jobs += fmt.Sprintf("%s%d %s", sep(jobs), st.Jobs[k], k)
	}
	lines = append(lines, render.Line(render.Text("Jobs: "+orDash(jobs))))
	if len(st.Deployments) == 0 {
		lines = append(lines, render.Text("No deployment running."))
	}
	for _, d := range st.Deployments {
		lines = append(lines, renderProgress(d, 0))
	}
	return render.Group(lines...), nil
}

func sep(s string) string {
	if s == "" {
		return ""
	}
	return ", "
}
