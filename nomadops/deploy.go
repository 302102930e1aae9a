package nomadops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/vigie/vigie/internal/ctxutil"
)

// ImagePlan is the preview of an image change (PlanImage) or of a
// jobspec (PlanJobspec), to show and then apply with Register. It holds
// the job to register, so it lives in memory only.
type ImagePlan struct {
	JobID          string
	Version        uint64        // the version the change replaces
	JobModifyIndex uint64        // the job's modify index, which Register enforces
	NewJob         bool          // a first registration: Version and JobModifyIndex are 0
	Changes        []ImageChange // from Nomad's diff, by group and task
	Updates        []GroupUpdate // what Nomad will do, by group
	// Other lists the other differences Nomad's diff shows, as
	// "group/task: Field: old → new"; normally none.
	Other    []string
	Warnings string

	job *api.Job
}

// ImageChange is one task's image change.
type ImageChange struct {
	Group, Task, Old, New string
}

// GroupUpdate is what Nomad's scheduler plans for a group: allocations
// placed, stopped, updated in place, replaced (one rolling batch), canaries
// and untouched.
type GroupUpdate struct {
	Group                                                      string
	Place, Stop, InPlace, Destructive, Canary, Ignore, Migrate uint64
}

// dockerDriver is the driver whose config takes the image.
const dockerDriver = "docker"

// PlanImage previews running image in a job's docker tasks: all of them
// when task is empty, else the tasks of that name ("task" or
// "group/task"). The image is validated first (ValidateImage); a job, a
// group or a task that does not exist is a *NotFoundError; tasks already
// on image are left out, and ErrNoChange is returned when that leaves
// nothing. Nomad's plan gives the group updates and the modify index to
// enforce.
func (c *Client) PlanImage(ctx context.Context, jobID, image, task string) (ImagePlan, error) {
	if err := ValidateImage(image); err != nil {
		return ImagePlan{}, err
	}
	job, err := c.readJob(ctx, jobID)
	if err != nil {
		return ImagePlan{}, err
	}
	targets, err := imageTasks(job, task)
	if err != nil {
		return ImagePlan{}, err
	}
	changed := false
	for _, t := range targets {
		if taskImage(t.task) == image {
			continue
		}
		if t.task.Config == nil {
			t.task.Config = map[string]any{}
		}
		t.task.Config["image"] = image
		changed = true
	}
	if !changed {
		return ImagePlan{}, fmt.Errorf("%w: job %s already runs %s", ErrNoChange, jobID, image)
	}
	resp, _, err := c.api.Jobs().Plan(job, true, writeOpts(ctx))
	if err != nil {
		return ImagePlan{}, c.fail("plan job "+jobID, err)
	}
	// The changes shown are Nomad's view of them, from its diff.
	plan := ImagePlan{JobID: jobID, Version: *job.Version, JobModifyIndex: resp.JobModifyIndex,
		Updates: groupUpdates(resp.Annotations), Warnings: resp.Warnings, job: job}
	plan.Changes, plan.Other = diffChanges(resp.Diff)
	return plan, nil
}

type taskRef struct {
	group string
	task  *api.Task
}

// imageTasks picks the tasks an image change applies to.
func imageTasks(job *api.Job, name string) ([]taskRef, error) {
	groupName, taskName, grouped := strings.Cut(name, "/")
	if !grouped {
		taskName = name
	}
	var all, docker []taskRef
	var names, labels []string // names: what a mistyped name is compared with
	for _, g := range job.TaskGroups {
		for _, t := range g.Tasks {
			ref := taskRef{*g.Name, t}
			all = append(all, ref)
			if grouped {
				names = append(names, *g.Name+"/"+t.Name)
			} else {
				names = append(names, t.Name)
			}
			labels = append(labels, fmt.Sprintf("%s/%s (%s)", *g.Name, t.Name, t.Driver))
			if t.Driver == dockerDriver {
				docker = append(docker, ref)
			}
		}
	}
	if name == "" {
		if len(docker) == 0 {
			return nil, fmt.Errorf("job %s has no docker task: %s", *job.ID, strings.Join(labels, ", "))
		}
		return docker, nil
	}
	var found []taskRef
	for _, ref := range all {
		if ref.task.Name == taskName && (!grouped || ref.group == groupName) {
			if ref.task.Driver != dockerDriver {
				return nil, fmt.Errorf("task %s/%s of job %s uses the %s driver, which takes no image", ref.group, taskName, *job.ID, ref.task.Driver)
			}
			found = append(found, ref)
		}
	}
	if len(found) == 0 {
		e := notFound("task", name, *job.ID, names)
		e.Known = labels
		return nil, e
	}
	return found, nil
}

