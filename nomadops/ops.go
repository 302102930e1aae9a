package nomadops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/vigie/vigie/internal/ctxutil"
)

// RollbackPlan is the preview of a rollback, applied by Rollback.
type RollbackPlan struct {
	JobID          string
	From, To       uint64 // the current version and the one to go back to
	ToStable       bool
	ToSubmitTime   time.Time
	JobModifyIndex uint64        // the current one; FollowDeployment after Rollback starts there
	Images         []ImageChange // tasks whose image differs (Old: now, New: after)
	Counts         []CountChange // groups whose count differs
}

// CountChange is a group's count change.
type CountChange struct {
	Group    string
	Old, New int
}

// PlanRollback previews going back to version, or by default to the
// newest stable version older than the current one (ErrNoStableVersion
// when there is none). A version Nomad no longer tracks is a
// *NotFoundError listing those it does.
func (c *Client) PlanRollback(ctx context.Context, jobID string, version *uint64) (RollbackPlan, error) {
	job, err := c.readJob(ctx, jobID)
	if err != nil {
		return RollbackPlan{}, err
	}
	versions, _, _, err := c.api.Jobs().Versions(jobID, false, queryOpts(ctx))
	if err != nil {
		return RollbackPlan{}, c.fail("read the versions of job "+jobID, err)
	}
	sort.Slice(versions, func(i, j int) bool { return *versions[i].Version > *versions[j].Version })
	cur := *job.Version
	var target *api.Job
	for _, v := range versions {
		switch {
		case version != nil && *v.Version == *version:
			target = v
		case version == nil && target == nil && *v.Version < cur && v.Stable != nil && *v.Stable:
			target = v
		}
	}
	switch {
	case version != nil && *version == cur:
		return RollbackPlan{}, fmt.Errorf("%w: job %s is at version %d already", ErrNoChange, jobID, cur)
	case target == nil && version != nil:
		var known []string
		for _, v := range versions {
			known = append(known, strconv.FormatUint(*v.Version, 10))
		}
		return RollbackPlan{}, &NotFoundError{Kind: "version", Name: strconv.FormatUint(*version, 10), Job: jobID, Known: known}
	case target == nil:
		return RollbackPlan{}, fmt.Errorf("%w: job %s has no stable version older than %d", ErrNoStableVersion, jobID, cur)
	}
	plan := RollbackPlan{JobID: jobID, From: cur, To: *target.Version, ToStable: target.Stable != nil && *target.Stable,
		ToSubmitTime: unixTime(target.SubmitTime), JobModifyIndex: *job.JobModifyIndex}
	for _, g := range job.TaskGroups {
		tg, err := findGroup(target, *g.Name)
		if err != nil {
			continue // a group the old version lacks goes away; the diff is Nomad's business
		}
		if *g.Count != *tg.Count {
			plan.Counts = append(plan.Counts, CountChange{Group: *g.Name, Old: *g.Count, New: *tg.Count})
		}
		for _, t := range g.Tasks {
			for _, tt := range tg.Tasks {
				if t.Name == tt.Name && taskImage(t) != taskImage(tt) {
					plan.Images = append(plan.Images, ImageChange{Group: *g.Name, Task: t.Name, Old: taskImage(t), New: taskImage(tt)})
				}
			}
		}
	}
	return plan, nil
}

// Rollback applies a rollback plan: Nomad registers the old version again
// as a new one, provided the job is still at the plan's version (else a
// *JobChangedError).
func (c *Client) Rollback(ctx context.Context, plan RollbackPlan) (evalID string, err error) {
	resp, _, err := c.api.Jobs().Revert(plan.JobID, plan.To, &plan.From, writeOpts(ctx), "", "")
	if err == nil {
		return resp.EvalID, nil
	}
	err = c.fail("revert job "+plan.JobID, err)
	// "Current job has version 5; enforcing version 4"
	var re *ResponseError
	if errors.As(err, &re) && strings.HasPrefix(re.Message, "Current job has version ") {
		e := &JobChangedError{JobID: plan.JobID, What: "version", Was: plan.From}
		now, _, _ := strings.Cut(strings.TrimPrefix(re.Message, "Current job has version "), ";")
		e.Now, _ = strconv.ParseUint(now, 10, 64)
		return "", e
	}
	return "", c.changed(plan.JobID, plan.JobModifyIndex, err)
}

// ScalePlan is the preview of a count change, applied by Scale.
type ScalePlan struct {
	JobID, Group   string
	From, To       int
	Version        uint64
	JobModifyIndex uint64
}

