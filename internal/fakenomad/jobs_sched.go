package fakenomad

import (
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Nomad's deployment status descriptions.
const (
	descRunning        = "Deployment is running"
	descNeedsPromotion = "Deployment is running but requires manual promotion"
	descSuccessful     = "Deployment completed successfully"
	descNewerJob       = "Cancelled due to newer version of job"
	descStoppedJob     = "Cancelled because job is stopped"
	descFailedAllocs   = "Failed due to unhealthy allocations"
)

// alloc is an allocation: its list stub, which is what the fake serves,
// and the deployment it belongs to, which the stub does not carry.
type alloc struct {
	api.AllocationListStub
	deploymentID string
}

// payload is the allocation as events carry it.
func (a *alloc) payload() any {
	return struct {
		api.AllocationListStub
		DeploymentID string
	}{a.AllocationListStub, a.deploymentID}
}

func live(a *alloc) bool {
	return a.DesiredStatus == "run" && (a.ClientStatus == "pending" || a.ClientStatus == "running")
}

func healthy(a *alloc) bool {
	return a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy
}

// runScheduler steps the fake scheduler until the server closes.
func (s *Server) runScheduler() {
	st := &s.jobs
	for {
		st.mu.Lock()
		step := st.step
		st.mu.Unlock()
		t := time.NewTimer(step)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-st.stepSet:
			t.Stop()
			continue
		case <-t.C:
		}
		st.mu.Lock()
		reverts := st.advance(s)
		for _, j := range reverts {
			// Errors cannot happen: no index is enforced.
			st.register(s, j, registerOpts{trigger: "deployment-watcher"})
		}
		st.mu.Unlock()
	}
}

// tick collects the changes of one scheduler step, published as one frame
// at one index, allocated on the first change.
type tick struct {
	st      *jobsState
	s       *Server
	idx     uint64
	now     time.Time
	events  []wireEvent
	touched map[jobKey]bool // jobs whose allocations changed
}

func (t *tick) index() uint64 {
	if t.idx == 0 {
		t.idx = t.st.nextIndex(t.s)
	}
	return t.idx
}

func (t *tick) allocChanged(typ string, a *alloc) {
	a.ModifyIndex, a.ModifyTime = t.index(), t.now.UnixNano()
	t.events = append(t.events, allocEvent(typ, a))
	t.touched[jobKey{a.Namespace, a.JobID}] = true
}

func (t *tick) deploymentChanged(typ string, d *deployment) {
	d.ModifyIndex, d.ModifyTime = t.index(), t.now.UnixNano()
	t.events = append(t.events, deploymentEvent(typ, d))
}

// advance runs one scheduler step, st.mu held: restarted tasks run again,
// running deployments take a step, then pending evaluations complete
// (creating deployments, which step from the next tick on). It returns
// the job versions to roll back to, to register once the step is
// published.
func (st *jobsState) advance(s *Server) []*api.Job {
	t := &tick{st: st, s: s, now: time.Now(), touched: map[jobKey]bool{}}
	for _, a := range st.sortedAllocs() {
		restarted := false
		for _, ts := range a.TaskStates {
			if ts.State == "pending" && a.ClientStatus == "running" {
				ts.State, ts.StartedAt = "running", t.now.UTC()
				ts.Events = append(ts.Events, &api.TaskEvent{Type: "Restarting", Time: t.now.UnixNano(), DisplayMessage: "Task restarting in 0s"},
					&api.TaskEvent{Type: "Started", Time: t.now.UnixNano(), DisplayMessage: "Task started by client"})
				restarted = true
			}
		}
		if restarted {
			t.allocChanged("AllocationUpdated", a)
		}
	}
	var reverts []*api.Job
	for _, d := range st.sortedDeployments() {
		if d.active() {
			if j := st.stepDeployment(t, d); j != nil {
				reverts = append(reverts, j)
			}
		}
	}
	for _, e := range st.sortedEvals() {
		if e.Status == "pending" {
			st.processEval(t, e)
		}
	}
	for key := range t.touched {
		rec := st.jobs[key]
		if rec == nil {
			continue
		}
		rec.summaryIndex = t.index()
		if status := st.jobStatus(rec); status != *rec.job.Status {
			rec.job.Status, rec.job.ModifyIndex = new(status), new(t.index())
			t.events = append(t.events, jobEvent("AllocationUpdated", rec.job))
		}
	}
	if t.idx != 0 {
		s.publish(t.idx, t.events)
	}
	return reverts
}

