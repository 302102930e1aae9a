package fakenomad

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// registerOpts are the parts of a registration beyond the job.
type registerOpts struct {
	trigger        string // the evaluation's TriggeredBy
	enforce        bool
	modifyIndex    uint64
	preserveCounts bool
	// newVersion registers a new version even when the spec is unchanged,
	// as Job.Scale does by applying to raft directly.
	newVersion bool
}

// registerResponse is Nomad's JobRegisterResponse.
type registerResponse struct {
	EvalCreateIndex uint64
	EvalID          string
	Index           uint64
	JobModifyIndex  uint64
	KnownLeader     bool
	LastContact     int
	NextToken       string
	Warnings        string
}

// registerRequest serves PUT /v1/jobs and /v1/job/<id> as Nomad's agent
// (jobUpdate) and Job.Register do.
func (st *jobsState) registerRequest(s *Server, r *http.Request, body []byte, id string) (any, uint64, *apiError) {
	var req api.JobRegisterRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	switch {
	case req.Job == nil:
		return nil, 0, errorf(http.StatusBadRequest, "Job must be specified")
	case req.Job.ID == nil:
		return nil, 0, errorf(http.StatusBadRequest, "Job ID hasn't been provided")
	case id != "" && *req.Job.ID != id:
		return nil, 0, errorf(http.StatusBadRequest, "Job ID does not match name")
	}
	job := req.Job
	job.Canonicalize()
	job.Namespace = new(requestNamespace(r, req.Namespace, *job.Namespace))
	st.mu.Lock()
	defer st.mu.Unlock()
	resp, err := st.register(s, job, registerOpts{trigger: "job-register", enforce: req.EnforceIndex,
		modifyIndex: req.JobModifyIndex, preserveCounts: req.PreserveCounts})
	return resp, resp.Index, err
}

// requestNamespace is Nomad's namespaceForJob: the query parameter, then
// the request body, then the job's own.
func requestNamespace(r *http.Request, body, job string) string {
	switch {
	case r.URL.Query().Get("namespace") != "":
		return r.URL.Query().Get("namespace")
	case body != "":
		return body
	case job != "":
		return job
	}
	return api.DefaultNamespace
}

// register is Job.Register on a canonical job, st.mu held: the
// enforce-index check with Nomad's texts, a new version when the spec
// changed, and an evaluation the scheduler clock processes.
func (st *jobsState) register(s *Server, job *api.Job, o registerOpts) (registerResponse, *apiError) {
	key := jobKey{*job.Namespace, *job.ID}
	rec := st.jobs[key]
	var cur *api.Job
	if rec != nil {
		cur = rec.job
	}
	if o.enforce {
		switch {
		case cur != nil && o.modifyIndex == 0:
			return registerResponse{}, errorf(http.StatusInternalServerError, "Enforcing job modify index 0: job already exists")
		case cur != nil && o.modifyIndex != *cur.JobModifyIndex:
			return registerResponse{}, errorf(http.StatusInternalServerError,
				"Enforcing job modify index %d: job exists with conflicting job modify index: %d", o.modifyIndex, *cur.JobModifyIndex)
		case cur == nil && o.modifyIndex != 0:
			return registerResponse{}, errorf(http.StatusInternalServerError, "Enforcing job modify index %d: job does not exist", o.modifyIndex)
		}
	}
	if cur != nil && *cur.Type != *job.Type {
		return registerResponse{}, errorf(http.StatusInternalServerError, "cannot update job from type %q to %q", *cur.Type, *job.Type)
	}
	if cur != nil && o.preserveCounts {
		for _, g := range job.TaskGroups {
			if old := findGroup(cur, *g.Name); old != nil {
				g.Count = new(*old.Count)
			}
		}
	}
	now := time.Now().UnixNano()
	idx := st.nextIndex(s)
	resp := registerResponse{Index: idx, KnownLeader: true}
	var events []wireEvent
	if cur == nil || o.newVersion || specChanged(cur, job) {
		job.SubmitTime, job.Stable, job.StatusDescription = new(now), new(false), new("")
		job.ModifyIndex, job.JobModifyIndex = new(idx), new(idx)
		if cur == nil {
			job.CreateIndex, job.Version = new(idx), new(uint64(0))
			rec = &jobRecord{summaryIndex: idx}
			st.jobs[key] = rec
		} else {
			job.CreateIndex, job.Version = new(*cur.CreateIndex), new(*cur.Version+1)
		}
		rec.job = job
		rec.versions = append([]*api.Job{job}, rec.versions...)
		rec.versions = rec.versions[:min(len(rec.versions), maxVersions)]
		resp.JobModifyIndex = idx
	} else {
		resp.JobModifyIndex = *cur.JobModifyIndex
	}
	// Parameterized and periodic jobs only run through their children.
	if !parameterized(job) && job.Periodic == nil {
		e := &evaluation{ID: uuid(), Namespace: *job.Namespace, Priority: *job.Priority, Type: *job.Type,
			TriggeredBy: o.trigger, JobID: *job.ID, JobModifyIndex: resp.JobModifyIndex, Status: "pending",
			CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now, place: true}
		st.evals[e.ID] = e
		resp.EvalID, resp.EvalCreateIndex = e.ID, idx
		events = append(events, evalEvent("JobRegistered", e))
	}
	rec.job.Status = new(st.jobStatus(rec))
	if resp.JobModifyIndex == idx {
		events = append([]wireEvent{jobEvent("JobRegistered", rec.job)}, events...)
	}
	s.publish(idx, events)
	return resp, nil
}

