package fakenomad

// The stateful part of the fake: jobs with their versions, evaluations,
// deployments and allocations, behind the endpoints the operations layer
// uses. It starts from the captured web, crasher, backup and dispatched
// child jobs (testdata/nomad-api/job-*.json) and then changes as clients
// write: registrations bump versions and indexes, evaluations complete and
// deployments progress on a clock (SetDeploymentStep), and every change is
// published on the event stream as Nomad publishes it.
//
// Deviations, beyond those noted where they are implemented:
//   - State is kept in the api package's types (api.Job, AllocationListStub,
//     JobSummary), so server fields those types lack are not served (e.g. an
//     alloc stub's DesiredTransition) and zero times read 0001-01-01.
//   - The scheduler is a clock, not a bin packer: service jobs with an
//     update block get a deployment that places or judges one allocation
//     per group per step (max_parallel 1 whatever the job says); service
//     jobs without one are placed at once; batch and system jobs are
//     registered but never placed. Nodes play no part.
//   - Evaluations created by writes are served by GET /v1/evaluation/<id>
//     but /v1/evaluations keeps serving the capture; GET /v1/allocation/<id>
//     serves only the captured allocations, unchanged by writes.

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/nomad/api"
)

// maxVersions is Nomad's JobTrackedVersions: older versions are pruned.
const maxVersions = 6

// defaultStep is the time between two steps of the fake scheduler.
const defaultStep = time.Second

// jobsState is the cluster state behind the job, deployment, allocation,
// evaluation and node endpoints. Lock order: mu, then Server.mu.
type jobsState struct {
	once sync.Once
	mu   sync.Mutex

	jobs     map[jobKey]*jobRecord
	deploys  map[string]*deployment
	allocs   map[string]*alloc
	evals    map[string]*evaluation
	captured map[string]json.RawMessage // captured evaluations, by ID
	nodes    []map[string]any

	step      time.Duration
	stepSet   chan struct{}
	failImage string
	index     uint64 // the highest index seeded or written
	bumps     int
}

type jobKey struct{ ns, id string }

type jobRecord struct {
	job          *api.Job
	versions     []*api.Job // newest first
	summaryIndex uint64
}

// deployment is a deployment as Nomad serves it; the api type lacks
// EvalPriority and AutoPromote.
type deployment struct {
	CreateIndex        uint64
	CreateTime         int64
	EvalPriority       int
	ID                 string
	IsMultiregion      bool
	JobCreateIndex     uint64
	JobID              string
	JobModifyIndex     uint64
	JobSpecModifyIndex uint64
	JobVersion         uint64
	ModifyIndex        uint64
	ModifyTime         int64
	Namespace          string
	Status             string
	StatusDescription  string
	TaskGroups         map[string]*deploymentState

	evalID string // the evaluation that created it, which its allocations carry
}

type deploymentState struct {
	AutoPromote       bool
	AutoRevert        bool
	DesiredCanaries   int
	DesiredTotal      int
	HealthyAllocs     int
	PlacedAllocs      int
	PlacedCanaries    []string
	ProgressDeadline  time.Duration
	Promoted          bool
	RequireProgressBy time.Time
	UnhealthyAllocs   int
}

func (d *deployment) active() bool { return d.Status == "running" }

// requiresPromotion is Nomad's Deployment.RequiresPromotion.
func (d *deployment) requiresPromotion() bool {
	if d.Status != "running" {
		return false
	}
	for _, g := range d.TaskGroups {
		if g.DesiredCanaries > 0 && !g.Promoted {
			return true
		}
	}
	return false
}

// evaluation is an evaluation as Nomad serves it, with what the fake
// scheduler needs to process it.
type evaluation struct {
	CreateIndex    uint64
	CreateTime     int64
	DeploymentID   string `json:",omitempty"`
	ID             string
	JobID          string
	JobModifyIndex uint64
	ModifyIndex    uint64
	ModifyTime     int64
	Namespace      string
	Priority       int
	Status         string
	TriggeredBy    string
	Type           string

	place bool // made by a registration: the scheduler places the job
}

// state returns the fake's cluster state, seeding it and starting the
// scheduler clock on first use.
func (s *Server) state() *jobsState {
	st := &s.jobs
	st.once.Do(func() {
		st.seed()
		go s.runScheduler()
	})
	return st
}