func (st *jobsState) sortedAllocs() []*alloc {
	out := make([]*alloc, 0, len(st.allocs))
	for _, a := range st.allocs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].CreateIndex < out[j].CreateIndex || out[i].CreateIndex == out[j].CreateIndex && out[i].Name < out[j].Name
	})
	return out
}

func (st *jobsState) sortedDeployments() []*deployment {
	out := make([]*deployment, 0, len(st.deploys))
	for _, d := range st.deploys {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex < out[j].CreateIndex })
	return out
}

func (st *jobsState) sortedEvals() []*evaluation {
	out := make([]*evaluation, 0, len(st.evals))
	for _, e := range st.evals {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreateIndex < out[j].CreateIndex })
	return out
}

// liveAllocs are a group's allocations that run or are about to, oldest
// first.
func (st *jobsState) liveAllocs(ns, job, group string) []*alloc {
	var out []*alloc
	for _, a := range st.sortedAllocs() {
		if a.Namespace == ns && a.JobID == job && a.TaskGroup == group && live(a) {
			out = append(out, a)
		}
	}
	return out
}

// processEval completes an evaluation; one from a registration schedules
// the job version it was made for, unless a newer one superseded it.
func (st *jobsState) processEval(t *tick, e *evaluation) {
	e.Status, e.ModifyIndex, e.ModifyTime = "complete", t.index(), t.now.UnixNano()
	rec := st.jobs[jobKey{e.Namespace, e.JobID}]
	switch {
	case !e.place, rec == nil, *rec.job.JobModifyIndex != e.JobModifyIndex:
	case *rec.job.Stop:
		st.cancelDeployments(t, rec.job, descStoppedJob)
		for _, g := range rec.job.TaskGroups {
			for _, a := range st.liveAllocs(e.Namespace, e.JobID, *g.Name) {
				st.stopAlloc(t, a, "alloc not needed due to job update")
			}
		}
	case *rec.job.Type == api.JobTypeService:
		st.schedule(t, rec, e)
	}
	t.events = append(t.events, evalEvent("EvaluationUpdated", e))
}