// specChanged is Nomad's Job.SpecChanged: the jobs differ beyond the
// fields the server sets.
func specChanged(a, b *api.Job) bool { return string(specOf(a)) != string(specOf(b)) }

func specOf(j *api.Job) []byte {
	c := cloneJob(j)
	c.Canonicalize()
	c.Status, c.StatusDescription, c.Stable, c.Version = nil, nil, nil, nil
	c.CreateIndex, c.ModifyIndex, c.JobModifyIndex, c.SubmitTime = nil, nil, nil, nil
	c.NomadTokenID, c.VersionTag = nil, nil
	return mustEncode(c)
}

func findGroup(j *api.Job, name string) *api.TaskGroup {
	for _, g := range j.TaskGroups {
		if *g.Name == name {
			return g
		}
	}
	return nil
}

// planResponse is Nomad's JobPlanResponse.
type planResponse struct {
	Annotations        *api.PlanAnnotations
	CreatedEvals       []*api.Evaluation
	Diff               *api.JobDiff
	FailedTGAllocs     map[string]*api.AllocationMetric
	Index              uint64
	JobModifyIndex     uint64
	NextPeriodicLaunch time.Time
	Warnings           string
}

// plan serves PUT /v1/job/<id>/plan: the diff against the current version
// and what the scheduler would do, without changing anything.
func (st *jobsState) plan(r *http.Request, id string, body []byte) (any, uint64, *apiError) {
	var req api.JobPlanRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	switch {
	case req.Job == nil:
		return nil, 0, errorf(http.StatusBadRequest, "Job must be specified")
	case req.Job.ID == nil:
		return nil, 0, errorf(http.StatusBadRequest, "Job must have a valid ID")
	case *req.Job.ID != id:
		return nil, 0, errorf(http.StatusBadRequest, "Job ID does not match")
	}
	job := req.Job
	job.Canonicalize()
	job.Namespace = new(requestNamespace(r, req.Namespace, *job.Namespace))
	st.mu.Lock()
	defer st.mu.Unlock()
	var old *api.Job
	var idx uint64
	if rec, ok := st.jobs[jobKey{*job.Namespace, id}]; ok {
		old, idx = rec.job, *rec.job.JobModifyIndex
	}
	resp := planResponse{Annotations: &api.PlanAnnotations{DesiredTGUpdates: st.desiredUpdates(job)},
		CreatedEvals: []*api.Evaluation{}, Index: idx, JobModifyIndex: idx}
	if req.Diff {
		resp.Diff = jobDiff(old, job)
		annotate(resp.Diff, resp.Annotations, old, job)
	}
	return resp, idx, nil
}