func (st *jobsState) seed() {
	st.jobs = map[jobKey]*jobRecord{}
	st.deploys = map[string]*deployment{}
	st.allocs = map[string]*alloc{}
	st.evals = map[string]*evaluation{}
	st.captured = map[string]json.RawMessage{}
	st.step = defaultStep
	st.stepSet = make(chan struct{}, 1)

	for _, name := range []string{"web", "crasher", "backup", "backup-dispatched-child"} {
		var job api.Job
		var versions struct{ Versions []*api.Job }
		mustDecode("job-"+name+".json", &job)
		rec := &jobRecord{job: &job, versions: []*api.Job{&job}}
		if name != "backup-dispatched-child" { // no versions captured
			mustDecode("job-"+name+"-versions.json", &versions)
			// The current version is the job itself, as in Nomad's state.
			rec.versions = append([]*api.Job{&job}, versions.Versions[1:]...)
		}
		st.jobs[jobKey{*job.Namespace, *job.ID}] = rec
		st.index = max(st.index, *job.ModifyIndex)
		var allocs []*api.AllocationListStub
		mustDecode("job-"+name+"-allocations.json", &allocs)
		for _, a := range allocs {
			st.allocs[a.ID] = &alloc{AllocationListStub: *a}
			st.index = max(st.index, a.ModifyIndex)
		}
	}
	var stubs []struct {
		ID, Namespace string
		JobSummary    api.JobSummary
	}
	mustDecode("jobs.json", &stubs)
	for _, stub := range stubs {
		st.jobs[jobKey{stub.Namespace, stub.ID}].summaryIndex = stub.JobSummary.ModifyIndex
		st.index = max(st.index, stub.JobSummary.ModifyIndex)
	}
	var deploys []*deployment
	mustDecode("deployments.json", &deploys)
	for _, d := range deploys {
		st.deploys[d.ID] = d
		st.index = max(st.index, d.ModifyIndex)
	}
	var evals []json.RawMessage
	mustDecode("evaluations.json", &evals)
	for _, raw := range evals {
		var e struct{ ID string }
		mustDecodeBytes(raw, &e)
		st.captured[e.ID] = raw
	}
	mustDecode("nodes.json", &st.nodes)
}

func mustDecode(name string, v any) {
	mustDecodeBytes(mustRead("nomad-api/"+name), v)
}

func mustDecodeBytes(b []byte, v any) {
	if err := json.Unmarshal(b, v); err != nil {
		panic("fakenomad: " + err.Error())
	}
}

// SetDeploymentStep sets the time between two steps of the fake scheduler
// (default 1s). A step completes pending evaluations and, in each group of
// each running deployment, places one allocation or gives one placed
// allocation its health verdict.
func (s *Server) SetDeploymentStep(d time.Duration) {
	st := s.state()
	st.mu.Lock()
	st.step = d
	st.mu.Unlock()
	select {
	case st.stepSet <- struct{}{}:
	default:
	}
}

// FailImage makes allocations of any task running image unhealthy, which
// fails their deployment (and reverts the job when its update block says
// auto_revert). Empty: every image is healthy.
func (s *Server) FailImage(image string) {
	st := s.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failImage = image
}

// Job returns a copy of the current version of a job of the default
// namespace; its ID is nil when there is no such job.
func (s *Server) Job(id string) api.Job {
	st := s.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	rec, ok := st.jobs[jobKey{api.DefaultNamespace, id}]
	if !ok {
		return api.Job{}
	}
	return *cloneJob(rec.job)
}

// BumpJob registers a change to a job of the default namespace (a meta
// key), as someone else deploying meanwhile would: the job gets a new
// version and JobModifyIndex, and a deployment when it has an update block.
// It returns the new JobModifyIndex and panics on an unknown job.
func (s *Server) BumpJob(id string) uint64 {
	st := s.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	rec, ok := st.jobs[jobKey{api.DefaultNamespace, id}]
	if !ok {
		panic("fakenomad: BumpJob: no job " + id)
	}
	job := cloneJob(rec.job)
	st.bumps++
	job.SetMeta("fakenomad-bump", strconv.Itoa(st.bumps))
	reg, err := st.register(s, job, registerOpts{trigger: "job-register"})
	if err != nil {
		panic("fakenomad: BumpJob: " + err.msg)
	}
	return reg.JobModifyIndex
}