// schedule places the current version of a service job: allocations of
// an older version are updated in place or replaced, by a deployment
// step by step when the group has an update block, at once otherwise. A
// version whose deployment failed is left alone, as Nomad does.
func (st *jobsState) schedule(t *tick, rec *jobRecord, e *evaluation) {
	job := rec.job
	for _, d := range st.deploymentsOf(*job.Namespace, *job.ID) {
		if d.active() && d.JobVersion != *job.Version {
			d.Status, d.StatusDescription = "cancelled", descNewerJob
			t.deploymentChanged("DeploymentStatusUpdate", d)
		}
		if d.JobVersion == *job.Version && d.Status == "failed" {
			return
		}
	}
	plans := map[string]groupPlan{}
	work := false
	for _, g := range job.TaskGroups {
		p := st.classify(rec, job, *g.Name)
		plans[*g.Name] = p
		work = work || len(p.replace)+len(p.inplace)+len(p.stop)+p.place > 0
	}
	if !work {
		return
	}
	var d *deployment
	if hasUpdateStrategy(job) {
		d = st.newDeployment(job, t.index(), t.now.UnixNano())
		d.EvalPriority, d.evalID = e.Priority, e.ID
	}
	for _, g := range job.TaskGroups {
		name, p := *g.Name, plans[*g.Name]
		ds := d.state(name)
		for _, a := range p.stop {
			st.stopAlloc(t, a, "alloc not needed due to job update")
		}
		for _, a := range append(p.ignore, p.inplace...) {
			a.JobVersion = *job.Version
			if ds != nil {
				a.deploymentID = d.ID
				a.DeploymentStatus = &api.AllocDeploymentStatus{Healthy: new(true), Timestamp: t.now.UTC(), ModifyIndex: t.index()}
				ds.PlacedAllocs++
				ds.HealthyAllocs++
			}
			t.allocChanged("PlanResult", a)
		}
		if ds != nil {
			if len(p.replace) == 0 {
				ds.DesiredCanaries = 0 // canaries only stand in for replaced allocations
			}
			continue // the deployment places the rest, step by step
		}
		for _, a := range p.replace {
			st.stopAlloc(t, a, "alloc is being updated due to job update")
		}
		for range len(p.replace) + p.place {
			a := st.newAlloc(job, name, st.freeSlot(job, name), t.index(), e.ID, t.now.UnixNano())
			a.DeploymentStatus = &api.AllocDeploymentStatus{Healthy: new(true), Timestamp: t.now.UTC(), ModifyIndex: t.index()}
			t.allocChanged("PlanResult", a)
		}
	}
	if d == nil || len(d.TaskGroups) == 0 {
		return
	}
	d.ModifyIndex = t.index()
	st.deploys[d.ID] = d
	e.DeploymentID = d.ID
	t.events = append(t.events, deploymentEvent("PlanResult", d))
}

func (st *jobsState) cancelDeployments(t *tick, job *api.Job, desc string) {
	for _, d := range st.deploymentsOf(*job.Namespace, *job.ID) {
		if d.active() {
			d.Status, d.StatusDescription = "cancelled", desc
			t.deploymentChanged("DeploymentStatusUpdate", d)
		}
	}
}

// newDeployment is Nomad's NewDeployment, with a state for each group
// that has an update block and a count.
func (st *jobsState) newDeployment(job *api.Job, idx uint64, now int64) *deployment {
	d := &deployment{CreateIndex: idx, ModifyIndex: idx, CreateTime: now, EvalPriority: *job.Priority, ID: uuid(),
		JobCreateIndex: *job.CreateIndex, JobID: *job.ID, JobModifyIndex: *job.ModifyIndex,
		JobSpecModifyIndex: *job.JobModifyIndex, JobVersion: *job.Version, Namespace: *job.Namespace,
		Status: "running", StatusDescription: descRunning, TaskGroups: map[string]*deploymentState{}}
	for _, g := range job.TaskGroups {
		if maxParallel(g) == 0 || *g.Count == 0 {
			continue
		}
		u := g.Update
		ds := &deploymentState{DesiredTotal: *g.Count, DesiredCanaries: canaries(g)}
		if u.AutoRevert != nil {
			ds.AutoRevert = *u.AutoRevert
		}
		if u.AutoPromote != nil {
			ds.AutoPromote = *u.AutoPromote
		}
		if u.ProgressDeadline != nil {
			ds.ProgressDeadline = *u.ProgressDeadline
		}
		ds.RequireProgressBy = time.Unix(0, now).Add(ds.ProgressDeadline).UTC()
		d.TaskGroups[*g.Name] = ds
	}
	return d
}

func (d *deployment) state(group string) *deploymentState {
	if d == nil {
		return nil
	}
	return d.TaskGroups[group]
}

