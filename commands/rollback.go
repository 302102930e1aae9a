package commands

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Rollbacker is what rollback needs from Nomad.
type Rollbacker interface {
	PlanRollback(ctx context.Context, jobID string, version *uint64) (nomadops.RollbackPlan, error)
	Rollback(ctx context.Context, plan nomadops.RollbackPlan) (evalID string, err error)
	FollowDeployment(ctx context.Context, jobID string, sinceIndex uint64, update func(nomadops.DeploymentProgress)) (nomadops.DeploymentProgress, error)
}

// Rollback reverts a job to an earlier version.
type Rollback struct{ Nomad Rollbacker }

// Spec implements Command.
func (r *Rollback) Spec() Spec {
	return Spec{Name: "rollback", Access: Change, Summary: "revert a job to an earlier version (default: the previous stable one)",
		Usage: "<job> [version]", MinArgs: 1, MaxArgs: 2}
}

// Preview implements Confirmable.
func (r *Rollback) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	var version *uint64
	if len(req.Args) == 2 {
		v, err := strconv.ParseUint(req.Args[1], 10, 64)
		if err != nil {
			return nil, Usagef("%q is not a version number", req.Args[1])
		}
		version = &v
	}
	plan, err := r.Nomad.PlanRollback(ctx, req.Args[0], version)
	if err != nil {
		return nil, nomadError(err)
	}
	what := fmt.Sprintf("%s: version %d → %d", plan.JobID, plan.From, plan.To)
	if plan.ToStable {
		what += " (stable)"
	}
	var diffs []string
	diffs = append(diffs, imageChanges(plan.Images)...)
	for _, c := range plan.Counts {
		diffs = append(diffs, fmt.Sprintf("%s: count %d → %d", c.Group, c.Old, c.New))
	}
	preview := render.Group(render.Line(render.Text(fmt.Sprintf("Version %d was submitted %s.", plan.To, plan.ToSubmitTime.UTC().Format(time.DateTime)))),
		render.Line(render.Text("Differences:")), listOf(diffs))
	return &Proposal{Resource: "job:" + plan.JobID, Summary: what, Preview: preview, State: plan}, nil
}

// Apply implements Confirmable.
func (r *Rollback) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	plan := p.State.(nomadops.RollbackPlan)
	started := req.Now()
	if _, err := r.Nomad.Rollback(ctx, plan); err != nil {
		return render.Node{}, nomadError(err)
	}
	progress.Applied() // following the deployment holds neither the job nor the room
	final, err := r.Nomad.FollowDeployment(ctx, plan.JobID, plan.JobModifyIndex, func(dp nomadops.DeploymentProgress) {
		progress.Update(ctx, renderProgress(dp, req.Now().Sub(started))) //nolint:errcheck // the final state is reported below
	})
	if err != nil {
		return render.Node{}, fmt.Errorf("following the rollback of %s: %w", plan.JobID, err)
	}
	if final.Status != "successful" {
		return render.Node{}, fmt.Errorf("rollback deployment of %s %s: %s", plan.JobID, final.Status, orDash(final.Description))
	}
	return render.Text(fmt.Sprintf("✅ %s back to version %d's spec (now version %d) in %s", plan.JobID, plan.To, final.JobVersion, req.Now().Sub(started).Round(time.Second))), nil
}