// desiredUpdates is what the fake scheduler would do to each group of job:
// Nomad's DesiredTGUpdates, with a rolling update doing max_parallel
// destructive updates per evaluation and canaries first when the update
// block asks for them.
func (st *jobsState) desiredUpdates(job *api.Job) map[string]*api.DesiredUpdates {
	out := map[string]*api.DesiredUpdates{}
	rec := st.jobs[jobKey{*job.Namespace, *job.ID}]
	for _, g := range job.TaskGroups {
		p := st.classify(rec, job, *g.Name)
		u := &api.DesiredUpdates{Place: uint64(p.place), Stop: uint64(len(p.stop)),
			Ignore: uint64(len(p.ignore)), InPlaceUpdate: uint64(len(p.inplace))}
		switch n := uint64(len(p.replace)); {
		case n > 0 && canaries(g) > 0:
			u.Canary, u.Ignore = uint64(canaries(g)), u.Ignore+n
		case maxParallel(g) > 0:
			u.DestructiveUpdate = min(n, uint64(maxParallel(g)))
			u.Ignore += n - u.DestructiveUpdate
		default:
			u.DestructiveUpdate = n
		}
		out[*g.Name] = u
	}
	if rec != nil {
		for _, g := range rec.job.TaskGroups {
			if findGroup(job, *g.Name) == nil {
				out[*g.Name] = &api.DesiredUpdates{Stop: uint64(len(st.liveAllocs(*job.Namespace, *job.ID, *g.Name)))}
			}
		}
	}
	return out
}

// groupPlan is what a job version needs of a group's live allocations.
type groupPlan struct {
	ignore, inplace, replace, stop []*alloc
	place                          int
}

// classify compares each live allocation of a group with job through the
// version it runs, as Nomad's reconciler does: the same spec is left
// alone, a spec changed in place is updated, other changes replace it.
// Allocations beyond the count are stopped, replaceable ones first.
func (st *jobsState) classify(rec *jobRecord, job *api.Job, name string) groupPlan {
	var p groupPlan
	count := *findGroup(job, name).Count
	live := st.liveAllocs(*job.Namespace, *job.ID, name)
	for _, a := range live {
		var old *api.Job
		if rec != nil {
			old = rec.version(a.JobVersion)
		}
		switch {
		case old == nil || findGroup(old, name) == nil || groupDestructive(old, job, name):
			p.replace = append(p.replace, a)
		case specChanged(old, job):
			p.inplace = append(p.inplace, a)
		default:
			p.ignore = append(p.ignore, a)
		}
	}
	for _, list := range []*[]*alloc{&p.replace, &p.inplace, &p.ignore} {
		for len(live)-len(p.stop) > count && len(*list) > 0 {
			p.stop = append(p.stop, (*list)[len(*list)-1])
			*list = (*list)[:len(*list)-1]
		}
	}
	p.place = max(0, count-len(live))
	return p
}

// groupDestructive tells whether a group's allocations must be replaced
// rather than updated in place: Nomad's tasksUpdated, roughly. Meta at any
// level, the task set, a task's driver, config, env or resources, and the
// group's other settings are destructive; count, update, scaling,
// services, placement constraints and kill timeouts are not. So is a job
// that was stopped.
func groupDestructive(old, job *api.Job, name string) bool {
	a, b := findGroup(old, name), findGroup(job, name)
	if *old.Stop || a == nil || b == nil || !equalJSON(old.Meta, job.Meta) || len(a.Tasks) != len(b.Tasks) {
		return true
	}
	for i := range a.Tasks {
		if a.Tasks[i].Name != b.Tasks[i].Name || !equalJSON(taskSpec(a.Tasks[i]), taskSpec(b.Tasks[i])) {
			return true
		}
	}
	return !equalJSON(groupSpec(a), groupSpec(b))
}

func groupSpec(g *api.TaskGroup) *api.TaskGroup {
	var c api.TaskGroup
	cloneInto(g, &c)
	c.Count, c.Update, c.Scaling, c.Tasks, c.Services = nil, nil, nil, nil, nil
	c.Constraints, c.Affinities, c.Spreads = nil, nil, nil
	return &c
}

