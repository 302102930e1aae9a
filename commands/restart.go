package commands

import (
	"context"
	"fmt"
	"slices"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Restarter is what restart needs from Nomad.
type Restarter interface {
	Job(ctx context.Context, id string) (nomadops.JobDetail, error)
	Restart(ctx context.Context, jobID, group string) (nomadops.RestartResult, error)
}

// Restart restarts a job's allocations one at a time.
type Restart struct{ Nomad Restarter }

// Spec implements Command.
func (r *Restart) Spec() Spec {
	return Spec{Name: "restart", Access: Change, Summary: "rolling restart of a job's allocations (of one group, if given)", Usage: "<job> [group]", MinArgs: 1, MaxArgs: 2}
}

// Preview implements Confirmable.
func (r *Restart) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	d, err := r.Nomad.Job(ctx, req.Args[0])
	if err != nil {
		return nil, nomadError(err)
	}
	group := ""
	if len(req.Args) == 2 {
		group = req.Args[1]
	}
	running, groups := 0, []string{}
	for _, g := range d.Groups {
		groups = append(groups, g.Name)
		if group == "" || g.Name == group {
			running += g.Allocs.Running
		}
	}
	if group != "" && !slices.Contains(groups, group) {
		return nil, Usagef("job %s has no group %q (groups: %s)", d.ID, group, joinOr(groups, "none"))
	}
	target := d.ID
	if group != "" {
		target += "/" + group
	}
	return &Proposal{Resource: "job:" + d.ID, Summary: fmt.Sprintf("restart %s: %d running allocation(s), one at a time", target, running),
		Preview: render.Text("Each allocation's tasks restart in place; the next waits until they run again."), State: group}, nil
}

// Apply implements Confirmable.
func (r *Restart) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	res, err := r.Nomad.Restart(ctx, req.Args[0], p.State.(string))
	if err != nil {
		return render.Node{}, nomadError(err)
	}
	return render.Text(fmt.Sprintf("✅ %s: restarted %d allocation(s)", res.JobID, len(res.Allocs))), nil
}
