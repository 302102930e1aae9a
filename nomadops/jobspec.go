package nomadops

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/nomad/api"
)

// JobspecError is a jobspec that cannot be deployed as the job asked
// for: Nomad cannot parse it, or it declares another job. Reason does not
// name the file, which the caller knows.
type JobspecError struct {
	JobID  string // the job the jobspec was given for
	Reason string // e.g. `it declares job "api"`, or Nomad's parse error
}

func (e *JobspecError) Error() string {
	return fmt.Sprintf("jobspec for job %s: %s", e.JobID, e.Reason)
}

// PlanJobspec previews registering a jobspec (HCL) as job jobID. Nomad
// parses it, so the HCL is exactly what `nomad job run` would read; a
// jobspec it refuses, or one declaring another job, is a *JobspecError.
// A job that does not exist yet is a first registration (NewJob), which
// Register makes only if the job still does not exist then. A jobspec
// identical to the running job is ErrNoChange. The plan is filled as
// PlanImage fills it, image changes apart from the other differences.
func (c *Client) PlanJobspec(ctx context.Context, jobID, hcl string) (ImagePlan, error) {
	// Jobs().ParseHCLOpts, the same request, takes no context: a Nomad
	// that hangs would outlive the command's deadline.
	var job api.Job
	_, err := c.api.Raw().Write("/v1/jobs/parse", &api.JobsParseRequest{JobHCL: hcl, Canonicalize: true}, &job, writeOpts(ctx))
	if err != nil {
		var re *ResponseError
		if err = c.fail("parse the jobspec of job "+jobID, err); errors.As(err, &re) && re.Status == 400 {
			return ImagePlan{}, &JobspecError{JobID: jobID, Reason: "Nomad cannot parse it: " + re.Message}
		}
		return ImagePlan{}, err
	}
	if id := str(job.ID); id != jobID {
		return ImagePlan{}, &JobspecError{JobID: jobID, Reason: fmt.Sprintf("it declares job %q", id)}
	}
	cur, err := c.readJob(ctx, jobID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return ImagePlan{}, err
	}
	resp, _, err := c.api.Jobs().Plan(&job, true, writeOpts(ctx))
	if err != nil {
		return ImagePlan{}, c.fail("plan job "+jobID, err)
	}
	plan := ImagePlan{JobID: jobID, JobModifyIndex: resp.JobModifyIndex, Updates: groupUpdates(resp.Annotations),
		Warnings: resp.Warnings, job: &job}
	if cur == nil {
		// Enforcing index 0 registers the job only if it still does not
		// exist, as previewed. A new job's diff lists every field as
		// added, which says less than the placements in Updates.
		plan.NewJob, plan.JobModifyIndex = true, 0
		return plan, nil
	}
	if resp.Diff != nil && resp.Diff.Type == "None" {
		return ImagePlan{}, fmt.Errorf("%w: job %s already runs this jobspec (version %d)", ErrNoChange, jobID, *cur.Version)
	}
	plan.Version = *cur.Version
	plan.Changes, plan.Other = diffChanges(resp.Diff)
	return plan, nil
}