// AddJob adds a job as if it had been registered and fully deployed:
// version 0, stable, running with its count of healthy allocations and a
// successful deployment when it has an update block. Use it for jobs the
// capture lacks, such as ShopJob and CanaryJob.
func (s *Server) AddJob(job api.Job) {
	st := s.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	j := cloneJob(&job)
	j.Canonicalize()
	idx := st.nextIndex(s)
	now := time.Now().UnixNano()
	j.Version, j.Stable, j.SubmitTime = new(uint64(0)), new(true), new(now)
	j.CreateIndex, j.ModifyIndex, j.JobModifyIndex = new(idx), new(idx), new(idx)
	rec := &jobRecord{job: j, versions: []*api.Job{j}, summaryIndex: idx}
	st.jobs[jobKey{*j.Namespace, *j.ID}] = rec
	var events []wireEvent
	var d *deployment
	if *j.Type == api.JobTypeService && hasUpdateStrategy(j) {
		d = st.newDeployment(j, idx, now)
		d.Status, d.StatusDescription = "successful", descSuccessful
		st.deploys[d.ID] = d
	}
	for _, g := range j.TaskGroups {
		for i := range *g.Count {
			a := st.newAlloc(j, *g.Name, i, idx, "", now)
			a.DeploymentStatus = &api.AllocDeploymentStatus{Healthy: new(true), Timestamp: time.Unix(0, now).UTC(), ModifyIndex: idx}
			if ds := d.state(*g.Name); ds != nil {
				a.deploymentID = d.ID
				ds.PlacedAllocs++
				ds.HealthyAllocs++
			}
			events = append(events, allocEvent("PlanResult", a))
		}
	}
	if d != nil {
		events = append(events, deploymentEvent("PlanResult", d))
	}
	j.Status = new(st.jobStatus(rec))
	events = append([]wireEvent{jobEvent("JobRegistered", j)}, events...)
	s.publish(idx, events)
}

// AddNode adds a client node, a copy of the captured one with another
// name, ID, status ("ready", "down", "initializing", "disconnected") and
// scheduling eligibility ("eligible", "ineligible"); drain implies
// ineligible, as in Nomad.
func (s *Server) AddNode(name, status, eligibility string, drain bool) {
	st := s.state()
	st.mu.Lock()
	defer st.mu.Unlock()
	var node map[string]any
	cloneInto(st.nodes[0], &node)
	if drain {
		eligibility = "ineligible"
	}
	idx := st.nextIndex(s)
	node["ID"], node["Name"], node["Status"] = uuid(), name, status
	node["SchedulingEligibility"], node["Drain"] = eligibility, drain
	node["CreateIndex"], node["ModifyIndex"] = idx, idx
	st.nodes = append(st.nodes, node)
	s.publish(idx, []wireEvent{{Topic: "Node", Type: "NodeRegistration", Key: node["ID"].(string), Payload: map[string]any{"Node": node}}})
}

// nextIndex hands out a raft index above everything served so far: the
// event buffer's and the state's.
func (st *jobsState) nextIndex(s *Server) uint64 {
	st.index = max(st.index, s.LastIndex()) + 1
	return st.index
}

// wireEvent is an event as the stream carries it.
type wireEvent struct {
	FilterKeys []string
	Index      uint64
	Key        string
	Namespace  string
	Payload    map[string]any
	Topic      string
	Type       string
}

func jobEvent(typ string, j *api.Job) wireEvent {
	return wireEvent{Topic: "Job", Type: typ, Key: *j.ID, Namespace: *j.Namespace, Payload: map[string]any{"Job": j}}
}

func evalEvent(typ string, e *evaluation) wireEvent {
	return wireEvent{Topic: "Evaluation", Type: typ, Key: e.ID, Namespace: e.Namespace,
		FilterKeys: []string{e.JobID, e.DeploymentID}, Payload: map[string]any{"Evaluation": e}}
}

func deploymentEvent(typ string, d *deployment) wireEvent {
	return wireEvent{Topic: "Deployment", Type: typ, Key: d.ID, Namespace: d.Namespace,
		FilterKeys: []string{d.JobID}, Payload: map[string]any{"Deployment": d}}
}

func allocEvent(typ string, a *alloc) wireEvent {
	return wireEvent{Topic: "Allocation", Type: typ, Key: a.ID, Namespace: a.Namespace,
		FilterKeys: []string{a.JobID, a.deploymentID}, Payload: map[string]any{"Allocation": a.payload()}}
}