func taskSpec(t *api.Task) *api.Task {
	var c api.Task
	cloneInto(t, &c)
	c.KillTimeout, c.Services, c.Constraints, c.Affinities, c.LogConfig = nil, nil, nil, nil, nil
	return &c
}

func cloneInto(from, to any) { mustDecodeBytes(mustEncode(from), to) }

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func canaries(g *api.TaskGroup) int {
	if g.Update == nil || g.Update.Canary == nil {
		return 0
	}
	return *g.Update.Canary
}

func maxParallel(g *api.TaskGroup) int {
	if g.Update == nil || g.Update.MaxParallel == nil {
		return 0
	}
	return *g.Update.MaxParallel
}

func hasUpdateStrategy(j *api.Job) bool {
	for _, g := range j.TaskGroups {
		if maxParallel(g) > 0 {
			return true
		}
	}
	return false
}

// revert serves PUT /v1/job/<id>/revert as Job.Revert does: the old
// version is registered again, as a new version.
func (st *jobsState) revert(s *Server, r *http.Request, id string, body []byte) (any, uint64, *apiError) {
	var req api.JobRevertRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	switch {
	case req.JobID == "":
		return nil, 0, errorf(http.StatusBadRequest, "JobID must be specified")
	case req.JobID != id:
		return nil, 0, errorf(http.StatusBadRequest, "Job ID does not match")
	}
	ns := requestNamespace(r, req.Namespace, "")
	st.mu.Lock()
	defer st.mu.Unlock()
	rec, ok := st.jobs[jobKey{ns, id}]
	if !ok {
		return nil, 0, errorf(http.StatusInternalServerError, "job %q not found", id)
	}
	cur := rec.job
	if req.JobVersion == *cur.Version {
		return nil, 0, errorf(http.StatusInternalServerError, "can't revert to current version")
	}
	target := rec.version(req.JobVersion)
	if target == nil {
		return nil, 0, errorf(http.StatusInternalServerError, "job %q in namespace %q at version %d not found", id, ns, req.JobVersion)
	}
	if req.EnforcePriorVersion != nil && *cur.Version != *req.EnforcePriorVersion {
		return nil, 0, errorf(http.StatusInternalServerError, "Current job has version %d; enforcing version %d", *cur.Version, *req.EnforcePriorVersion)
	}
	resp, err := st.register(s, cloneJob(target), registerOpts{trigger: "job-register",
		enforce: req.EnforcePriorVersion != nil, modifyIndex: *cur.JobModifyIndex})
	return resp, resp.Index, err
}

func (rec *jobRecord) version(v uint64) *api.Job {
	for _, j := range rec.versions {
		if *j.Version == v {
			return j
		}
	}
	return nil
}

