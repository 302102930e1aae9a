package commands

import (
	"cmp"
	"context"
	"fmt"
	"strconv"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Scaler is what scale needs from Nomad.
type Scaler interface {
	PlanScale(ctx context.Context, jobID, group string, count int) (nomadops.ScalePlan, error)
	Scale(ctx context.Context, plan nomadops.ScalePlan, message string) (evalID string, err error)
}

// Scale sets a task group's count.
type Scale struct {
	Nomad    Scaler
	MaxCount int // the largest count accepted; 0: 100
}

// defaultMaxScale is the largest count when none is configured.
const defaultMaxScale = 100

// Spec implements Command.
func (s *Scale) Spec() Spec {
	return Spec{Name: "scale", Access: Change, Summary: "set the number of allocations of a job's group", Usage: "<job> <group> <count>", MinArgs: 3, MaxArgs: 3}
}

// Preview implements Confirmable.
func (s *Scale) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	count, err := strconv.Atoi(req.Args[2])
	if err != nil {
		return nil, Usagef("%q is not a count", req.Args[2])
	}
	if largest := cmp.Or(s.MaxCount, defaultMaxScale); count > largest {
		return nil, Usagef("%d is more allocations than Vigie scales to (%d, policy.max_scale)", count, largest)
	}
	plan, err := s.Nomad.PlanScale(ctx, req.Args[0], req.Args[1], count)
	if err != nil {
		return nil, nomadError(err)
	}
	what := fmt.Sprintf("%s/%s: %d → %d allocations", plan.JobID, plan.Group, plan.From, plan.To)
	return &Proposal{Resource: "job:" + plan.JobID, Summary: what, Preview: render.Text(fmt.Sprintf("Job %s version %d.", plan.JobID, plan.Version)), State: plan}, nil
}

// Apply implements Confirmable.
func (s *Scale) Apply(ctx context.Context, req *Request, p *Proposal, _ Progress) (render.Node, error) {
	plan := p.State.(nomadops.ScalePlan)
	if _, err := s.Nomad.Scale(ctx, plan, "scaled from the chat by "+req.Sender); err != nil {
		return render.Node{}, nomadError(err)
	}
	return render.Text("✅ " + p.Summary), nil
}