// publish appends one frame, as one raft apply produces.
func (s *Server) publish(idx uint64, events []wireEvent) {
	for i := range events {
		events[i].Index = idx
	}
	s.Append(string(mustEncode(struct {
		Events []wireEvent
		Index  uint64
	}{events, idx})))
}

func cloneJob(j *api.Job) *api.Job {
	var c api.Job
	cloneInto(j, &c)
	return &c
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// jobStatus is Nomad's job status: running while an allocation is not
// terminal, pending before anything ran, dead after. Parameterized and
// periodic parents run as long as they are not stopped.
func (st *jobsState) jobStatus(rec *jobRecord) string {
	j := rec.job
	if (parameterized(j) || j.Periodic != nil) && !*j.Stop {
		return "running"
	}
	seen := false
	for _, a := range st.allocs {
		if a.JobID == *j.ID && a.Namespace == *j.Namespace {
			seen = true
			if a.ClientStatus == "pending" || a.ClientStatus == "running" {
				return "running"
			}
		}
	}
	for _, e := range st.evals {
		if e.JobID == *j.ID && e.Namespace == *j.Namespace && e.Status == "pending" {
			return "pending"
		}
	}
	if !seen && !*j.Stop {
		return "pending"
	}
	return "dead"
}

// parameterized is Nomad's IsParameterized: dispatched children keep their
// parent's parameterized block.
func parameterized(j *api.Job) bool { return j.ParameterizedJob != nil && !j.Dispatched }

// summary computes a job's summary from its allocations and children.
func (st *jobsState) summary(rec *jobRecord) api.JobSummary {
	j := rec.job
	sum := api.JobSummary{JobID: *j.ID, Namespace: *j.Namespace, Summary: map[string]api.TaskGroupSummary{},
		Children: &api.JobChildrenSummary{}, CreateIndex: *j.CreateIndex, ModifyIndex: rec.summaryIndex}
	for _, g := range j.TaskGroups {
		sum.Summary[*g.Name] = api.TaskGroupSummary{}
	}
	for _, a := range st.allocs {
		if a.JobID != *j.ID || a.Namespace != *j.Namespace {
			continue
		}
		g := sum.Summary[a.TaskGroup]
		switch a.ClientStatus {
		case "pending":
			g.Starting++
		case "running":
			g.Running++
		case "complete":
			g.Complete++
		case "failed":
			g.Failed++
		case "lost":
			g.Lost++
		case "unknown":
			g.Unknown++
		}
		sum.Summary[a.TaskGroup] = g
	}
	for _, c := range st.jobs {
		if *c.job.ParentID != *j.ID || *c.job.Namespace != *j.Namespace {
			continue
		}
		switch *c.job.Status {
		case "pending":
			sum.Children.Pending++
		case "running":
			sum.Children.Running++
		case "dead":
			sum.Children.Dead++
		}
	}
	return sum
}

// jobStub is a JobListStub as Nomad serves it; the api type lacks NodePool
// and Multiregion.
type jobStub struct {
	CreateIndex       uint64
	Datacenters       []string
	ID                string
	JobModifyIndex    uint64
	JobSummary        api.JobSummary
	Meta              map[string]string `json:",omitempty"`
	ModifyIndex       uint64
	Multiregion       *api.Multiregion
	Name              string
	Namespace         string
	NodePool          string
	ParameterizedJob  bool
	ParentID          string
	Periodic          bool
	Priority          int
	Status            string
	StatusDescription string
	Stop              bool
	SubmitTime        int64
	Type              string
}

func (st *jobsState) stub(rec *jobRecord, meta bool) jobStub {
	j := rec.job
	s := jobStub{CreateIndex: *j.CreateIndex, Datacenters: j.Datacenters, ID: *j.ID, JobModifyIndex: *j.JobModifyIndex,
		JobSummary: st.summary(rec), ModifyIndex: *j.ModifyIndex, Multiregion: j.Multiregion, Name: *j.Name,
		Namespace: *j.Namespace, NodePool: *j.NodePool, ParameterizedJob: parameterized(j),
		ParentID: *j.ParentID, Periodic: j.Periodic != nil, Priority: *j.Priority, Status: *j.Status,
		StatusDescription: *j.StatusDescription, Stop: *j.Stop, SubmitTime: *j.SubmitTime, Type: *j.Type}
	if meta {
		s.Meta = j.Meta
	}
	return s
}

// apiError is an error answer: a status and Nomad's text.
type apiError struct {
	code int
	msg  string
}

func errorf(code int, format string, args ...any) *apiError {
	return &apiError{code, fmt.Sprintf(format, args...)}
}

// namespace is the request's namespace, Nomad's default when unset.
func namespace(r *http.Request) string {
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		return ns
	}
	return api.DefaultNamespace
}