// PlanScale previews setting a group's count. The group must exist (a
// *NotFoundError suggests the closest), the count be at least 0 and
// within the group's scaling policy, and differ from the current one
// (ErrNoChange).
func (c *Client) PlanScale(ctx context.Context, jobID, group string, count int) (ScalePlan, error) {
	if count < 0 {
		return ScalePlan{}, fmt.Errorf("count %d: a count is 0 or more", count)
	}
	job, err := c.readJob(ctx, jobID)
	if err != nil {
		return ScalePlan{}, err
	}
	if *job.Type == api.JobTypeSystem || *job.Type == api.JobTypeSysbatch {
		return ScalePlan{}, fmt.Errorf("job %s is a %s job, which runs on every node and has no count", jobID, *job.Type)
	}
	g, err := findGroup(job, group)
	if err != nil {
		return ScalePlan{}, err
	}
	if p := g.Scaling; p != nil && p.Min != nil && int64(count) < *p.Min {
		return ScalePlan{}, fmt.Errorf("count %d is below the scaling minimum %d of %s/%s", count, *p.Min, jobID, group)
	}
	if p := g.Scaling; p != nil && p.Max != nil && int64(count) > *p.Max {
		return ScalePlan{}, fmt.Errorf("count %d is above the scaling maximum %d of %s/%s", count, *p.Max, jobID, group)
	}
	if *g.Count == count {
		return ScalePlan{}, fmt.Errorf("%w: %s/%s has %d already", ErrNoChange, jobID, group, count)
	}
	return ScalePlan{JobID: jobID, Group: group, From: *g.Count, To: count, Version: *job.Version,
		JobModifyIndex: *job.JobModifyIndex}, nil
}

// Scale applies a scale plan; message goes into Nomad's scaling event
// (who asked, from where). Nomad does not enforce an index on scaling, so
// the job is read again first: a job changed since the preview is a
// *JobChangedError. Nomad refuses while a deployment runs.
func (c *Client) Scale(ctx context.Context, plan ScalePlan, message string) (evalID string, err error) {
	job, err := c.readJob(ctx, plan.JobID)
	if err != nil {
		return "", err
	}
	if *job.JobModifyIndex != plan.JobModifyIndex {
		return "", &JobChangedError{JobID: plan.JobID, What: "modify index", Was: plan.JobModifyIndex, Now: *job.JobModifyIndex}
	}
	count := int64(plan.To)
	resp, _, err := c.api.Jobs().ScaleWithRequest(plan.JobID, &api.ScalingRequest{Count: &count,
		Target: map[string]string{"Job": plan.JobID, "Group": plan.Group}, Message: message,
		JobModifyIndex: plan.JobModifyIndex}, writeOpts(ctx))
	if err != nil {
		return "", c.fail(fmt.Sprintf("scale %s/%s", plan.JobID, plan.Group), err)
	}
	return resp.EvalID, nil
}

// RestartResult lists the allocations restarted, in order.
type RestartResult struct {
	JobID  string
	Allocs []string
}

// restartWait bounds the wait for one allocation to run again.
const restartWait = 2 * time.Minute

// Restart restarts the running allocations of a job (of one group, unless
// group is empty) one at a time: each one's running tasks are restarted in
// place, and the next waits until they all run again, so that the job
// never loses more than one allocation. An allocation that fails or
// stops instead, or takes more than 2 minutes, ends it with an error.
func (c *Client) Restart(ctx context.Context, jobID, group string) (RestartResult, error) {
	job, err := c.readJob(ctx, jobID)
	if err != nil {
		return RestartResult{}, err
	}
	if group != "" {
		if _, err := findGroup(job, group); err != nil {
			return RestartResult{}, err
		}
	}
	allocs, _, err := c.api.Jobs().Allocations(jobID, false, queryOpts(ctx))
	if err != nil {
		return RestartResult{}, c.fail("list the allocations of job "+jobID, err)
	}
	var targets []*api.AllocationListStub
	for _, a := range allocs {
		if a.ClientStatus == api.AllocClientStatusRunning && a.DesiredStatus == api.AllocDesiredStatusRun && (group == "" || a.TaskGroup == group) {
			targets = append(targets, a)
		}
	}
	if len(targets) == 0 {
		where := jobID
		if group != "" {
			where += "/" + group
		}
		return RestartResult{}, fmt.Errorf("%s has no running allocation to restart", where)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Name < targets[j].Name })
	res := RestartResult{JobID: jobID}
	for _, a := range targets {
		before := map[string]uint64{}
		for name, ts := range a.TaskStates {
			if ts.State == "running" {
				before[name] = ts.Restarts
			}
		}
		if err := c.api.Allocations().Restart(&api.Allocation{ID: a.ID}, "", queryOpts(ctx)); err != nil {
			return res, c.fail("restart allocation "+shortID(a.ID), err)
		}
		res.Allocs = append(res.Allocs, a.ID)
		if err := c.waitRestarted(ctx, jobID, a.ID, before); err != nil {
			return res, err
		}
	}
	return res, nil
}

