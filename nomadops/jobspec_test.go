package nomadops

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakenomad"
)

// capturedJobspec is one of the jobspecs the fake parses.
func capturedJobspec(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../internal/fakenomad/testdata/jobs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlanJobspec(t *testing.T) {
	fake, c := setup(t)
	// The fake runs web version 1, from web-v2.hcl; web.hcl goes back to
	// release v1.
	hcl := capturedJobspec(t, "web.hcl")
	plan, err := c.PlanJobspec(ctx(t), "web", hcl)
	if err != nil {
		t.Fatal(err)
	}
	if plan.JobID != "web" || plan.Version != 1 || plan.NewJob || plan.JobModifyIndex != *fake.Job("web").JobModifyIndex ||
		len(plan.Changes) != 0 || !slices.Equal(plan.Other, []string{`web/server: Env.RELEASE: "v2" → "v1"`}) ||
		!slices.Equal(plan.Updates, []GroupUpdate{{Group: "web", Destructive: 1}}) {
		t.Errorf("plan %+v", plan)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	if d, err := c.FollowDeployment(ctx(t), "web", plan.JobModifyIndex, nil); err != nil || d.Status != "successful" || d.JobVersion != 2 {
		t.Fatalf("deployment %+v %v", d, err)
	}
	if env := fake.Job("web").TaskGroups[0].Tasks[0].Env["RELEASE"]; env != "v1" {
		t.Errorf("registered RELEASE=%s", env)
	}
	if _, err := c.PlanJobspec(ctx(t), "web", hcl); !errors.Is(err, ErrNoChange) || err.Error() != "nothing to change: job web already runs this jobspec (version 2)" {
		t.Errorf("same jobspec again: %v", err)
	}

	var je *JobspecError
	if _, err := c.PlanJobspec(ctx(t), "api", hcl); !errors.As(err, &je) || err.Error() != `jobspec for job api: it declares job "web"` {
		t.Errorf("another job's jobspec: %v", err)
	}
	_, err = c.PlanJobspec(ctx(t), "web", `job "web" {`)
	if !errors.As(err, &je) || je.Reason != "Nomad cannot parse it: Failed to parse job: input.hcl: fakenomad only parses the jobspecs of its testdata/jobs" {
		t.Errorf("bad HCL: %v", err)
	}
}

func TestPlanJobspecNewJob(t *testing.T) {
	// The captured jobs are in the default namespace: web is new in ops.
	fake := fakenomad.New(t, fakenomad.Config{})
	fake.SetDeploymentStep(step)
	c, err := New(Config{Address: fake.URL, Namespace: "ops", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := c.PlanJobspec(ctx(t), "web", capturedJobspec(t, "web-v2.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !plan.NewJob || plan.Version != 0 || plan.JobModifyIndex != 0 || len(plan.Other) != 0 ||
		!slices.Equal(plan.Updates, []GroupUpdate{{Group: "web", Place: 1}}) {
		t.Errorf("plan %+v", plan)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	if d, err := c.FollowDeployment(ctx(t), "web", plan.JobModifyIndex, nil); err != nil || d.Status != "successful" || d.JobVersion != 0 {
		t.Fatalf("deployment %+v %v", d, err)
	}
	// The plan creates the job: once it exists, it is stale.
	if _, _, err := c.Register(ctx(t), plan); !errors.Is(err, ErrJobChanged) || !strings.Contains(err.Error(), "changed since the preview") {
		t.Errorf("creating again: %v", err)
	}
}