func inNamespace(want, ns string) bool { return want == "*" || want == ns }

// serveState serves the endpoints backed by the state; false when the
// path is not one of them.
func (s *Server) serveState(w http.ResponseWriter, r *http.Request) bool {
	path := r.URL.Path
	st := s.state()
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	switch {
	case path == "/v1/jobs" && write:
		s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.registerRequest(s, r, body, "") })
	case path == "/v1/jobs":
		s.query(w, r, func() (any, uint64) { return st.listJobs(s, r) })
	case path == "/v1/jobs/parse" && write:
		s.write(w, r, func(body []byte) (any, uint64, *apiError) { return parseJob(body) })
	case strings.HasPrefix(path, "/v1/job/"):
		s.serveJob(w, r, strings.TrimPrefix(path, "/v1/job/"))
	case path == "/v1/deployments":
		s.query(w, r, func() (any, uint64) { return st.listDeployments(s, r) })
	case strings.HasPrefix(path, "/v1/deployment/promote/") && write:
		id := strings.TrimPrefix(path, "/v1/deployment/promote/")
		s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.promote(s, id, body) })
	case strings.HasPrefix(path, "/v1/deployment/"):
		id := strings.TrimPrefix(path, "/v1/deployment/")
		s.queryOne(w, r, func() (any, uint64, *apiError) { return st.deploymentInfo(s, id) })
	case path == "/v1/allocations":
		s.query(w, r, func() (any, uint64) { return st.listAllocs(s, r) })
	case strings.HasPrefix(path, "/v1/client/allocation/") && strings.HasSuffix(path, "/restart") && write:
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/v1/client/allocation/"), "/restart")
		s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.restart(s, id, body) })
	case strings.HasPrefix(path, "/v1/evaluation/"):
		id := strings.TrimPrefix(path, "/v1/evaluation/")
		s.queryOne(w, r, func() (any, uint64, *apiError) { return st.evalInfo(id) })
	case path == "/v1/nodes":
		s.query(w, r, func() (any, uint64) { return st.nodes, s.tableIndex("Node") })
	default:
		return false
	}
	return true
}

// writable tells the paths that take PUT and POST.
func writable(path string) bool {
	return path == "/v1/jobs" || path == "/v1/jobs/parse" || strings.HasPrefix(path, "/v1/job/") ||
		strings.HasPrefix(path, "/v1/deployment/promote/") ||
		strings.HasPrefix(path, "/v1/client/allocation/")
}

// jobSuffixes are the /v1/job/<id>/<suffix> endpoints Nomad routes by
// suffix; the fake answers 501 for those it lacks.
var jobSuffixes = []string{"evaluate", "allocations", "evaluations", "periodic/force", "plan", "summary", "dispatch",
	"versions", "revert", "deployments", "deployment", "stable", "scale", "services", "submission", "actions", "action"}

// serveJob routes /v1/job/<id>[/<suffix>] as Nomad's JobSpecificRequest
// does: by suffix, the rest being the job ID.
func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, rest string) {
	st := s.state()
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	for _, suffix := range jobSuffixes {
		id, ok := strings.CutSuffix(rest, "/"+suffix)
		if !ok {
			continue
		}
		ns := namespace(r)
		switch {
		case suffix == "versions" && !write:
			s.queryOne(w, r, func() (any, uint64, *apiError) { return st.versions(ns, id) })
		case suffix == "summary" && !write:
			s.queryOne(w, r, func() (any, uint64, *apiError) { return st.jobSummary(ns, id) })
		case suffix == "allocations" && !write:
			s.query(w, r, func() (any, uint64) { return st.jobAllocs(s, ns, id) })
		case suffix == "deployments" && !write:
			s.query(w, r, func() (any, uint64) { return st.jobDeployments(s, ns, id, false) })
		case suffix == "deployment" && !write:
			s.query(w, r, func() (any, uint64) { return st.jobDeployments(s, ns, id, true) })
		case suffix == "plan" && write:
			s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.plan(r, id, body) })
		case suffix == "revert" && write:
			s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.revert(s, r, id, body) })
		case suffix == "scale" && write:
			s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.scale(s, r, id, body) })
		case slices.Contains([]string{"versions", "summary", "allocations", "deployments", "deployment", "plan", "revert"}, suffix):
			plainError(w, http.StatusMethodNotAllowed, "Invalid method")
		default:
			plainError(w, http.StatusNotImplemented, "fakenomad: /v1/job/<id>/"+suffix+" is not implemented")
		}
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.queryOne(w, r, func() (any, uint64, *apiError) { return st.jobInfo(namespace(r), rest) })
	case http.MethodPut, http.MethodPost:
		s.write(w, r, func(body []byte) (any, uint64, *apiError) { return st.registerRequest(s, r, body, rest) })
	default:
		// Deviation: no DELETE (deregistration).
		plainError(w, http.StatusMethodNotAllowed, "Invalid method")
	}
}

