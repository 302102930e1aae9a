package nomadops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/testpki"
)

const (
	step     = 20 * time.Millisecond
	newImage = "registry.example.org/shop/app:1.5.0"
)

// setup starts a fake with a fast scheduler and the docker jobs, and a
// client for it.
func setup(t *testing.T) (*fakenomad.Server, *Client) {
	t.Helper()
	fake := fakenomad.New(t, fakenomad.Config{Token: "s3cr3t"})
	fake.SetDeploymentStep(step)
	fake.AddJob(fakenomad.ShopJob())
	fake.AddJob(fakenomad.CanaryJob())
	c, err := New(Config{Address: fake.URL, Token: "s3cr3t", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestValidateImage(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for _, ref := range []string{
		"nginx", "nginx:1.27", "registry.example.org:5000/team/app:v1.2.3", "app@sha256:" + hex,
		"nginx:1.27@sha256:" + hex, "localhost/app", "localhost:5000/app:latest", "library/nginx",
		"ghcr.io/org/my-app_x.y__z:V1_2-rc.1", "a", "team/app:" + strings.Repeat("x", 128),
	} {
		if err := ValidateImage(ref); err != nil {
			t.Errorf("%q: %v", ref, err)
		}
	}
	for ref, reason := range map[string]string{
		"":                                  "it is empty",
		"NGINX":                             `the repository "NGINX" must be lowercase`,
		"nginx:":                            "the tag after ':' is empty",
		"http://x/y":                        "it has a scheme; write registry/repository:tag without http://",
		"a b":                               "it contains whitespace",
		"nginx:tag with space":              "it contains whitespace",
		"nginx:" + strings.Repeat("t", 300): "the tag is 300 characters long, at most 128 are allowed",
		"nginx:-rc":                         `the tag "-rc" may only have letters, digits, '_', '.' and '-', and may not start with '.' or '-'`,
		"app@sha256:abc":                    "the digest must be sha256: followed by 64 lowercase hex digits",
		"app@md5:" + hex:                    "the digest must be sha256: followed by 64 lowercase hex digits",
		"a@b@c":                             "it has more than one '@'",
		"team//app":                         "the repository path has an empty component",
		"-app":                              `the repository component "-app" may only have lowercase letters, digits and single '.', '_' or '__' or dashes between them`,
		"registry:abc/app":                  `the registry port "abc" is not a port number`,
		"reg_istry.io/app":                  `the registry "reg_istry.io" is not a host name`,
		"team/App:1":                        `the repository "team/App" must be lowercase`,
		":1.0":                              "the repository is missing",
		"nginx\u00e9":                       "it has characters other than printable ASCII",
	} {
		err := ValidateImage(ref)
		var ie *ImageError
		if !errors.As(err, &ie) || ie.Reason != reason {
			t.Errorf("%q: %v, want %q", ref, err, reason)
		}
	}
}

func TestStatus(t *testing.T) {
	fake, c := setup(t)
	fake.AddNode("vm2", "down", "eligible", false)
	fake.AddNode("vm3", "ready", "eligible", true)
	// A canary deployment waits for promotion: it stays running.
	plan, err := c.PlanImage(ctx(t), "checkout", "registry.example.org/checkout/api:2.1.0", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	n := st.Nodes
	if st.Leader != "127.0.0.1:4647" || n.Total != 3 || n.Ready != 2 || n.Down != 1 || n.Ineligible != 1 {
		t.Errorf("status %+v", st)
	}
	if len(n.Problems) != 2 || n.Problems[0] != (NodeProblem{"vm2", "down", "eligible", false}) ||
		n.Problems[1] != (NodeProblem{"vm3", "ready", "ineligible", true}) {
		t.Errorf("problems %+v", n.Problems)
	}
	// backup, checkout, shop and web run; crasher is dead; the dispatched
	// child is left out.
	if st.Jobs["running"] != 4 || st.Jobs["dead"] != 1 || len(st.Jobs) != 2 {
		t.Errorf("jobs %v", st.Jobs)
	}
	if len(st.Deployments) != 1 || st.Deployments[0].JobID != "checkout" || st.Deployments[0].Status != "running" {
		t.Errorf("deployments %+v", st.Deployments)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()
	c, err := New(Config{Address: addr, Token: "s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "Nomad at "+addr+" is unreachable") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("err = %v", err)
	}
	if _, err := New(Config{Address: "127.0.0.1:4646"}); err == nil {
		t.Error("an address without a scheme was taken")
	}
	if s := (Config{Address: addr, Token: "s3cr3t"}).String(); strings.Contains(s, "s3cr3t") || !strings.Contains(s, "token set") {
		t.Errorf("config string %q", s)
	}
}

func TestJobs(t *testing.T) {
	_, c := setup(t)
	ids := func(glob string) []string {
		jobs, err := c.Jobs(ctx(t), glob)
		if err != nil {
			t.Fatalf("%q: %v", glob, err)
		}
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	for glob, want := range map[string][]string{
		"":         {"backup", "checkout", "crasher", "shop", "web"},
		"*":        {"backup", "checkout", "crasher", "shop", "web"},
		"backup/*": {"backup/dispatch-1795705868-d94dd8a4"},
		"w*":       {"web"},
		"*e*":      {"checkout", "crasher", "web"},
		"web":      {"web"},
		"nope":     nil,
	} {
		if got := ids(glob); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", glob, got, want)
		}
	}
	jobs, _ := c.Jobs(ctx(t), "web")
	if j := jobs[0]; j.Type != "service" || j.Status != "running" || j.Allocs.Running != 1 || j.Allocs.Complete != 2 || j.SubmitTime.IsZero() {
		t.Errorf("web %+v", j)
	}
	if _, err := c.Jobs(ctx(t), "["); err == nil {
		t.Error("bad pattern taken")
	}
}

func TestJob(t *testing.T) {
	_, c := setup(t)
	j, err := c.Job(ctx(t), "web")
	if err != nil {
		t.Fatal(err)
	}
	if j.Version != 1 || !j.Stable || j.Status != "running" || j.JobModifyIndex != 26 || len(j.Groups) != 1 {
		t.Errorf("web %+v", j)
	}
	g := j.Groups[0]
	if g.Name != "web" || g.Desired != 1 || g.Allocs.Running != 1 || g.Allocs.Complete != 2 ||
		g.Tasks[0] != (TaskInfo{Name: "server", Driver: "raw_exec"}) {
		t.Errorf("group %+v", g)
	}
	if d := j.LatestDeployment; d == nil || d.ID != "050af898-0266-ab7b-d1a6-addee7b957c0" || d.Status != "successful" ||
		d.Groups[0] != (GroupProgress{Name: "web", Desired: 1, Placed: 1, Healthy: 1}) {
		t.Errorf("deployment %+v", d)
	}
	if len(j.Versions) != 2 || j.Versions[0].Version != 1 || !j.Versions[1].Stable {
		t.Errorf("versions %+v", j.Versions)
	}
	shop, _ := c.Job(ctx(t), "shop")
	if shop.Groups[0].Tasks[0].Image != fakenomad.ShopImage {
		t.Errorf("shop %+v", shop.Groups)
	}
	backup, _ := c.Job(ctx(t), "backup")
	if backup.Children.Dead != 1 {
		t.Errorf("backup children %+v", backup.Children)
	}
	_, err = c.Job(ctx(t), "wbe")
	var nf *NotFoundError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &nf) || nf.Suggestion != "web" || err.Error() != `job "wbe" not found; did you mean "web"?` {
		t.Errorf("wbe: %v", err)
	}
}

func TestLogs(t *testing.T) {
	_, c := setup(t)
	tail, err := c.Logs(ctx(t), "crasher", "", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if tail.AllocID != fakenomad.CrasherAllocID || tail.Task != "boom" || tail.Stream != "stderr" || tail.Truncated ||
		!slices.Equal(tail.Lines, []string{"crashing on purpose", "crashing on purpose"}) {
		t.Errorf("crasher %+v", tail)
	}
	tail, _ = c.Logs(ctx(t), "crasher", "boom", 1, true)
	if !slices.Equal(tail.Lines, []string{"crashing on purpose"}) || !tail.Truncated {
		t.Errorf("one line %+v", tail)
	}
	tail, err = c.Logs(ctx(t), fakenomad.BackupAllocID[:8], "", 5, false)
	if err != nil || tail.JobID != "backup/dispatch-1795705868-d94dd8a4" || !slices.Equal(tail.Lines, []string{"backup done"}) {
		t.Errorf("backup by prefix: %v %+v", err, tail)
	}
	if tail, err := c.Logs(ctx(t), fakenomad.BackupAllocID[:9], "backup", 5, true); err != nil || len(tail.Lines) != 0 {
		t.Errorf("empty stderr, odd prefix: %v %+v", err, tail)
	}
	var nf *NotFoundError
	if _, err := c.Logs(ctx(t), "web", "sever", 5, false); !errors.As(err, &nf) || nf.Suggestion != "server" {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := c.Logs(ctx(t), "adccfa0", "", 5, false); !errors.Is(err, ErrNotFound) {
		t.Errorf("short prefix: %v", err)
	}
	if _, err := c.Logs(ctx(t), "wbe", "", 5, false); !errors.As(err, &nf) || nf.Suggestion != "web" {
		t.Errorf("unknown job: %v", err)
	}
	if _, err := c.Logs(ctx(t), "shop", "", 5, false); err == nil || !strings.Contains(err.Error(), "several tasks, say which: app, proxy") &&
		!strings.Contains(err.Error(), "several tasks, say which: logrotate, worker") {
		t.Errorf("several tasks: %v", err)
	}
	// The fake has no log for this running allocation: Nomad's 404.
	var re *ResponseError
	if _, err := c.Logs(ctx(t), "web", "", 5, false); !errors.As(err, &re) || re.Status != 404 {
		t.Errorf("no log: %v", err)
	}
}

func TestPlanImage(t *testing.T) {
	_, c := setup(t)
	plan, err := c.PlanImage(ctx(t), "shop", newImage, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []ImageChange{
		{"frontend", "app", fakenomad.ShopImage, newImage},
		{"frontend", "proxy", fakenomad.ProxyImage, newImage},
		{"worker", "worker", fakenomad.ShopImage, newImage},
	}
	if !slices.Equal(plan.Changes, want) || plan.Version != 0 || plan.JobModifyIndex == 0 || len(plan.Other) != 0 {
		t.Errorf("plan %+v", plan)
	}
	if !slices.Equal(plan.Updates, []GroupUpdate{{Group: "frontend", Destructive: 1, Ignore: 1}, {Group: "worker", Destructive: 1}}) {
		t.Errorf("updates %+v", plan.Updates)
	}
	for task, want := range map[string][]ImageChange{
		"app":            {{"frontend", "app", fakenomad.ShopImage, newImage}},
		"frontend/proxy": {{"frontend", "proxy", fakenomad.ProxyImage, newImage}},
	} {
		plan, err := c.PlanImage(ctx(t), "shop", newImage, task)
		if err != nil || !slices.Equal(plan.Changes, want) {
			t.Errorf("%s: %v %+v", task, err, plan.Changes)
		}
	}
	var nf *NotFoundError
	if _, err := c.PlanImage(ctx(t), "shop", newImage, "ap"); !errors.As(err, &nf) || nf.Suggestion != "app" || nf.Job != "shop" {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := c.PlanImage(ctx(t), "shop", newImage, "worker/app"); !errors.Is(err, ErrNotFound) || err.Error() !=
		`task "worker/app" not found in job shop (frontend/app (docker), frontend/proxy (docker), worker/worker (docker), worker/logrotate (raw_exec))` {
		t.Errorf("task in the wrong group: %v", err)
	}
	if _, err := c.PlanImage(ctx(t), "shop", newImage, "logrotate"); err == nil || !strings.Contains(err.Error(), "uses the raw_exec driver") {
		t.Errorf("raw_exec task: %v", err)
	}
	if _, err := c.PlanImage(ctx(t), "web", newImage, ""); err == nil || err.Error() != "job web has no docker task: web/server (raw_exec)" {
		t.Errorf("no docker task: %v", err)
	}
	if _, err := c.PlanImage(ctx(t), "shop", fakenomad.ProxyImage, "proxy"); !errors.Is(err, ErrNoChange) {
		t.Errorf("same image: %v", err)
	}
	var ie *ImageError
	if _, err := c.PlanImage(ctx(t), "shop", "Shop:1", ""); !errors.As(err, &ie) {
		t.Errorf("bad image: %v", err)
	}
	if _, err := c.PlanImage(ctx(t), "wbe", newImage, ""); !errors.As(err, &nf) || nf.Suggestion != "web" {
		t.Errorf("unknown job: %v", err)
	}
}

func TestRegisterAndFollow(t *testing.T) {
	fake, c := setup(t)
	plan, err := c.PlanImage(ctx(t), "shop", newImage, "app")
	if err != nil {
		t.Fatal(err)
	}
	evalID, deploymentID, err := c.Register(ctx(t), plan)
	if err != nil || evalID == "" || deploymentID == "" {
		t.Fatalf("register: %q %q %v", evalID, deploymentID, err)
	}
	// Nomad failing a moment is retried.
	fake.FailNext(2, http.StatusInternalServerError)
	var updates []DeploymentProgress
	final, err := c.FollowDeployment(ctx(t), "shop", plan.JobModifyIndex, func(p DeploymentProgress) { updates = append(updates, p) })
	if err != nil {
		t.Fatal(err)
	}
	if final.ID != deploymentID || final.Status != "successful" || final.JobVersion != 1 || final.Description != "Deployment completed successfully" {
		t.Errorf("final %+v", final)
	}
	// The worker group, unchanged, is updated in place.
	if !slices.Equal(final.Groups, []GroupProgress{{Name: "frontend", Desired: 2, Placed: 2, Healthy: 2, AutoRevert: true},
		{Name: "worker", Desired: 1, Placed: 1, Healthy: 1, AutoRevert: true}}) {
		t.Errorf("final groups %+v", final.Groups)
	}
	// Each step was seen: placed, then healthy, one at a time.
	if len(updates) < 4 || updates[0].Status != "running" || updates[len(updates)-1].Status != "successful" {
		t.Fatalf("updates %+v", updates)
	}
	for i := 1; i < len(updates); i++ {
		a, b := updates[i-1].Groups[0], updates[i].Groups[0]
		if b.Placed < a.Placed || b.Healthy < a.Healthy || updates[i].same(updates[i-1]) {
			t.Errorf("update %d: %+v after %+v", i, b, a)
		}
	}
	job := fake.Job("shop")
	if *job.Version != 1 || !*job.Stable || job.TaskGroups[0].Tasks[0].Config["image"] != newImage ||
		job.TaskGroups[1].Tasks[0].Config["image"] != fakenomad.ShopImage {
		t.Errorf("job after: version %d", *job.Version)
	}
	// The plan was applied: applying it again is a conflict.
	if _, _, err := c.Register(ctx(t), plan); !errors.Is(err, ErrJobChanged) {
		t.Errorf("second register: %v", err)
	}
	if _, _, err := c.Register(ctx(t), ImagePlan{}); err == nil {
		t.Error("empty plan registered")
	}
}

func TestRegisterStaleIndex(t *testing.T) {
	fake, c := setup(t)
	plan, err := c.PlanImage(ctx(t), "shop", newImage, "")
	if err != nil {
		t.Fatal(err)
	}
	now := fake.BumpJob("shop") // someone deploys meanwhile
	_, _, err = c.Register(ctx(t), plan)
	var ce *JobChangedError
	if !errors.Is(err, ErrJobChanged) || !errors.As(err, &ce) || ce.Was != plan.JobModifyIndex || ce.Now != now {
		t.Fatalf("err = %v", err)
	}
	want := fmt.Sprintf("job shop changed since the preview (modify index %d → %d); run the command again", plan.JobModifyIndex, now)
	if err.Error() != want {
		t.Errorf("message %q, want %q", err, want)
	}
	if img := fake.Job("shop").TaskGroups[0].Tasks[0].Config["image"]; img != fakenomad.ShopImage {
		t.Errorf("image changed anyway: %v", img)
	}
}

func TestFailingImageAutoReverts(t *testing.T) {
	fake, c := setup(t)
	bad := "registry.example.org/shop/app:broken"
	fake.FailImage(bad)
	plan, err := c.PlanImage(ctx(t), "shop", bad, "app")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	final, err := c.FollowDeployment(ctx(t), "shop", plan.JobModifyIndex, nil)
	if err != nil {
		t.Fatal(err)
	}
	if final.Status != "failed" || final.Description != "Failed due to unhealthy allocations - rolling back to job version 0" ||
		final.Groups[0].Unhealthy != 1 || !final.Groups[0].AutoRevert {
		t.Errorf("final %+v", final)
	}
	// Nomad registers version 0 again, as version 2, and deploys it.
	revert, err := c.FollowDeployment(ctx(t), "shop", final.JobModifyIndex, nil)
	if err != nil || revert.JobVersion != 2 || revert.Status != "successful" {
		t.Errorf("revert deployment %+v %v", revert, err)
	}
	j, _ := c.Job(ctx(t), "shop")
	if j.Version != 2 || j.Groups[0].Tasks[0].Image != fakenomad.ShopImage || j.Versions[1].Stable {
		t.Errorf("after revert %+v", j)
	}
}

func TestRollback(t *testing.T) {
	fake, c := setup(t)
	deploy(t, c, "shop", newImage, "app")
	plan, err := c.PlanRollback(ctx(t), "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	if plan.From != 1 || plan.To != 0 || !plan.ToStable || plan.ToSubmitTime.IsZero() ||
		!slices.Equal(plan.Images, []ImageChange{{"frontend", "app", newImage, fakenomad.ShopImage}}) || len(plan.Counts) != 0 {
		t.Errorf("plan %+v", plan)
	}
	evalID, err := c.Rollback(ctx(t), plan)
	if err != nil || evalID == "" {
		t.Fatalf("rollback: %q %v", evalID, err)
	}
	final, err := c.FollowDeployment(ctx(t), "shop", plan.JobModifyIndex, nil)
	if err != nil || final.Status != "successful" || final.JobVersion != 2 {
		t.Errorf("deployment %+v %v", final, err)
	}
	if img := fake.Job("shop").TaskGroups[0].Tasks[0].Config["image"]; img != fakenomad.ShopImage {
		t.Errorf("image after rollback %v", img)
	}
	// Applying a plan again finds the job moved on.
	if _, err := c.Rollback(ctx(t), plan); !errors.Is(err, ErrJobChanged) || err.Error() != "job shop changed since the preview (version 1 → 2); run the command again" {
		t.Errorf("stale rollback: %v", err)
	}
	if _, err := c.PlanRollback(ctx(t), "shop", new(uint64(9))); !errors.Is(err, ErrNotFound) || err.Error() != `version "9" not found in job shop (2, 1, 0)` {
		t.Errorf("unknown version: %v", err)
	}
	if _, err := c.PlanRollback(ctx(t), "shop", new(uint64(2))); !errors.Is(err, ErrNoChange) {
		t.Errorf("current version: %v", err)
	}
	if plan, err := c.PlanRollback(ctx(t), "shop", new(uint64(1))); err != nil || plan.To != 1 || plan.Images[0].New != newImage {
		t.Errorf("explicit version: %v %+v", err, plan)
	}
	if _, err := c.PlanRollback(ctx(t), "crasher", nil); !errors.Is(err, ErrNoStableVersion) {
		t.Errorf("no stable version: %v", err)
	}
}

// deploy runs an image deployment to its end.
func deploy(t *testing.T, c *Client, job, image, task string) {
	t.Helper()
	plan, err := c.PlanImage(ctx(t), job, image, task)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	if d, err := c.FollowDeployment(ctx(t), job, plan.JobModifyIndex, nil); err != nil || d.Status != "successful" {
		t.Fatalf("deployment %+v %v", d, err)
	}
}

func TestScale(t *testing.T) {
	fake, c := setup(t)
	plan, err := c.PlanScale(ctx(t), "web", "web", 3)
	if err != nil {
		t.Fatal(err)
	}
	if plan != (ScalePlan{JobID: "web", Group: "web", From: 1, To: 3, Version: 1, JobModifyIndex: 26}) {
		t.Errorf("plan %+v", plan)
	}
	if _, err := c.Scale(ctx(t), plan, "scaled from the tests"); err != nil {
		t.Fatal(err)
	}
	final, err := c.FollowDeployment(ctx(t), "web", plan.JobModifyIndex, nil)
	if err != nil || final.Status != "successful" || final.Groups[0].Desired != 3 {
		t.Errorf("deployment %+v %v", final, err)
	}
	j, _ := c.Job(ctx(t), "web")
	if j.Version != 2 || j.Groups[0].Desired != 3 || j.Groups[0].Allocs.Running != 3 {
		t.Errorf("after %+v", j.Groups)
	}
	var nf *NotFoundError
	if _, err := c.PlanScale(ctx(t), "web", "wbe", 2); !errors.As(err, &nf) || nf.Suggestion != "web" || nf.Kind != "task group" {
		t.Errorf("unknown group: %v", err)
	}
	if _, err := c.PlanScale(ctx(t), "web", "web", -1); err == nil {
		t.Error("negative count taken")
	}
	if _, err := c.PlanScale(ctx(t), "web", "web", 3); !errors.Is(err, ErrNoChange) {
		t.Errorf("same count: %v", err)
	}
	plan, _ = c.PlanScale(ctx(t), "web", "web", 1)
	fake.BumpJob("web")
	if _, err := c.Scale(ctx(t), plan, ""); !errors.Is(err, ErrJobChanged) {
		t.Errorf("stale scale: %v", err)
	}
}

func TestPromote(t *testing.T) {
	_, c := setup(t)
	if _, err := c.Promote(ctx(t), "web", ""); !errors.Is(err, ErrNothingToPromote) || !strings.Contains(err.Error(), "is successful") {
		t.Errorf("web: %v", err)
	}
	if _, err := c.Promote(ctx(t), "wbe", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown job: %v", err)
	}
	plan, err := c.PlanImage(ctx(t), "checkout", "registry.example.org/checkout/api:2.1.0", "")
	if err != nil {
		t.Fatal(err)
	}
	if plan.Updates[0] != (GroupUpdate{Group: "checkout", Canary: 1, Ignore: 3}) {
		t.Errorf("canary plan %+v", plan.Updates)
	}
	if _, _, err := c.Register(ctx(t), plan); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan string)
	var once sync.Once
	done := make(chan DeploymentProgress, 1)
	go func() {
		final, err := c.FollowDeployment(ctx(t), "checkout", plan.JobModifyIndex, func(p DeploymentProgress) {
			if p.NeedsPromotion() && p.Groups[0].Healthy == 1 {
				once.Do(func() { waiting <- p.ID })
			}
		})
		if err != nil {
			t.Error(err)
		}
		done <- final
	}()
	var deployment string
	select {
	case deployment = <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the canary never waited for promotion")
	}
	// What was not previewed is not promoted.
	if _, err := c.Promote(ctx(t), "checkout", "0ther-dep"); !errors.Is(err, ErrJobChanged) ||
		!strings.Contains(err.Error(), "deployment 0ther-de was previewed, but deployment "+shortID(deployment)+" of checkout has started since") {
		t.Fatalf("promote of another deployment: %v", err)
	}
	p, err := c.Promote(ctx(t), "checkout", deployment)
	if err != nil || p.NeedsPromotion() || !p.Groups[0].Promoted || p.Description != "Deployment is running" {
		t.Fatalf("promote: %v %+v", err, p)
	}
	if final := <-done; final.Status != "successful" || final.Groups[0].Healthy != 3 {
		t.Errorf("final %+v", final)
	}
	if _, err := c.Promote(ctx(t), "checkout", deployment); !errors.Is(err, ErrNothingToPromote) {
		t.Errorf("promoted twice: %v", err)
	}
}

func TestRestart(t *testing.T) {
	_, c := setup(t)
	res, err := c.Restart(ctx(t), "web", "")
	if err != nil {
		t.Fatal(err)
	}
	if res.JobID != "web" || !slices.Equal(res.Allocs, []string{fakenomad.WebAllocID}) {
		t.Errorf("result %+v", res)
	}
	res, err = c.Restart(ctx(t), "shop", "frontend")
	if err != nil || len(res.Allocs) != 2 {
		t.Fatalf("shop: %v %+v", err, res)
	}
	if _, err := c.Restart(ctx(t), "crasher", ""); err == nil || err.Error() != "crasher has no running allocation to restart" {
		t.Errorf("crasher: %v", err)
	}
	var nf *NotFoundError
	if _, err := c.Restart(ctx(t), "shop", "fronted"); !errors.As(err, &nf) || nf.Suggestion != "frontend" {
		t.Errorf("unknown group: %v", err)
	}
}

func TestCancel(t *testing.T) {
	_, c := setup(t)
	cctx, cancel := context.WithCancel(t.Context())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	// Nothing deploys web: the follow waits until cancelled.
	_, err := c.FollowDeployment(cctx, "web", 1000, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("err = %v after %v", err, time.Since(start))
	}
}

func TestDiffChanges(t *testing.T) {
	d := &api.JobDiff{Type: "Edited", Fields: []*api.FieldDiff{{Type: "None", Name: "Priority", Old: "50", New: "50"}},
		TaskGroups: []*api.TaskGroupDiff{{Type: "Edited", Name: "web",
			Fields: []*api.FieldDiff{{Type: "Edited", Name: "Count", Old: "1", New: "2"}},
			Tasks: []*api.TaskDiff{
				{Type: "Edited", Name: "server", Objects: []*api.ObjectDiff{
					{Type: "Edited", Name: "Config", Fields: []*api.FieldDiff{
						{Type: "None", Name: "args[0]", Old: "x", New: "x"},
						{Type: "Edited", Name: "image", Old: "a:1", New: "a:2"},
						{Type: "Added", Name: "ports[0]", New: "http"}}},
					{Type: "Edited", Name: "Env", Fields: []*api.FieldDiff{{Type: "Edited", Name: "RELEASE", Old: "v1", New: "v2"}}}}},
				{Type: "Added", Name: "sidecar"}}}}}
	images, other := diffChanges(d)
	if !slices.Equal(images, []ImageChange{{"web", "server", "a:1", "a:2"}}) {
		t.Errorf("images %+v", images)
	}
	want := []string{`web: Count: "1" → "2"`, `web/server: Config.ports[0]: "" → "http"`, `web/server: Env.RELEASE: "v1" → "v2"`, "web/sidecar: added"}
	if !slices.Equal(other, want) {
		t.Errorf("other %q", other)
	}
}

// The commands' client reaches a Nomad that requires mutual TLS, and says
// what to check when its CA or certificate is not the right one.
func TestClientOverMutualTLS(t *testing.T) {
	fake, _ := setup(t)
	pki := testpki.New(t, "cluster")
	front := pki.Front(t, fake.URL)
	client := func(files config.TLS) *Client {
		tlsConfig, err := files.Client()
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Config{Address: front, Token: "s3cr3t", TLS: tlsConfig})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	st, err := client(config.TLS{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}).Status(ctx(t))
	if err != nil || st.Nodes.Total != 1 {
		t.Fatalf("status over TLS: %+v %v", st, err)
	}
	other := testpki.New(t, "elsewhere")
	_, err = client(config.TLS{CAFile: other.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}).Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "Nomad at "+front+" is unreachable") || !strings.Contains(err.Error(), "check nomad.tls.ca_file") {
		t.Errorf("another CA: %v", err)
	}
	_, err = client(config.TLS{CAFile: pki.CAFile}).Status(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "check nomad.tls.cert_file and key_file") {
		t.Errorf("no client certificate: %v", err)
	}
}
