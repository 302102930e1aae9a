package commands

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vigie/vigie/nomadops"
	"github.com/vigie/vigie/render"
)

// Deployer is what deploy needs from Nomad.
type Deployer interface {
	PlanImage(ctx context.Context, jobID, image, task string) (nomadops.ImagePlan, error)
	PlanJobspec(ctx context.Context, jobID, hcl string) (nomadops.ImagePlan, error)
	Register(ctx context.Context, plan nomadops.ImagePlan) (evalID, deploymentID string, err error)
	FollowDeployment(ctx context.Context, jobID string, sinceIndex uint64, update func(nomadops.DeploymentProgress)) (nomadops.DeploymentProgress, error)
}

// Deploy changes the Docker image of a job's tasks, or registers the
// job's jobspec, shows Nomad's plan, registers it once confirmed and
// follows the deployment live.
type Deploy struct {
	Nomad Deployer
	// JobspecsDir holds the jobspecs deploy registers when given no image,
	// <job>.nomad.hcl or <job>.hcl (nomad.jobspecs_dir). Empty: deploy
	// needs image=.
	JobspecsDir string
}

// Spec implements Command.
func (d *Deploy) Spec() Spec {
	return Spec{Name: "deploy", Access: Change, Summary: "run a job's tasks on a new Docker image, or its jobspec, after Nomad's plan",
		Usage: "<job> [image=<repo:tag>] [task=<name>]",
		Help: "With image=, reads the job and sets the image of its Docker tasks (or of task=). Without, takes the job's jobspec, <job>.nomad.hcl " +
			"or <job>.hcl in the jobspecs directory (nomad.jobspecs_dir), as Nomad parses it; a job that does not exist yet is created. " +
			"Either way asks Nomad for a plan and shows it. Once confirmed, registers the job (refused if it changed since the plan) " +
			"and follows the deployment in one message until it succeeds or fails.",
		MinArgs: 1, MaxArgs: 1, Options: []string{"image", "task"}}
}

// deployState is what Apply needs of a preview.
type deployState struct {
	plan nomadops.ImagePlan
	what string // the change in a few words, for the audit log and the result
}

// Preview implements Confirmable.
func (d *Deploy) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	image := req.Options["image"]
	if image == "" {
		return d.previewJobspec(ctx, req)
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
	return deployProposal(plan, ""), nil
}

// previewJobspec previews registering the job's jobspec.
func (d *Deploy) previewJobspec(ctx context.Context, req *Request) (*Proposal, error) {
	job := req.Args[0]
	switch {
	case d.JobspecsDir == "":
		return nil, Usagef("say which image, e.g. %s (deploying jobspecs needs nomad.jobspecs_dir in the configuration)",
			commandLine(req.Prefix, "deploy "+job+" image=nginx:1.27"))
	case req.Options["task"] != "":
		return nil, Usagef("task= goes with image=: a jobspec deploys the whole job")
	}
	file, hcl, err := d.readJobspec(job)
	if err != nil {
		return nil, err
	}
	plan, err := d.Nomad.PlanJobspec(ctx, job, hcl)
	var bad *nomadops.JobspecError
	switch {
	case errors.As(err, &bad):
		return nil, fmt.Errorf("%s: %s", file, bad.Reason)
	case err != nil:
		return nil, nomadError(err)
	}
	return deployProposal(plan, file), nil
}