// scale serves PUT /v1/job/<id>/scale as Job.Scale does: the count is
// changed by registering a new version. Deviation: scaling events are not
// kept (GET /v1/job/<id>/scale is not implemented).
func (st *jobsState) scale(s *Server, r *http.Request, id string, body []byte) (any, uint64, *apiError) {
	var req api.ScalingRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	if t := req.Target["Job"]; t != "" && t != id {
		return nil, 0, errorf(http.StatusBadRequest, "job ID in payload did not match URL")
	}
	name := req.Target["Group"]
	switch {
	case name == "":
		return nil, 0, errorf(http.StatusBadRequest, "missing task group name for scaling action")
	case req.Count != nil && *req.Count < 0:
		return nil, 0, errorf(http.StatusBadRequest, "scaling action count can't be negative")
	case req.Count != nil && req.Error:
		return nil, 0, errorf(http.StatusBadRequest, "scaling action should not contain count if error is true")
	}
	ns := requestNamespace(r, req.Namespace, "")
	st.mu.Lock()
	defer st.mu.Unlock()
	rec, ok := st.jobs[jobKey{ns, id}]
	if !ok {
		return nil, 0, errorf(http.StatusNotFound, "job %q not found", id)
	}
	if *rec.job.Type == api.JobTypeSystem {
		return nil, 0, errorf(http.StatusBadRequest, `cannot scale jobs of type "system"`)
	}
	job := cloneJob(rec.job)
	g := findGroup(job, name)
	if g == nil {
		return nil, 0, errorf(http.StatusBadRequest, "task group %q specified for scaling does not exist in job", name)
	}
	if req.Count == nil {
		// Only a scaling event, which the fake does not keep.
		idx := st.nextIndex(s)
		return registerResponse{Index: idx, JobModifyIndex: *rec.job.ModifyIndex, KnownLeader: true}, idx, nil
	}
	if p := g.Scaling; p != nil && p.Min != nil && *req.Count < *p.Min {
		return nil, 0, errorf(http.StatusBadRequest, "group count was less than scaling policy minimum: %d < %d", *req.Count, *p.Min)
	}
	if p := g.Scaling; p != nil && p.Max != nil && *p.Max < *req.Count {
		return nil, 0, errorf(http.StatusBadRequest, "group count was greater than scaling policy maximum: %d > %d", *req.Count, *p.Max)
	}
	if ds := st.deploymentsOf(ns, id); len(ds) > 0 && ds[0].active() && ds[0].JobCreateIndex == *job.CreateIndex {
		return nil, 0, errorf(http.StatusBadRequest, "job scaling blocked due to active deployment")
	}
	g.Count = new(int(*req.Count))
	resp, err := st.register(s, job, registerOpts{trigger: "job-scaling", newVersion: true})
	return resp, resp.Index, err
}