func groupUpdates(a *api.PlanAnnotations) []GroupUpdate {
	if a == nil {
		return nil
	}
	var out []GroupUpdate
	for name, u := range a.DesiredTGUpdates {
		out = append(out, GroupUpdate{Group: name, Place: u.Place, Stop: u.Stop, InPlace: u.InPlaceUpdate,
			Destructive: u.DestructiveUpdate, Canary: u.Canary, Ignore: u.Ignore, Migrate: u.Migrate})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// diffChanges reads a plan's diff: the task image changes, and the other
// changed fields, which registering the job would change too.
func diffChanges(d *api.JobDiff) (images []ImageChange, other []string) {
	if d == nil {
		return nil, nil
	}
	fields := func(where string, fs []*api.FieldDiff) {
		for _, f := range fs {
			if f.Type != "None" {
				other = append(other, fmt.Sprintf("%s%s: %q → %q", where, f.Name, f.Old, f.New))
			}
		}
	}
	var objects func(where string, os []*api.ObjectDiff)
	objects = func(where string, os []*api.ObjectDiff) {
		for _, o := range os {
			fields(where+o.Name+".", o.Fields)
			objects(where+o.Name+".", o.Objects)
		}
	}
	fields("", d.Fields)
	objects("", d.Objects)
	for _, g := range d.TaskGroups {
		fields(g.Name+": ", g.Fields)
		objects(g.Name+": ", g.Objects)
		for _, t := range g.Tasks {
			where := g.Name + "/" + t.Name + ": "
			if t.Type == "Added" || t.Type == "Deleted" {
				other = append(other, where+strings.ToLower(t.Type))
				continue
			}
			fields(where, t.Fields)
			for _, o := range t.Objects {
				if o.Name != "Config" {
					objects(where, []*api.ObjectDiff{o})
					continue
				}
				for _, f := range o.Fields {
					if f.Name == "image" && f.Type != "None" {
						images = append(images, ImageChange{Group: g.Name, Task: t.Name, Old: f.Old, New: f.New})
					} else {
						fields(where+"Config.", []*api.FieldDiff{f})
					}
				}
				objects(where+"Config.", o.Objects)
			}
		}
	}
	return images, other
}

// evalWait bounds how long Register waits for its evaluation to learn the
// deployment.
const evalWait = 10 * time.Second

// Register applies an image plan, enforcing the modify index it was made
// at: a job changed since is a *JobChangedError. It returns the
// evaluation and, once Nomad's scheduler has processed it (waited for up
// to 10s), the deployment it created; the deployment ID is empty when
// there is none or the wait ran out, which is not an error since the job
// is registered.
func (c *Client) Register(ctx context.Context, plan ImagePlan) (evalID, deploymentID string, err error) {
	if plan.job == nil {
		return "", "", errors.New("nomadops: Register needs a plan made by PlanImage or PlanJobspec")
	}
	resp, _, err := c.api.Jobs().RegisterOpts(plan.job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: plan.JobModifyIndex}, writeOpts(ctx))
	if err != nil {
		return "", "", c.changed(plan.JobID, plan.JobModifyIndex, c.fail("register job "+plan.JobID, err))
	}
	return resp.EvalID, c.evalDeployment(ctx, resp.EvalID), nil
}

// changed recognizes Nomad's enforce-index failure ("Enforcing job modify
// index 120: job exists with conflicting job modify index: 125").
func (c *Client) changed(jobID string, index uint64, err error) error {
	var re *ResponseError
	if !errors.As(err, &re) || !strings.HasPrefix(re.Message, "Enforcing job modify index") {
		return err
	}
	e := &JobChangedError{JobID: jobID, What: "modify index", Was: index}
	if _, now, ok := strings.Cut(re.Message, "conflicting job modify index: "); ok {
		e.Now, _ = strconv.ParseUint(now, 10, 64)
	}
	return e
}

// evalDeployment waits for an evaluation to be processed and returns the
// deployment it created, "" when none or on timeout.
func (c *Client) evalDeployment(ctx context.Context, evalID string) string {
	if evalID == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, evalWait)
	defer cancel()
	var index uint64
	for {
		start := time.Now()
		q := queryOpts(ctx)
		q.WaitIndex, q.WaitTime = index, evalWait
		e, qm, err := c.api.Evaluations().Info(evalID, q)
		switch {
		case err == nil && e.Status != api.EvalStatusPending:
			return e.DeploymentID
		case err == nil:
			if qm.LastIndex > index {
				index = qm.LastIndex
				continue
			}
		}
		// An error, or a server that does not block: pace the retries.
		if ctxutil.Sleep(ctx, max(0, c.poll-time.Since(start))) != nil {
			return ""
		}
	}
}