// Nomad's bounds on a blocking query's wait.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

// query serves a read that cannot fail, as a blocking query when asked
// (?index=N&wait=D): it answers once the index passes N or the wait is
// over. Deviation: no jitter on the wait.
func (s *Server) query(w http.ResponseWriter, r *http.Request, read func() (any, uint64)) {
	s.queryOne(w, r, func() (any, uint64, *apiError) {
		v, idx := read()
		return v, idx, nil
	})
}

// queryOne serves a read that may fail. read runs with the state locked,
// and its result is encoded before the state changes again.
func (s *Server) queryOne(w http.ResponseWriter, r *http.Request, read func() (any, uint64, *apiError)) {
	q := r.URL.Query()
	var want uint64
	if v := q.Get("index"); v != "" {
		i, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			plainError(w, http.StatusBadRequest, "Invalid index")
			return
		}
		want = i
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			plainError(w, http.StatusBadRequest, "Invalid wait time")
			return
		}
		wait = min(d, maxWait)
	}
	deadline := time.Now().Add(wait)
	st := s.state()
	for {
		st.mu.Lock()
		v, idx, apiErr := read()
		var body []byte
		if apiErr == nil {
			body = mustEncode(v)
		}
		st.mu.Unlock()
		// Deviation: errors (an unknown job) answer at once, where Nomad
		// would block on the table's index first.
		if apiErr != nil {
			plainError(w, apiErr.code, apiErr.msg)
			return
		}
		if want == 0 || idx > want || !time.Now().Before(deadline) {
			writeJSON(w, body, idx)
			return
		}
		// Polling keeps the fake simple and notices frames tests append.
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// write serves a write: the body is read whole and handed to apply.
func (s *Server) write(w http.ResponseWriter, r *http.Request, apply func(body []byte) (any, uint64, *apiError)) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		plainError(w, http.StatusBadRequest, err.Error())
		return
	}
	// apply locks the state itself and answers values of its own.
	v, idx, apiErr := apply(body)
	if apiErr != nil {
		plainError(w, apiErr.code, apiErr.msg)
		return
	}
	writeJSON(w, mustEncode(v), idx)
}

func mustEncode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("fakenomad: " + err.Error())
	}
	return b
}

func writeJSON(w http.ResponseWriter, b []byte, idx uint64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(max(idx, 1), 10))
	w.Header().Set("X-Nomad-Knownleader", "true")
	w.Header().Set("X-Nomad-Lastcontact", "0")
	w.Write(b)
}

// decodeBody decodes a request body as Nomad's agent does, answering 400
// with the decoder's error.
func decodeBody(body []byte, v any) *apiError {
	if err := json.Unmarshal(body, v); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// Deviation: list endpoints honour prefix and namespace but ignore
// pagination and filters.
func (st *jobsState) listJobs(s *Server, r *http.Request) (any, uint64) {
	q := r.URL.Query()
	ns, prefix, meta := namespace(r), q.Get("prefix"), q.Get("meta") == "true"
	stubs := []jobStub{}
	for k, rec := range st.jobs {
		if inNamespace(ns, k.ns) && strings.HasPrefix(k.id, prefix) {
			stubs = append(stubs, st.stub(rec, meta))
		}
	}
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].ID < stubs[j].ID })
	return stubs, s.tableIndex("Job")
}

