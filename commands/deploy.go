package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Deployer is what deploy needs from Nomad.
type Deployer interface {
	PlanImage(ctx context.Context, jobID, image, task string) (nomadops.ImagePlan, error)
	Register(ctx context.Context, plan nomadops.ImagePlan) (evalID, deploymentID string, err error)
	FollowDeployment(ctx context.Context, jobID string, sinceIndex uint64, update func(nomadops.DeploymentProgress)) (nomadops.DeploymentProgress, error)
}

// Deploy changes the Docker image of a job's tasks, shows Nomad's plan,
// registers it once confirmed and follows the deployment live.
type Deploy struct{ Nomad Deployer }

// Spec implements Command.
func (d *Deploy) Spec() Spec {
	return Spec{Name: "deploy", Access: Change, Summary: "run a job's tasks on a new Docker image, after Nomad's plan",
		Usage: "<job> image=<repo:tag> [task=<name>]",
		Help: "Reads the job, sets the image of its Docker tasks (or of task=), asks Nomad for a plan and shows it. Once confirmed, registers the job " +
			"(refused if it changed since the plan) and follows the deployment in one message until it succeeds or fails.",
		MinArgs: 1, MaxArgs: 1, Options: []string{"image", "task"}}
}

// Preview implements Confirmable.
func (d *Deploy) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	image := req.Options["image"]
	if image == "" {
		return nil, Usagef("say which image, e.g. %s", commandLine(req.Prefix, "deploy "+req.Args[0]+" image=nginx:1.27"))
	}
	plan, err := d.Nomad.PlanImage(ctx, req.Args[0], image, req.Options["task"])
	if err != nil {
		return nil, nomadError(err)
	}
	// One image for several different tasks (an app and its proxy) is
	// almost never meant: make the operator say which.
	if req.Options["task"] == "" && len(plan.Changes) > 1 {
		var tasks []string
		for _, c := range plan.Changes {
			tasks = append(tasks, c.Group+"/"+c.Task)
		}
		return nil, Usagef("job %s has several Docker tasks (%s): say which with task=<name>", plan.JobID, strings.Join(tasks, ", "))
	}
	changes := imageChanges(plan.Changes)
	var updates []render.Node
	for _, u := range plan.Updates {
		updates = append(updates, render.Text(fmt.Sprintf("%s: %d replaced, %d placed, %d in place, %d stopped, %d canaries, %d unchanged",
			u.Group, u.Destructive, u.Place, u.InPlace, u.Stop, u.Canary, u.Ignore)))
	}
	nodes := []render.Node{
		render.Line(render.Text(fmt.Sprintf("Job %s, version %d → %d:", plan.JobID, plan.Version, plan.Version+1))),
		listOf(changes),
		render.Line(render.Text("Nomad's plan:")), render.List(updates...),
	}
	if len(plan.Other) > 0 {
		nodes = append(nodes, render.Line(render.Text("Other differences:")), listOf(plan.Other))
	}
	if plan.Warnings != "" {
		nodes = append(nodes, render.Line(render.Text("Warnings: "+plan.Warnings)))
	}
	return &Proposal{Resource: "job:" + plan.JobID, Summary: plan.JobID + ": " + joinOr(changes, "no image change"),
		Preview: render.Group(nodes...), State: plan}, nil
}

// Apply implements Confirmable.
func (d *Deploy) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	plan := p.State.(nomadops.ImagePlan)
	started := time.Now()
	if _, _, err := d.Nomad.Register(ctx, plan); err != nil {
		return render.Node{}, nomadError(err)
	}
	if err := progress.Update(ctx, render.Text(fmt.Sprintf("🚀 %s registered, waiting for its deployment…", plan.JobID))); err != nil {
		return render.Node{}, err
	}
	final, err := d.Nomad.FollowDeployment(ctx, plan.JobID, plan.JobModifyIndex, func(dp nomadops.DeploymentProgress) {
		progress.Update(ctx, renderProgress(dp, time.Since(started))) //nolint:errcheck // the final state is reported below
	})
	if err != nil {
		return render.Node{}, fmt.Errorf("following the deployment of %s: %w", plan.JobID, err)
	}
	if err := progress.Update(ctx, renderProgress(final, time.Since(started))); err != nil {
		return render.Node{}, err
	}
	took := time.Since(started).Round(time.Second)
	if final.Status != "successful" {
		return render.Node{}, fmt.Errorf("deployment %s of %s %s after %s: %s; roll back with %s", short(final.ID), plan.JobID, final.Status, took,
			orDash(final.Description), commandLine(req.Prefix, "rollback "+plan.JobID))
	}
	return render.Text(fmt.Sprintf("✅ %s version %d deployed in %s: %s", plan.JobID, final.JobVersion, took, joinOr(imageChanges(plan.Changes), ""))), nil
}

// nomadError turns Nomad's refusals into replies that say what to do.
func nomadError(err error) error {
	var notFound *nomadops.NotFoundError
	var image *nomadops.ImageError
	switch {
	case errors.As(err, &notFound), errors.As(err, &image), errors.Is(err, nomadops.ErrNoChange):
		return Usagef("%v", err)
	}
	return err
}