// newAlloc places a running allocation of a job's group on the captured
// node.
func (st *jobsState) newAlloc(job *api.Job, group string, slot int, idx uint64, evalID string, now int64) *alloc {
	a := &alloc{AllocationListStub: api.AllocationListStub{ID: uuid(), EvalID: evalID,
		Name: fmt.Sprintf("%s.%s[%d]", *job.ID, group, slot), Namespace: *job.Namespace,
		NodeID: st.nodes[0]["ID"].(string), NodeName: st.nodes[0]["Name"].(string), JobID: *job.ID,
		JobType: *job.Type, JobVersion: *job.Version, TaskGroup: group, DesiredStatus: "run",
		ClientStatus: "running", ClientDescription: "Tasks are running", TaskStates: map[string]*api.TaskState{},
		CreateIndex: idx, ModifyIndex: idx, CreateTime: now, ModifyTime: now}}
	for _, task := range findGroup(job, group).Tasks {
		a.TaskStates[task.Name] = &api.TaskState{State: "running", StartedAt: time.Unix(0, now).UTC(), Events: []*api.TaskEvent{
			{Type: "Received", Time: now, DisplayMessage: "Task received by client"},
			{Type: "Started", Time: now, DisplayMessage: "Task started by client"}}}
	}
	st.allocs[a.ID] = a
	return a
}

// freeSlot is the lowest allocation index of a group no live allocation
// uses.
func (st *jobsState) freeSlot(job *api.Job, group string) int {
	used := map[string]bool{}
	for _, a := range st.liveAllocs(*job.Namespace, *job.ID, group) {
		used[a.Name] = true
	}
	for i := 0; ; i++ {
		if !used[fmt.Sprintf("%s.%s[%d]", *job.ID, group, i)] {
			return i
		}
	}
}

func (st *jobsState) stopAlloc(t *tick, a *alloc, why string) {
	a.DesiredStatus, a.DesiredDescription = "stop", why
	a.ClientStatus, a.ClientDescription = "complete", "All tasks have completed"
	for _, ts := range a.TaskStates {
		ts.State, ts.FinishedAt = "dead", t.now.UTC()
		ts.Events = append(ts.Events, &api.TaskEvent{Type: "Killed", Time: t.now.UnixNano(), DisplayMessage: "Task successfully killed"})
	}
	t.allocChanged("AllocationUpdated", a)
}

// stepDeployment takes one step in each group of a running deployment:
// the health verdict of a placed allocation, or the next placement
// (replacing the oldest allocation of an older version unless it is a
// canary). It returns the job version to roll back to when the
// deployment fails with auto_revert.
func (st *jobsState) stepDeployment(t *tick, d *deployment) *api.Job {
	rec := st.jobs[jobKey{d.Namespace, d.JobID}]
	if rec == nil {
		return nil
	}
	job := rec.version(d.JobVersion)
	if job == nil {
		return nil
	}
	changed, failed, done, waiting := false, false, true, false
	for _, name := range sortedKeys(d.TaskGroups) {
		ds := d.TaskGroups[name]
		canaryPhase := ds.DesiredCanaries > 0 && !ds.Promoted
		target := ds.DesiredTotal
		if canaryPhase {
			target = ds.DesiredCanaries
		}
		switch a := st.unjudged(d, name); {
		case a != nil:
			changed = true
			if st.failImage != "" && usesImage(findGroup(job, name), st.failImage) {
				failed = true
				ds.UnhealthyAllocs++
				a.DeploymentStatus.Healthy = new(false)
				a.ClientStatus, a.ClientDescription = "failed", "Failed tasks"
				for _, ts := range a.TaskStates {
					ts.State, ts.Failed, ts.FinishedAt = "dead", true, t.now.UTC()
					ts.Events = append(ts.Events, &api.TaskEvent{Type: "Terminated", Time: t.now.UnixNano(),
						DisplayMessage: "Exit Code: 1", ExitCode: 1})
				}
			} else {
				ds.HealthyAllocs++
				a.DeploymentStatus.Healthy = new(true)
			}
			a.DeploymentStatus.Timestamp, a.DeploymentStatus.ModifyIndex = t.now.UTC(), t.index()
			t.allocChanged("AllocationUpdated", a)
		case ds.PlacedAllocs < target:
			changed = true
			st.place(t, job, d, name, canaryPhase)
		}
		if ds.HealthyAllocs < target {
			done = false
		}
		waiting = waiting || canaryPhase
	}
	var revert *api.Job
	switch {
	case failed:
		revert = st.fail(d, rec)
		changed = true
	case done && waiting && d.autoPromotes():
		for _, ds := range d.TaskGroups {
			ds.Promoted = true
		}
		changed = true
	case done && waiting:
		changed = changed || d.StatusDescription != descNeedsPromotion
		d.StatusDescription = descNeedsPromotion
	case done:
		d.Status, d.StatusDescription = "successful", descSuccessful
		for name := range d.TaskGroups {
			for _, a := range st.liveAllocs(d.Namespace, d.JobID, name) {
				if a.deploymentID != d.ID {
					st.stopAlloc(t, a, "alloc is being updated due to job update")
				}
			}
		}
		job.Stable = new(true)
		if rec.job == job {
			job.ModifyIndex = new(t.index())
			t.events = append(t.events, jobEvent("PlanResult", job))
		}
		changed = true
	}
	if changed {
		typ := "AllocationUpdated"
		if d.Status != "running" {
			typ = "DeploymentStatusUpdate"
		}
		t.deploymentChanged(typ, d)
	}
	return revert
}