// waitRestarted waits until the tasks of an allocation that were running
// have restarted and run again, with blocking queries on the job's
// allocations.
func (c *Client) waitRestarted(ctx context.Context, jobID, allocID string, before map[string]uint64) error {
	wctx, cancel := context.WithTimeout(ctx, restartWait)
	defer cancel()
	var index uint64
	for {
		start := time.Now()
		q := queryOpts(wctx)
		q.WaitIndex, q.WaitTime = index, restartWait
		allocs, qm, err := c.api.Jobs().Allocations(jobID, false, q)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("restarting %s: %w", shortID(allocID), ctx.Err())
		case wctx.Err() != nil:
			return fmt.Errorf("allocation %s of %s did not run again within %v of its restart", shortID(allocID), jobID, restartWait)
		case err != nil:
			return c.fail("list the allocations of job "+jobID, err)
		}
		for _, a := range allocs {
			if a.ID != allocID {
				continue
			}
			if a.ClientStatus != api.AllocClientStatusRunning || a.DesiredStatus != api.AllocDesiredStatusRun {
				return fmt.Errorf("allocation %s of %s is %s after its restart: %s", shortID(allocID), jobID, a.ClientStatus, a.ClientDescription)
			}
			if restarted(a, before) {
				return nil
			}
		}
		if qm.LastIndex <= index && time.Since(start) < c.poll {
			_ = ctxutil.Sleep(wctx, c.poll-time.Since(start)) // the next round reports a timeout
		}
		index = qm.LastIndex
	}
}

func restarted(a *api.AllocationListStub, before map[string]uint64) bool {
	for name, n := range before {
		ts := a.TaskStates[name]
		if ts == nil || ts.Restarts <= n || ts.State != "running" {
			return false
		}
	}
	return true
}

func shortID(id string) string { return id[:min(8, len(id))] }

// Promote promotes the canaries of a job's latest deployment, which must
// be the one previewed (deploymentID: a deployment started since is not
// what was confirmed), running and waiting for promotion with healthy
// canaries (else ErrNothingToPromote, or an error saying which group is
// not ready). It returns the deployment as it is after the promotion.
func (c *Client) Promote(ctx context.Context, jobID, deploymentID string) (DeploymentProgress, error) {
	if _, err := c.readJob(ctx, jobID); err != nil {
		return DeploymentProgress{}, err
	}
	d, _, err := c.api.Jobs().LatestDeployment(jobID, queryOpts(ctx))
	if err != nil {
		return DeploymentProgress{}, c.fail("read the deployment of job "+jobID, err)
	}
	if d == nil {
		return DeploymentProgress{}, fmt.Errorf("%w: job %s has no deployment", ErrNothingToPromote, jobID)
	}
	p := progressOf(d)
	if !p.NeedsPromotion() {
		return p, fmt.Errorf("%w: the latest deployment of %s (%s) is %s: %s", ErrNothingToPromote, jobID, shortID(d.ID), d.Status, d.StatusDescription)
	}
	if d.ID != deploymentID {
		return p, fmt.Errorf("%w: deployment %s was previewed, but deployment %s of %s has started since; run the command again",
			ErrJobChanged, shortID(deploymentID), shortID(d.ID), jobID)
	}
	for _, g := range p.Groups {
		if g.DesiredCanaries > 0 && !g.Promoted && g.Healthy < g.DesiredCanaries {
			return p, fmt.Errorf("the canaries of %s/%s are not ready: %d of %d healthy", jobID, g.Name, g.Healthy, g.DesiredCanaries)
		}
	}
	if _, _, err := c.api.Deployments().PromoteAll(d.ID, writeOpts(ctx)); err != nil {
		return p, c.fail("promote deployment "+shortID(d.ID)+" of job "+jobID, err)
	}
	d, _, err = c.api.Deployments().Info(p.ID, queryOpts(ctx))
	if err != nil {
		return p, c.fail("read deployment "+shortID(p.ID), err)
	}
	return progressOf(d), nil
}
