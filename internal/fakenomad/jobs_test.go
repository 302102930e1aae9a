package fakenomad

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

// client is a Nomad API client for the fake.
func client(t *testing.T, s *Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: s.URL})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statusCode(err error) int {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.StatusCode()
	}
	return 0
}

func errorBody(err error) string {
	var ue api.UnexpectedResponseError
	if errors.As(err, &ue) {
		return ue.Body()
	}
	return ""
}

// sameJSON tells whether two JSON documents hold the same values.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return equalJSON(x, y)
}

func TestReadsServeTheCapture(t *testing.T) {
	s := New(t, Config{})
	// Served as captured, field for field.
	for path, file := range map[string]string{
		"/v1/job/web/summary":        "job-web-summary.json",
		"/v1/job/crasher/summary":    "job-crasher-summary.json",
		"/v1/job/backup/summary":     "job-backup-summary.json",
		"/v1/job/web/deployments":    "job-web-deployments.json",
		"/v1/job/web/deployment":     "job-web-deployment-latest.json",
		"/v1/job/backup/deployments": "job-backup-deployments.json",
		"/v1/deployments":            "deployments.json",
		"/v1/nodes":                  "nodes.json",
	} {
		resp, body := get(t, s, path, "")
		if resp.StatusCode != 200 || !sameJSON(t, []byte(body), mustRead("nomad-api/"+file)) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	// Served through the api types: the same values as far as they go.
	for path, file := range map[string]string{
		"/v1/job/web": "job-web.json",
		"/v1/job/backup%2Fdispatch-1795705868-d94dd8a4": "job-backup-dispatched-child.json",
		"/v1/job/crasher/allocations":                   "job-crasher-allocations.json",
		"/v1/jobs":                                      "jobs.json",
	} {
		resp, body := get(t, s, path, "")
		var got, want any
		switch {
		case strings.HasSuffix(path, "allocations"):
			got, want = &[]api.AllocationListStub{}, &[]api.AllocationListStub{}
		case path == "/v1/jobs":
			got, want = &[]api.JobListStub{}, &[]api.JobListStub{}
		default:
			got, want = &api.Job{}, &api.Job{}
		}
		mustDecodeBytes([]byte(body), got)
		mustDecodeBytes(mustRead("nomad-api/"+file), want)
		if resp.StatusCode != 200 || !equalJSON(got, want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	resp, _ := get(t, s, "/v1/job/web", "")
	if resp.Header.Get("X-Nomad-Index") != "53" {
		t.Errorf("job index %q", resp.Header.Get("X-Nomad-Index"))
	}
	for path, want := range map[string]string{
		"/v1/job/nope": "job not found", "/v1/job/nope/versions": "job versions not found",
		"/v1/job/nope/summary": "job not found", "/v1/deployment/nope": "deployment not found",
		"/v1/evaluation/nope": "eval not found",
	} {
		if resp, body := get(t, s, path, ""); resp.StatusCode != 404 || body != want {
			t.Errorf("%s: %d %q", path, resp.StatusCode, body)
		}
	}
	if _, body := get(t, s, "/v1/job/nope/deployment", ""); body != "null" {
		t.Errorf("latest deployment of an unknown job: %q", body)
	}
	if _, body := get(t, s, "/v1/job/nope/allocations", ""); body != "[]" {
		t.Errorf("allocations of an unknown job: %q", body)
	}
	c := client(t, s)
	stubs, _, err := c.Jobs().PrefixList("ba")
	if err != nil || len(stubs) != 2 || stubs[0].ID != "backup" || stubs[1].ParentID != "backup" {
		t.Errorf("prefix list: %v %+v", err, stubs)
	}
	versions, _, _, err := c.Jobs().Versions("web", false, nil)
	if err != nil || len(versions) != 2 || *versions[0].Version != 1 || !*versions[1].Stable {
		t.Errorf("versions: %v %d", err, len(versions))
	}
	if _, _, err := c.Evaluations().Info("f4670472-965c-b568-7189-ff8abf7f8111", nil); err != nil {
		t.Errorf("captured evaluation: %v", err)
	}
}

func TestRegisterEnforcesTheIndex(t *testing.T) {
	s := New(t, Config{})
	c := client(t, s)
	job, _, err := c.Jobs().Info("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same spec: no new version, the eval only.
	resp, _, err := c.Jobs().EnforceRegister(job, 26, nil)
	if err != nil || resp.JobModifyIndex != 26 || resp.EvalID == "" {
		t.Fatalf("unchanged: %v %+v", err, resp)
	}
	if j := s.Job("web"); *j.Version != 1 {
		t.Fatalf("unchanged spec made version %d", *j.Version)
	}
	job.Meta = map[string]string{"owner": "ops"}
	for _, c2 := range []struct {
		index uint64
		want  string
	}{
		{0, "Enforcing job modify index 0: job already exists"},
		{25, "Enforcing job modify index 25: job exists with conflicting job modify index: 26"},
	} {
		_, _, err := c.Jobs().EnforceRegister(job, c2.index, nil)
		if statusCode(err) != 500 || errorBody(err) != c2.want {
			t.Errorf("index %d: %v", c2.index, err)
		}
	}
	other := *job
	other.ID, other.Name = new("other"), new("other")
	if _, _, err := c.Jobs().EnforceRegister(&other, 5, nil); errorBody(err) != "Enforcing job modify index 5: job does not exist" {
		t.Errorf("new job: %v", err)
	}
	resp, _, err = c.Jobs().EnforceRegister(job, 26, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := s.Job("web")
	if *j.Version != 2 || *j.JobModifyIndex != resp.JobModifyIndex || resp.JobModifyIndex <= 65 || *j.Stable {
		t.Errorf("new version %d JobModifyIndex %d (response %d)", *j.Version, *j.JobModifyIndex, resp.JobModifyIndex)
	}
	idx := s.BumpJob("web")
	if j := s.Job("web"); *j.JobModifyIndex != idx || *j.Version != 3 {
		t.Errorf("bump: %d %d", *j.JobModifyIndex, *j.Version)
	}
	if _, _, err := c.Jobs().EnforceRegister(job, resp.JobModifyIndex, nil); statusCode(err) != 500 {
		t.Errorf("after bump: %v", err)
	}
	// Bad requests, as the agent answers them.
	for body, want := range map[string]string{
		`{`:                      "unexpected end of JSON input",
		`{}`:                     "Job must be specified",
		`{"Job":{"Name":"x"}}`:   "Job ID hasn't been provided",
		`{"Job":{"ID":"other"}}`: "Job ID does not match name",
	} {
		resp, got := put(t, s, "/v1/job/web", body)
		if resp.StatusCode != 400 || got != want {
			t.Errorf("%s: %d %q", body, resp.StatusCode, got)
		}
	}
}

func put(t *testing.T, s *Server, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// withImage returns job with every task running old running new.
func withImage(job *api.Job, old, new string) *api.Job {
	for _, g := range job.TaskGroups {
		for _, task := range g.Tasks {
			if task.Config["image"] == old {
				task.Config["image"] = new
			}
		}
	}
	return job
}

func latest(t *testing.T, c *api.Client, id string) *api.Deployment {
	t.Helper()
	d, _, err := c.Jobs().LatestDeployment(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeploymentProgresses(t *testing.T) {
	s := New(t, Config{})
	s.SetDeploymentStep(5 * time.Millisecond)
	s.AddJob(ShopJob())
	c := client(t, s)
	before := latest(t, c, "shop")
	if before.Status != "successful" || before.TaskGroups["frontend"].HealthyAllocs != 2 {
		t.Fatalf("added job's deployment: %+v", before)
	}
	job, _, err := c.Jobs().Info("shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := c.Jobs().EnforceRegister(withImage(job, ShopImage, "registry.example.org/shop/app:1.5.0"), *job.JobModifyIndex, nil)
	if err != nil {
		t.Fatal(err)
	}
	var eval *api.Evaluation
	eventually(t, "the evaluation", func() bool {
		eval, _, err = c.Evaluations().Info(resp.EvalID, nil)
		return err == nil && eval.Status == "complete"
	})
	var seen []string
	var d *api.Deployment
	eventually(t, "a successful deployment", func() bool {
		d, _, err = c.Deployments().Info(eval.DeploymentID, nil)
		if err != nil {
			t.Fatal(err)
		}
		fe := d.TaskGroups["frontend"]
		step := d.Status + " " + string(rune('0'+fe.PlacedAllocs)) + string(rune('0'+fe.HealthyAllocs))
		if len(seen) == 0 || seen[len(seen)-1] != step {
			seen = append(seen, step)
		}
		return d.Status == "successful"
	})
	if d.JobVersion != 1 || d.JobSpecModifyIndex != resp.JobModifyIndex || d.StatusDescription != "Deployment completed successfully" {
		t.Errorf("deployment %+v", d)
	}
	if len(seen) < 3 {
		t.Errorf("progress not seen: %q", seen)
	}
	if j := s.Job("shop"); !*j.Stable || *j.Version != 1 || *j.Status != "running" {
		t.Errorf("job after: stable %v version %d status %s", *j.Stable, *j.Version, *j.Status)
	}
	allocs, _, _ := c.Jobs().Allocations("shop", false, nil)
	running := map[string]int{}
	for _, a := range allocs {
		if a.ClientStatus == "running" {
			if a.JobVersion != 1 {
				t.Errorf("old alloc still running: %+v", a)
			}
			running[a.TaskGroup]++
		}
	}
	if running["frontend"] != 2 || running["worker"] != 1 || len(allocs) != 6 {
		t.Errorf("allocations: %v of %d", running, len(allocs))
	}
	sum, _, _ := c.Jobs().Summary("shop", nil)
	if sum.Summary["frontend"].Running != 2 || sum.Summary["frontend"].Complete != 2 {
		t.Errorf("summary %+v", sum.Summary)
	}
	// Every change went out on the event stream too.
	types := map[string]bool{}
	for _, it := range s.items {
		for _, e := range it.frame.Events {
			var ev struct{ Type string }
			json.Unmarshal(e.raw, &ev)
			if e.Key == "shop" || strings.Contains(string(e.raw), `"JobID":"shop"`) {
				types[e.Topic+"/"+ev.Type] = true
			}
		}
	}
	for _, want := range []string{"Job/JobRegistered", "Evaluation/JobRegistered", "Evaluation/EvaluationUpdated",
		"Deployment/PlanResult", "Deployment/DeploymentStatusUpdate", "Allocation/PlanResult", "Allocation/AllocationUpdated"} {
		if !types[want] {
			t.Errorf("no %s event; got %v", want, types)
		}
	}
}

func TestFailedImageAutoReverts(t *testing.T) {
	s := New(t, Config{})
	s.SetDeploymentStep(5 * time.Millisecond)
	s.AddJob(ShopJob())
	s.FailImage("registry.example.org/shop/app:bad")
	c := client(t, s)
	job, _, _ := c.Jobs().Info("shop", nil)
	resp, _, err := c.Jobs().EnforceRegister(withImage(job, ShopImage, "registry.example.org/shop/app:bad"), *job.JobModifyIndex, nil)
	if err != nil {
		t.Fatal(err)
	}
	var failed *api.Deployment
	eventually(t, "the failure", func() bool {
		ds, _, _ := c.Jobs().Deployments("shop", false, nil)
		for _, d := range ds {
			if d.JobSpecModifyIndex == resp.JobModifyIndex && d.Status == "failed" {
				failed = d
			}
		}
		return failed != nil
	})
	if failed.StatusDescription != "Failed due to unhealthy allocations - rolling back to job version 0" {
		t.Errorf("description %q", failed.StatusDescription)
	}
	eventually(t, "the revert deployed", func() bool {
		j := s.Job("shop")
		d := latest(t, c, "shop")
		return *j.Version == 2 && d.JobVersion == 2 && d.Status == "successful"
	})
	if img := s.Job("shop").TaskGroups[0].Tasks[0].Config["image"]; img != ShopImage {
		t.Errorf("reverted image %v", img)
	}
	// Without auto_revert the deployment just fails.
	s.FailImage("registry.example.org/checkout/api:bad")
	s.AddJob(CanaryJob())
	cj, _, _ := c.Jobs().Info("checkout", nil)
	cj.Update = nil
	cj.TaskGroups[0].Update.Canary = new(0)
	if _, _, err := c.Jobs().Register(withImage(cj, CheckoutImage, "registry.example.org/checkout/api:bad"), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failure", func() bool {
		d := latest(t, c, "checkout")
		return d.JobVersion == 1 && d.Status == "failed" && d.StatusDescription == "Failed due to unhealthy allocations"
	})
}

func TestPlanDiff(t *testing.T) {
	s := New(t, Config{})
	s.AddJob(ShopJob())
	c := client(t, s)
	job, _, _ := c.Jobs().Info("shop", nil)
	plan, _, err := c.Jobs().Plan(withImage(job, ShopImage, "registry.example.org/shop/app:1.5.0"), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plan.JobModifyIndex != *job.JobModifyIndex || plan.Diff.Type != "Edited" || plan.Diff.ID != "shop" {
		t.Fatalf("plan %+v diff %+v", plan, plan.Diff)
	}
	var frontend *api.TaskGroupDiff
	for _, g := range plan.Diff.TaskGroups {
		if g.Name == "frontend" {
			frontend = g
		}
	}
	if frontend == nil || frontend.Type != "Edited" || len(frontend.Tasks) != 2 {
		t.Fatalf("frontend diff %+v", frontend)
	}
	app, proxy := frontend.Tasks[0], frontend.Tasks[1]
	if app.Name != "app" || app.Type != "Edited" || proxy.Type != "None" || app.Annotations[0] != "forces create/destroy update" {
		t.Errorf("tasks %+v %+v", app, proxy)
	}
	var image *api.FieldDiff
	for _, o := range app.Objects {
		for _, f := range o.Fields {
			if o.Name == "Config" && f.Name == "image" {
				image = f
			}
			if o.Name == "Config" && f.Name == "ports[0]" && f.Type != "None" {
				t.Errorf("ports %+v", f)
			}
		}
	}
	if image == nil || image.Type != "Edited" || image.Old != ShopImage || image.New != "registry.example.org/shop/app:1.5.0" {
		t.Errorf("image diff %+v", image)
	}
	u := plan.Annotations.DesiredTGUpdates["frontend"]
	if u.DestructiveUpdate != 1 || u.Ignore != 1 || frontend.Updates["create/destroy update"] != 1 {
		t.Errorf("frontend updates %+v %v", u, frontend.Updates)
	}
	for _, f := range plan.Diff.Fields {
		if f.Type != "None" {
			t.Errorf("job field %+v", f)
		}
	}
	// Scaling only: in place, with the count annotated.
	job, _, _ = c.Jobs().Info("shop", nil)
	job.TaskGroups[0].Count = new(3)
	plan, _, _ = c.Jobs().Plan(job, true, nil)
	u = plan.Annotations.DesiredTGUpdates["frontend"]
	count := plan.Diff.TaskGroups[0].Fields[0]
	if u.Place != 1 || u.InPlaceUpdate != 2 || count.Name != "Count" || count.Annotations[0] != "forces create" {
		t.Errorf("scale plan %+v %+v", u, count)
	}
	// A new job is added whole.
	other := ShopJob()
	other.ID, other.Name = new("other"), new("other")
	plan, _, _ = c.Jobs().Plan(&other, true, nil)
	if plan.Diff.Type != "Added" || plan.JobModifyIndex != 0 || plan.Annotations.DesiredTGUpdates["frontend"].Place != 2 {
		t.Errorf("new job plan %+v", plan.Diff)
	}
}

func TestRevertScalePromote(t *testing.T) {
	s := New(t, Config{})
	s.SetDeploymentStep(20 * time.Millisecond)
	c := client(t, s)
	// Revert web to version 0: a new version 2 with RELEASE v1.
	if _, _, err := c.Jobs().Revert("web", 1, nil, nil, "", ""); errorBody(err) != "can't revert to current version" {
		t.Errorf("revert to current: %v", err)
	}
	if _, _, err := c.Jobs().Revert("web", 9, nil, nil, "", ""); errorBody(err) != `job "web" in namespace "default" at version 9 not found` {
		t.Errorf("revert to unknown: %v", err)
	}
	if _, _, err := c.Jobs().Revert("web", 0, new(uint64(0)), nil, "", ""); errorBody(err) != "Current job has version 1; enforcing version 0" {
		t.Errorf("revert enforcing: %v", err)
	}
	if _, _, err := c.Jobs().Revert("nope", 0, nil, nil, "", ""); statusCode(err) != 500 || errorBody(err) != `job "nope" not found` {
		t.Errorf("revert unknown job: %v", err)
	}
	if _, _, err := c.Jobs().Revert("web", 0, new(uint64(1)), nil, "", ""); err != nil {
		t.Fatal(err)
	}
	if j := s.Job("web"); *j.Version != 2 || j.TaskGroups[0].Tasks[0].Env["RELEASE"] != "v1" {
		t.Errorf("reverted: %d %v", *j.Version, j.TaskGroups[0].Tasks[0].Env)
	}
	// Scaling is blocked while that deployment runs, then makes a version.
	eventually(t, "the revert's deployment", func() bool {
		d := latest(t, c, "web")
		return d.JobVersion == 2 && d.Status == "running"
	})
	if _, _, err := c.Jobs().Scale("web", "web", new(2), "", false, nil, nil); statusCode(err) != 400 || errorBody(err) != "job scaling blocked due to active deployment" {
		t.Errorf("scale during deployment: %v", err)
	}
	eventually(t, "the revert deployed", func() bool { return latest(t, c, "web").Status == "successful" })
	for group, want := range map[string]string{
		"nope": `task group "nope" specified for scaling does not exist in job`, "": "missing task group name for scaling action"} {
		if _, _, err := c.Jobs().Scale("web", group, new(2), "", false, nil, nil); statusCode(err) != 400 || errorBody(err) != want {
			t.Errorf("scale %q: %v", group, err)
		}
	}
	if _, _, err := c.Jobs().Scale("web", "web", new(-1), "", false, nil, nil); errorBody(err) != "scaling action count can't be negative" {
		t.Errorf("negative: %v", err)
	}
	if _, _, err := c.Jobs().Scale("nope", "web", new(2), "", false, nil, nil); statusCode(err) != 404 {
		t.Errorf("scale unknown job: %v", err)
	}
	if _, _, err := c.Jobs().Scale("web", "web", new(2), "vigie", false, nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two web allocations", func() bool {
		sum, _, _ := c.Jobs().Summary("web", nil)
		return sum.Summary["web"].Running == 2 && latest(t, c, "web").Status == "successful"
	})
	if j := s.Job("web"); *j.Version != 3 || *j.TaskGroups[0].Count != 2 {
		t.Errorf("scaled: %d", *j.Version)
	}
	// Canaries wait for promotion.
	s.AddJob(CanaryJob())
	d := latest(t, c, "checkout")
	if _, _, err := c.Deployments().PromoteAll(d.ID, nil); errorBody(err) != "can't promote terminal deployment" {
		t.Errorf("promote terminal: %v", err)
	}
	job, _, _ := c.Jobs().Info("checkout", nil)
	if _, _, err := c.Jobs().Register(withImage(job, CheckoutImage, "registry.example.org/checkout/api:2.1.0"), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the canary", func() bool {
		d = latest(t, c, "checkout")
		return d.JobVersion == 1 && d.StatusDescription == "Deployment is running but requires manual promotion"
	})
	if g := d.TaskGroups["checkout"]; g.PlacedAllocs != 1 || g.HealthyAllocs != 1 || len(g.PlacedCanaries) != 1 || g.DesiredCanaries != 1 {
		t.Errorf("canary state %+v", g)
	}
	time.Sleep(30 * time.Millisecond) // it waits
	if d2 := latest(t, c, "checkout"); d2.TaskGroups["checkout"].PlacedAllocs != 1 {
		t.Errorf("progressed without promotion: %+v", d2.TaskGroups["checkout"])
	}
	if _, _, err := c.Deployments().PromoteAll(d.ID, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the promoted deployment", func() bool { return latest(t, c, "checkout").Status == "successful" })
	sum, _, _ := c.Jobs().Summary("checkout", nil)
	if sum.Summary["checkout"].Running != 3 || sum.Summary["checkout"].Complete != 3 {
		t.Errorf("after promotion %+v", sum.Summary)
	}
}

func TestRestart(t *testing.T) {
	s := New(t, Config{})
	// No scheduler step until the restarting state is seen: a short step
	// could run first on a slow machine.
	s.SetDeploymentStep(time.Hour)
	c := client(t, s)
	alloc := &api.Allocation{ID: WebAllocID}
	if err := c.Allocations().Restart(alloc, "", nil); err != nil {
		t.Fatal(err)
	}
	stub := func() *api.AllocationListStub {
		allocs, _, _ := c.Jobs().Allocations("web", false, nil)
		for _, a := range allocs {
			if a.ID == WebAllocID {
				return a
			}
		}
		return nil
	}
	if ts := stub().TaskStates["server"]; ts.Restarts != 1 || ts.State != "pending" {
		t.Errorf("restarting: %+v", ts)
	}
	s.SetDeploymentStep(5 * time.Millisecond)
	eventually(t, "the task running again", func() bool { return stub().TaskStates["server"].State == "running" })
	if err := c.Allocations().Restart(&api.Allocation{ID: "nope"}, "", nil); statusCode(err) != 404 || errorBody(err) != `Unknown allocation "nope"` {
		t.Errorf("unknown alloc: %v", err)
	}
	if err := c.Allocations().Restart(&api.Allocation{ID: CrasherAllocID}, "", nil); statusCode(err) != 500 {
		t.Errorf("failed alloc: %v", err)
	}
}

func TestParse(t *testing.T) {
	s := New(t, Config{})
	c := client(t, s)
	job, err := c.Jobs().ParseHCL(string(mustRead("jobs/web.hcl")), true)
	if err != nil {
		t.Fatal(err)
	}
	if *job.ID != "web" || *job.Version != 0 || job.TaskGroups[0].Tasks[0].Env["RELEASE"] != "v1" || len(job.TaskGroups[0].Tasks[0].Constraints) != 0 {
		t.Errorf("parsed %+v", job)
	}
	if _, err := c.Jobs().ParseHCL(`job "x" {}`, true); statusCode(err) != 400 || !strings.HasPrefix(errorBody(err), "Failed to parse job: ") {
		t.Errorf("unknown spec: %v", err)
	}
	if _, err := c.Jobs().ParseHCL("", true); errorBody(err) != "Job spec is empty" {
		t.Errorf("empty: %v", err)
	}
}

func TestBlockingQuery(t *testing.T) {
	s := New(t, Config{})
	c := client(t, s)
	_, qm, err := c.Jobs().Info("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, qm2, err := c.Jobs().Info("web", &api.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: 50 * time.Millisecond})
	if err != nil || qm2.LastIndex != qm.LastIndex || time.Since(start) < 50*time.Millisecond {
		t.Errorf("timed out query: %v %d after %v", err, qm2.LastIndex, time.Since(start))
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.BumpJob("web")
	}()
	job, qm3, err := c.Jobs().Info("web", &api.QueryOptions{WaitIndex: qm.LastIndex, WaitTime: 5 * time.Second})
	if err != nil || qm3.LastIndex <= qm.LastIndex || *job.Version != 2 {
		t.Errorf("woken query: %v %d", err, qm3.LastIndex)
	}
}

func TestNodes(t *testing.T) {
	s := New(t, Config{})
	s.AddNode("vm2", "down", "eligible", false)
	s.AddNode("vm3", "ready", "eligible", true)
	nodes, _, err := client(t, s).Nodes().List(nil)
	byName := map[string]*api.NodeListStub{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	if err != nil || len(nodes) != 3 || byName["vm2"].Status != "down" || byName["vm3"].SchedulingEligibility != "ineligible" ||
		!byName["vm3"].Drain || byName["vm"].Status != "ready" {
		t.Errorf("nodes: %v %+v", err, nodes)
	}
}