// DeploymentProgress is a deployment's state.
type DeploymentProgress struct {
	ID          string
	JobID       string
	JobVersion  uint64
	Status      string // running, paused, successful, failed, cancelled…
	Description string // Nomad's, e.g. "Failed due to unhealthy allocations - rolling back to job version 3"
	Groups      []GroupProgress
	// JobModifyIndex is the modify index of the job version it deploys;
	// FollowDeployment(ctx, job, p.JobModifyIndex-1, …) follows it.
	JobModifyIndex uint64
}

// GroupProgress is a group's part of a deployment.
type GroupProgress struct {
	Name                                string
	Desired, Placed, Healthy, Unhealthy int
	DesiredCanaries, PlacedCanaries     int
	Promoted, AutoRevert                bool
}

// Terminal tells whether the deployment is over.
func (p DeploymentProgress) Terminal() bool {
	switch p.Status {
	case api.DeploymentStatusSuccessful, api.DeploymentStatusFailed, api.DeploymentStatusCancelled:
		return true
	}
	return false
}

// NeedsPromotion tells whether the deployment waits for its canaries to
// be promoted.
func (p DeploymentProgress) NeedsPromotion() bool {
	if p.Status != api.DeploymentStatusRunning {
		return false
	}
	for _, g := range p.Groups {
		if g.DesiredCanaries > 0 && !g.Promoted {
			return true
		}
	}
	return false
}

func (p DeploymentProgress) same(o DeploymentProgress) bool {
	return p.ID == o.ID && p.Status == o.Status && p.Description == o.Description && slices.Equal(p.Groups, o.Groups)
}

func progressOf(d *api.Deployment) DeploymentProgress {
	p := DeploymentProgress{ID: d.ID, JobID: d.JobID, JobVersion: d.JobVersion, Status: d.Status,
		Description: d.StatusDescription, JobModifyIndex: d.JobSpecModifyIndex}
	for name, g := range d.TaskGroups {
		p.Groups = append(p.Groups, GroupProgress{Name: name, Desired: g.DesiredTotal, Placed: g.PlacedAllocs,
			Healthy: g.HealthyAllocs, Unhealthy: g.UnhealthyAllocs, DesiredCanaries: g.DesiredCanaries,
			PlacedCanaries: len(g.PlacedCanaries), Promoted: g.Promoted, AutoRevert: g.AutoRevert})
	}
	sort.Slice(p.Groups, func(i, j int) bool { return p.Groups[i].Name < p.Groups[j].Name })
	return p
}

// Following a deployment: each blocking query waits this long at most, and
// this many failed reads in a row end it.
const (
	followWait     = 5 * time.Minute
	followFailures = 5
)

// FollowDeployment waits for the deployment of a version of jobID
// registered after sinceIndex (pass the plan's JobModifyIndex after
// Register, Rollback or Scale: the index of the version they replace),
// calls update with each change of its state, and returns it once it is
// over (successful, failed, cancelled), even when a newer deployment
// supersedes it. It uses blocking queries; a few failed reads in a row,
// or ctx, end it with an error and the last state seen.
func (c *Client) FollowDeployment(ctx context.Context, jobID string, sinceIndex uint64, update func(DeploymentProgress)) (DeploymentProgress, error) {
	// A mistyped job would never get a deployment; other failures are
	// retried below.
	if _, err := c.readJob(ctx, jobID); errors.Is(err, ErrNotFound) {
		return DeploymentProgress{}, err
	}
	var last DeploymentProgress
	var index uint64
	failures := 0
	for {
		start := time.Now()
		q := queryOpts(ctx)
		q.WaitIndex, q.WaitTime = index, followWait
		var d *api.Deployment
		var qm *api.QueryMeta
		var err error
		if last.ID == "" {
			d, qm, err = c.api.Jobs().LatestDeployment(jobID, q)
		} else {
			// Found: follow it, even when a newer one supersedes it.
			d, qm, err = c.api.Deployments().Info(last.ID, q)
		}
		if err != nil {
			if ctx.Err() != nil {
				return last, fmt.Errorf("following the deployment of %s: %w", jobID, ctx.Err())
			}
			if failures++; failures >= followFailures {
				return last, c.fail("follow the deployment of job "+jobID, err)
			}
			if err := ctxutil.Sleep(ctx, c.poll); err != nil {
				return last, fmt.Errorf("following the deployment of %s: %w", jobID, err)
			}
			continue
		}
		failures = 0
		if d != nil && d.JobSpecModifyIndex > sinceIndex {
			p := progressOf(d)
			if !p.same(last) {
				last = p
				if update != nil {
					update(p)
				}
			}
			if p.Terminal() {
				return p, nil
			}
		}
		advanced := qm.LastIndex > index
		// An index going back (a new leader, a restore) is taken as is.
		index = qm.LastIndex
		if !advanced && time.Since(start) < c.poll {
			if err := ctxutil.Sleep(ctx, c.poll-time.Since(start)); err != nil {
				return last, fmt.Errorf("following the deployment of %s: %w", jobID, err)
			}
		}
	}
}