// promote serves PUT /v1/deployment/promote/<id> as Deployment.Promote and
// the state store do, with their texts.
func (st *jobsState) promote(s *Server, id string, body []byte) (any, uint64, *apiError) {
	var req api.DeploymentPromoteRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	if req.DeploymentID != id {
		return nil, 0, errorf(http.StatusBadRequest, "Deployment ID does not match")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	d, ok := st.deploys[id]
	switch {
	case !ok:
		return nil, 0, errorf(http.StatusInternalServerError, "deployment not found")
	case !d.active():
		return nil, 0, errorf(http.StatusInternalServerError, "can't promote terminal deployment")
	}
	chosen := func(name string) bool { return req.All || slices.Contains(req.Groups, name) }
	var unhealthy []string
	have := false
	for _, name := range sortedKeys(d.TaskGroups) {
		if !chosen(name) {
			continue
		}
		for _, c := range d.TaskGroups[name].PlacedCanaries {
			if a := st.allocs[c]; a == nil || !healthy(a) {
				unhealthy = append(unhealthy, fmt.Sprintf("Canary allocation %q for group %q is not healthy", c, name))
				continue
			}
			have = true
		}
	}
	if len(unhealthy) > 0 {
		return nil, 0, errorf(http.StatusInternalServerError, "%s", multiError(unhealthy))
	}
	if !have {
		return nil, 0, errorf(http.StatusInternalServerError, "no canaries to promote")
	}
	now := time.Now().UnixNano()
	idx := st.nextIndex(s)
	for name, g := range d.TaskGroups {
		if chosen(name) {
			g.Promoted = true
		}
	}
	if !d.requiresPromotion() {
		d.StatusDescription = descRunning
	}
	d.ModifyIndex, d.ModifyTime = idx, now
	e := &evaluation{ID: uuid(), Namespace: d.Namespace, Priority: d.EvalPriority, Type: api.JobTypeService,
		TriggeredBy: "deployment-watcher", JobID: d.JobID, DeploymentID: d.ID, Status: "pending",
		CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now}
	st.evals[e.ID] = e
	s.publish(idx, []wireEvent{deploymentEvent("DeploymentPromotion", d), evalEvent("DeploymentPromotion", e)})
	return struct {
		DeploymentModifyIndex uint64
		EvalCreateIndex       uint64
		EvalID                string
		Index                 uint64
		RevertedJobVersion    *uint64
	}{idx, idx, e.ID, idx, nil}, idx, nil
}

// multiError formats errors as hashicorp/go-multierror does.
func multiError(errs []string) string {
	if len(errs) == 1 {
		return fmt.Sprintf("1 error occurred:\n\t* %s\n\n", errs[0])
	}
	return fmt.Sprintf("%d errors occurred:\n\t* %s\n\n", len(errs), strings.Join(errs, "\n\t* "))
}

// restart serves PUT /v1/client/allocation/<id>/restart: the tasks go
// through a restart, running again at the next scheduler step.
// Deviation: the texts for a terminal allocation or an unknown task are
// the fake's.
func (st *jobsState) restart(s *Server, id string, body []byte) (any, uint64, *apiError) {
	var req api.AllocationRestartRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	a, ok := st.allocs[id]
	switch {
	case !ok:
		return nil, 0, errorf(http.StatusNotFound, "Unknown allocation %q", id)
	case a.ClientStatus != "running":
		return nil, 0, errorf(http.StatusInternalServerError, "Task not running")
	case req.TaskName != "" && a.TaskStates[req.TaskName] == nil:
		return nil, 0, errorf(http.StatusInternalServerError, "Could not find task runner for task: %s", req.TaskName)
	}
	now := time.Now()
	idx := st.nextIndex(s)
	for name, ts := range a.TaskStates {
		if req.TaskName != "" && name != req.TaskName || !req.AllTasks && ts.State != "running" {
			continue
		}
		ts.State, ts.Restarts, ts.LastRestart = "pending", ts.Restarts+1, now.UTC()
		ts.Events = append(ts.Events, &api.TaskEvent{Type: "Restart Signaled", Time: now.UnixNano(),
			DisplayMessage: "User requested task to restart", RestartReason: "User requested task to restart"})
	}
	a.ModifyIndex, a.ModifyTime = idx, now.UnixNano()
	s.publish(idx, []wireEvent{allocEvent("AllocationUpdated", a)})
	return struct{}{}, idx, nil
}

// parsedJobs maps the captured jobspecs to the job version each became.
var parsedJobs = map[string]struct {
	job     string
	version uint64
}{"web.hcl": {"web", 0}, "web-v2.hcl": {"web", 1}, "crasher.hcl": {"crasher", 0}, "backup.hcl": {"backup", 0}}

// parseJob serves PUT /v1/jobs/parse. Deviation: the fake has no HCL
// parser; it knows the captured jobspecs (testdata/jobs), answering the
// job each became as Nomad parses it (without the fields the server sets
// on registration), canonicalized whatever Canonicalize says, and refuses
// any other text with a 400.
func parseJob(body []byte) (any, uint64, *apiError) {
	var req api.JobsParseRequest
	if err := decodeBody(body, &req); err != nil {
		return nil, 0, err
	}
	if req.JobHCL == "" {
		return nil, 0, errorf(http.StatusBadRequest, "Job spec is empty")
	}
	for file, p := range parsedJobs {
		if strings.TrimSpace(string(mustRead("jobs/"+file))) != strings.TrimSpace(req.JobHCL) {
			continue
		}
		var versions struct{ Versions []*api.Job }
		mustDecode("job-"+p.job+"-versions.json", &versions)
		for _, j := range versions.Versions {
			if *j.Version == p.version {
				return parsed(j), 0, nil
			}
		}
	}
	return nil, 0, errorf(http.StatusBadRequest, "Failed to parse job: input.hcl: fakenomad only parses the jobspecs of its testdata/jobs")
}

// parsed strips what the server adds on registration.
func parsed(j *api.Job) *api.Job {
	j.Status, j.StatusDescription, j.Stable, j.Version = new(""), new(""), new(false), new(uint64(0))
	j.CreateIndex, j.ModifyIndex, j.JobModifyIndex, j.SubmitTime = new(uint64(0)), new(uint64(0)), new(uint64(0)), nil
	for _, g := range j.TaskGroups {
		for _, t := range g.Tasks {
			t.Identity = nil
			var kept []*api.Constraint
			for _, c := range t.Constraints {
				if c.LTarget != "${attr.consul.version}" { // added by the server's implied constraints
					kept = append(kept, c)
				}
			}
			t.Constraints = kept
		}
	}
	return j
}