func (st *jobsState) jobInfo(ns, id string) (any, uint64, *apiError) {
	rec, ok := st.jobs[jobKey{ns, id}]
	if !ok {
		return nil, 0, errorf(http.StatusNotFound, "job not found")
	}
	return rec.job, *rec.job.ModifyIndex, nil
}

func (st *jobsState) versions(ns, id string) (any, uint64, *apiError) {
	rec, ok := st.jobs[jobKey{ns, id}]
	if !ok {
		return nil, 0, errorf(http.StatusNotFound, "job versions not found")
	}
	// Deviation: diffs=true is ignored, Diffs is always null.
	idx := *rec.versions[0].ModifyIndex
	return struct {
		Diffs       []*api.JobDiff
		Index       uint64
		KnownLeader bool
		LastContact int
		NextToken   string
		Versions    []*api.Job
	}{nil, idx, true, 0, "", rec.versions}, idx, nil
}

func (st *jobsState) jobSummary(ns, id string) (any, uint64, *apiError) {
	rec, ok := st.jobs[jobKey{ns, id}]
	if !ok {
		return nil, 0, errorf(http.StatusNotFound, "job not found")
	}
	sum := st.summary(rec)
	return sum, sum.ModifyIndex, nil
}

// jobAllocs lists a job's allocations, by ID as Nomad's index does; an
// unknown job has none.
func (st *jobsState) jobAllocs(s *Server, ns, id string) (any, uint64) {
	allocs := []*alloc{}
	for _, a := range st.allocs {
		if a.JobID == id && a.Namespace == ns {
			allocs = append(allocs, a)
		}
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].ID < allocs[j].ID })
	return allocs, s.tableIndex("Allocation")
}

// jobDeployments lists a job's deployments, newest first, or only the
// newest (null when there is none).
func (st *jobsState) jobDeployments(s *Server, ns, id string, latest bool) (any, uint64) {
	deploys := st.deploymentsOf(ns, id)
	idx := s.tableIndex("Deployment")
	if latest {
		if len(deploys) == 0 {
			return nil, idx
		}
		return deploys[0], idx
	}
	return deploys, idx
}

// deploymentsOf is a job's deployments, newest first.
func (st *jobsState) deploymentsOf(ns, id string) []*deployment {
	deploys := []*deployment{}
	for _, d := range st.deploys {
		if d.JobID == id && d.Namespace == ns {
			deploys = append(deploys, d)
		}
	}
	sort.Slice(deploys, func(i, j int) bool { return deploys[i].CreateIndex > deploys[j].CreateIndex })
	return deploys
}

func (st *jobsState) listDeployments(s *Server, r *http.Request) (any, uint64) {
	ns, prefix := namespace(r), r.URL.Query().Get("prefix")
	deploys := []*deployment{}
	for _, d := range st.deploys {
		if inNamespace(ns, d.Namespace) && strings.HasPrefix(d.ID, prefix) {
			deploys = append(deploys, d)
		}
	}
	sort.Slice(deploys, func(i, j int) bool { return deploys[i].CreateIndex < deploys[j].CreateIndex })
	return deploys, s.tableIndex("Deployment")
}

func (st *jobsState) deploymentInfo(s *Server, id string) (any, uint64, *apiError) {
	d, ok := st.deploys[id]
	if !ok {
		return nil, 0, errorf(http.StatusNotFound, "deployment not found")
	}
	return d, s.tableIndex("Deployment"), nil
}

func (st *jobsState) listAllocs(s *Server, r *http.Request) (any, uint64) {
	ns, prefix := namespace(r), r.URL.Query().Get("prefix")
	allocs := []*alloc{}
	for _, a := range st.allocs {
		if inNamespace(ns, a.Namespace) && strings.HasPrefix(a.ID, prefix) {
			allocs = append(allocs, a)
		}
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].CreateIndex < allocs[j].CreateIndex })
	return allocs, s.tableIndex("Allocation")
}

func (st *jobsState) evalInfo(id string) (any, uint64, *apiError) {
	if e, ok := st.evals[id]; ok {
		return e, e.ModifyIndex, nil
	}
	if raw, ok := st.captured[id]; ok {
		var e struct{ ModifyIndex uint64 }
		mustDecodeBytes(raw, &e)
		return raw, e.ModifyIndex, nil
	}
	return nil, 0, errorf(http.StatusNotFound, "eval not found")
}