// jobspecName is a job name that can only name a file of the jobspecs
// directory: no separator, and no leading dot (neither ".." nor a
// hidden file).
var jobspecName = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9_.-]*$`)

// jobspecExts are the endings of a job's jobspec, in the order tried:
// Nomad's convention first.
var jobspecExts = []string{".nomad.hcl", ".hcl"}

// readJobspec reads a job's jobspec, returning its file name and text; a
// job without one is a usage error listing the jobspecs there are.
func (d *Deploy) readJobspec(job string) (file, hcl string, err error) {
	if !jobspecName.MatchString(job) {
		return "", "", Usagef("%q is not a job name with a jobspec: letters, digits, '_', '.' and '-' only, not starting with '.'", job)
	}
	// The name cannot leave the directory; os.Root also refuses symbolic
	// links leading out of it.
	root, err := os.OpenRoot(d.JobspecsDir)
	if err != nil {
		return "", "", fmt.Errorf("jobspecs directory (nomad.jobspecs_dir): %w", err)
	}
	defer root.Close()
	for _, ext := range jobspecExts {
		b, err := root.ReadFile(job + ext)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", "", fmt.Errorf("reading the jobspec of %s: %w", job, err)
		}
		return job + ext, string(b), nil
	}
	entries, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return "", "", fmt.Errorf("listing the jobspecs: %w", err)
	}
	var jobs []string
	for _, e := range entries {
		for _, ext := range jobspecExts {
			if name, ok := strings.CutSuffix(e.Name(), ext); ok && !e.IsDir() && jobspecName.MatchString(name) {
				jobs = append(jobs, name)
				break
			}
		}
	}
	slices.Sort(jobs)
	return "", "", Usagef("no jobspec for job %s (%s.nomad.hcl or %s.hcl); there are: %s", job, job, job, joinOr(slices.Compact(jobs), "none"))
}

// deployProposal renders a deploy plan for confirmation; from is the
// jobspec it registers, "" for an image change.
func deployProposal(plan nomadops.ImagePlan, from string) *Proposal {
	changes := imageChanges(plan.Changes)
	head := fmt.Sprintf("Job %s, version %d → %d", plan.JobID, plan.Version, plan.Version+1)
	if plan.NewJob {
		head = "New job " + plan.JobID
	}
	what := joinOr(changes, "no image change")
	if from != "" {
		head += ", from " + from
		what = strings.Join(append([]string{"from " + from}, changes...), ", ")
	}
	var updates []render.Node
	for _, u := range plan.Updates {
		updates = append(updates, render.Text(fmt.Sprintf("%s: %d replaced, %d placed, %d in place, %d stopped, %d canaries, %d unchanged",
			u.Group, u.Destructive, u.Place, u.InPlace, u.Stop, u.Canary, u.Ignore)))
	}
	nodes := []render.Node{
		render.Line(render.Text(head + ":")),
		listOf(changes),
		render.Line(render.Text("Nomad's plan:")), render.List(updates...),
	}
	if len(plan.Other) > 0 {
		label := "Other differences:"
		if len(changes) == 0 {
			label = "Differences:"
		}
		nodes = append(nodes, render.Line(render.Text(label)), listOf(plan.Other))
	}
	if plan.Warnings != "" {
		nodes = append(nodes, render.Line(render.Text("Warnings: "+plan.Warnings)))
	}
	return &Proposal{Resource: "job:" + plan.JobID, Summary: plan.JobID + ": " + what,
		Preview: render.Group(nodes...), State: deployState{plan: plan, what: what}}
}

// Apply implements Confirmable.
func (d *Deploy) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	state := p.State.(deployState)
	plan := state.plan
	started := req.Now()
	eval, deployment, err := d.Nomad.Register(ctx, plan)
	if err != nil {
		return render.Node{}, nomadError(err)
	}
	if deployment == "" {
		// Batch and system jobs have no deployment (nor does a service job
		// whose scheduler has not answered yet): nothing to follow.
		return render.Text(fmt.Sprintf("✅ %s registered (evaluation %s); Nomad created no deployment to follow, see %s",
			plan.JobID, short(eval), commandLine(req.Prefix, "job "+plan.JobID))), nil
	}
	if err := progress.Update(ctx, render.Text(fmt.Sprintf("🚀 %s registered, deployment %s starting…", plan.JobID, short(deployment)))); err != nil {
		return render.Node{}, err
	}
	progress.Applied() // following the deployment holds neither the job nor the room
	final, err := d.Nomad.FollowDeployment(ctx, plan.JobID, plan.JobModifyIndex, func(dp nomadops.DeploymentProgress) {
		progress.Update(ctx, renderProgress(dp, req.Now().Sub(started))) //nolint:errcheck // the final state is reported below
	})
	if err != nil {
		return render.Node{}, fmt.Errorf("following the deployment of %s: %w", plan.JobID, err)
	}
	if err := progress.Update(ctx, renderProgress(final, req.Now().Sub(started))); err != nil {
		return render.Node{}, err
	}
	took := req.Now().Sub(started).Round(time.Second)
	if final.Status != "successful" {
		return render.Node{}, fmt.Errorf("deployment %s of %s %s after %s: %s; roll back with %s", short(final.ID), plan.JobID, final.Status, took,
			orDash(final.Description), commandLine(req.Prefix, "rollback "+plan.JobID))
	}
	return render.Text(fmt.Sprintf("✅ %s version %d deployed in %s: %s", plan.JobID, final.JobVersion, took, state.what)), nil
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