// autoPromotes is Nomad's HasAutoPromote.
func (d *deployment) autoPromotes() bool {
	for _, ds := range d.TaskGroups {
		if ds.DesiredCanaries > 0 && !ds.AutoPromote {
			return false
		}
	}
	return true
}

// unjudged is a placed allocation of the deployment still without a
// health verdict.
func (st *jobsState) unjudged(d *deployment, group string) *alloc {
	for _, a := range st.sortedAllocs() {
		if a.deploymentID == d.ID && a.TaskGroup == group && a.DeploymentStatus != nil && a.DeploymentStatus.Healthy == nil {
			return a
		}
	}
	return nil
}

func (st *jobsState) place(t *tick, job *api.Job, d *deployment, name string, canary bool) {
	ds := d.TaskGroups[name]
	slot := -1
	if !canary {
		for _, old := range st.liveAllocs(d.Namespace, d.JobID, name) {
			if old.deploymentID != d.ID {
				fmt.Sscanf(old.Name[len(*job.ID)+len(name)+2:], "%d", &slot)
				st.stopAlloc(t, old, "alloc is being updated due to job update")
				break
			}
		}
	}
	if slot < 0 {
		slot = st.freeSlot(job, name)
	}
	a := st.newAlloc(job, name, slot, t.index(), d.evalID, t.now.UnixNano())
	a.deploymentID = d.ID
	a.DeploymentStatus = &api.AllocDeploymentStatus{Canary: canary}
	ds.PlacedAllocs++
	if canary {
		ds.PlacedCanaries = append(ds.PlacedCanaries, a.ID)
	}
	t.allocChanged("PlanResult", a)
}

// fail fails a deployment as Nomad's deployment watcher does on an
// unhealthy allocation, picking the newest stable version to roll back to
// when a group asks for auto_revert.
func (st *jobsState) fail(d *deployment, rec *jobRecord) *api.Job {
	d.Status, d.StatusDescription = "failed", descFailedAllocs
	revert := false
	for _, ds := range d.TaskGroups {
		revert = revert || ds.AutoRevert
	}
	if !revert {
		return nil
	}
	var stable *api.Job
	for _, j := range rec.versions {
		if *j.Stable {
			stable = j
			break
		}
	}
	switch {
	case stable == nil:
		d.StatusDescription += " - no stable job version to auto revert to"
	case specChanged(rec.job, stable):
		d.StatusDescription += fmt.Sprintf(" - rolling back to job version %d", *stable.Version)
		return cloneJob(stable)
	default:
		d.StatusDescription += fmt.Sprintf(" - not rolling back to stable job version %d as current job has same specification", *stable.Version)
	}
	return nil
}

func usesImage(g *api.TaskGroup, image string) bool {
	for _, t := range g.Tasks {
		if t.Config["image"] == image {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
