package commands

import (
	"context"
	"fmt"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Promoter is what promote needs from Nomad.
type Promoter interface {
	Job(ctx context.Context, id string) (nomadops.JobDetail, error)
	Promote(ctx context.Context, jobID, deploymentID string) (nomadops.DeploymentProgress, error)
}

// Promote promotes the canaries of a job's running deployment.
type Promote struct{ Nomad Promoter }

// Spec implements Command.
func (p *Promote) Spec() Spec {
	return Spec{Name: "promote", Access: Change, Summary: "promote the canaries of a job's running deployment", Usage: "<job>", MinArgs: 1, MaxArgs: 1}
}

// Preview implements Confirmable.
func (p *Promote) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	d, err := p.Nomad.Job(ctx, req.Args[0])
	if err != nil {
		return nil, nomadError(err)
	}
	if d.LatestDeployment == nil || !d.LatestDeployment.NeedsPromotion() {
		return nil, fmt.Errorf("job %s has no running deployment waiting for its canaries to be promoted", d.ID)
	}
	dep := *d.LatestDeployment
	return &Proposal{Resource: "job:" + d.ID, Summary: fmt.Sprintf("promote the canaries of %s deployment %s", d.ID, short(dep.ID)),
		Preview: renderProgress(dep, 0), State: dep.ID}, nil
}

// Apply implements Confirmable: it promotes the deployment previewed, not
// one started since.
func (p *Promote) Apply(ctx context.Context, req *Request, pr *Proposal, _ Progress) (render.Node, error) {
	dep, err := p.Nomad.Promote(ctx, req.Args[0], pr.State.(string))
	if err != nil {
		return render.Node{}, nomadError(err)
	}
	return render.Group(render.Text("✅ Promoted. "), renderProgress(dep, 0)), nil
}
