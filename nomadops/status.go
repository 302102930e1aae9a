package nomadops

import (
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// ClusterStatus is an overview of the cluster.
type ClusterStatus struct {
	Leader      string         // the leader server's RPC address
	Nodes       NodeCounts     // client nodes
	Jobs        map[string]int // top-level jobs by status: pending, running, dead
	Deployments []DeploymentProgress
}

// NodeCounts counts client nodes. Ready nodes may be ineligible too.
type NodeCounts struct {
	Total, Ready, Down, Ineligible int
	Problems                       []NodeProblem // nodes not ready or not eligible, by name
}

// NodeProblem is a node that is not ready or not eligible.
type NodeProblem struct {
	Name, Status, Eligibility string
	Drain                     bool
}

// Status reads the leader, the client nodes, the jobs (leaving out the
// children of parameterized and periodic jobs) and the active deployments.
func (c *Client) Status(ctx context.Context) (ClusterStatus, error) {
	var st ClusterStatus
	// Status().Leader takes no options, hence no context: go raw.
	if _, err := c.api.Raw().Query("/v1/status/leader", &st.Leader, queryOpts(ctx)); err != nil {
		return ClusterStatus{}, c.fail("read the leader", err)
	}
	nodes, _, err := c.api.Nodes().List(queryOpts(ctx))
	if err != nil {
		return ClusterStatus{}, c.fail("list nodes", err)
	}
	for _, n := range nodes {
		st.Nodes.Total++
		switch n.Status {
		case api.NodeStatusReady:
			st.Nodes.Ready++
		case api.NodeStatusDown:
			st.Nodes.Down++
		}
		if n.SchedulingEligibility != api.NodeSchedulingEligible {
			st.Nodes.Ineligible++
		}
		if n.Status != api.NodeStatusReady || n.SchedulingEligibility != api.NodeSchedulingEligible {
			st.Nodes.Problems = append(st.Nodes.Problems, NodeProblem{Name: n.Name, Status: n.Status,
				Eligibility: n.SchedulingEligibility, Drain: n.Drain})
		}
	}
	sort.Slice(st.Nodes.Problems, func(i, j int) bool { return st.Nodes.Problems[i].Name < st.Nodes.Problems[j].Name })
	jobs, _, err := c.api.Jobs().List(queryOpts(ctx))
	if err != nil {
		return ClusterStatus{}, c.fail("list jobs", err)
	}
	st.Jobs = map[string]int{}
	for _, j := range jobs {
		if j.ParentID == "" {
			st.Jobs[j.Status]++
		}
	}
	deploys, _, err := c.api.Deployments().List(queryOpts(ctx))
	if err != nil {
		return ClusterStatus{}, c.fail("list deployments", err)
	}
	for _, d := range deploys {
		if p := progressOf(d); !p.Terminal() {
			st.Deployments = append(st.Deployments, p)
		}
	}
	sort.Slice(st.Deployments, func(i, j int) bool { return st.Deployments[i].JobID < st.Deployments[j].JobID })
	return st, nil
}

// JobSummary is a line of a job list.
type JobSummary struct {
	ID, Type, Status string
	Stop             bool
	Periodic         bool
	Parameterized    bool
	SubmitTime       time.Time
	Allocs           AllocCounts // all groups together
}

// AllocCounts counts allocations by client status, as Nomad's job
// summary does (Queued: not placed yet).
type AllocCounts struct {
	Queued, Starting, Running, Failed, Complete, Lost, Unknown int
}

func (a *AllocCounts) add(s api.TaskGroupSummary) {
	a.Queued += s.Queued
	a.Starting += s.Starting
	a.Running += s.Running
	a.Failed += s.Failed
	a.Complete += s.Complete
	a.Lost += s.Lost
	a.Unknown += s.Unknown
}

// Jobs lists the jobs whose ID matches glob (path.Match syntax, where *
// does not cross a '/', so that "*" leaves out dispatched and periodic
// children and "backup/*" lists backup's), sorted by ID. An empty glob
// is "*".
func (c *Client) Jobs(ctx context.Context, glob string) ([]JobSummary, error) {
	if glob == "" {
		glob = "*"
	}
	if _, err := path.Match(glob, ""); err != nil {
		return nil, fmt.Errorf("job pattern %q: %w", glob, err)
	}
	q := queryOpts(ctx)
	// The literal start of the pattern narrows the list server side.
	if i := strings.IndexAny(glob, `*?[\`); i != 0 {
		q.Prefix = glob
		if i > 0 {
			q.Prefix = glob[:i]
		}
	}
	stubs, _, err := c.api.Jobs().List(q)
	if err != nil {
		return nil, c.fail("list jobs", err)
	}
	out := []JobSummary{}
	for _, s := range stubs {
		if ok, _ := path.Match(glob, s.ID); !ok {
			continue
		}
		j := JobSummary{ID: s.ID, Type: s.Type, Status: s.Status, Stop: s.Stop, Periodic: s.Periodic,
			Parameterized: s.ParameterizedJob, SubmitTime: unixTime(&s.SubmitTime)}
		if s.JobSummary != nil {
			for _, g := range s.JobSummary.Summary {
				j.Allocs.add(g)
			}
		}
		out = append(out, j)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].ID < out[k].ID })
	return out, nil
}

// JobDetail is one job in detail.
type JobDetail struct {
	ID, Name, Namespace, Type, Status string
	Stop                              bool
	Version                           uint64
	Stable                            bool
	SubmitTime                        time.Time
	JobModifyIndex                    uint64
	Groups                            []GroupDetail
	Children                          ChildCounts // dispatched or periodic children, by status
	LatestDeployment                  *DeploymentProgress
	Versions                          []VersionInfo // tracked versions, newest first
}

// GroupDetail is a task group: its count and its allocations.
type GroupDetail struct {
	Name    string
	Desired int // the group's count
	Allocs  AllocCounts
	Tasks   []TaskInfo
}

// TaskInfo is a task; Image is its config's image, if it has one.
type TaskInfo struct {
	Name, Driver, Image string
}

// ChildCounts counts a parent job's children by status.
type ChildCounts struct {
	Pending, Running, Dead int
}

// VersionInfo is a tracked version of a job.
type VersionInfo struct {
	Version    uint64
	Stable     bool
	SubmitTime time.Time
}

// Job reads a job with its summary, latest deployment and versions. An
// unknown job is a *NotFoundError suggesting the closest ID.
func (c *Client) Job(ctx context.Context, id string) (JobDetail, error) {
	job, err := c.readJob(ctx, id)
	if err != nil {
		return JobDetail{}, err
	}
	sum, _, err := c.api.Jobs().Summary(id, queryOpts(ctx))
	if err != nil {
		return JobDetail{}, c.fail("read the summary of job "+id, err)
	}
	d, _, err := c.api.Jobs().LatestDeployment(id, queryOpts(ctx))
	if err != nil {
		return JobDetail{}, c.fail("read the deployment of job "+id, err)
	}
	versions, _, _, err := c.api.Jobs().Versions(id, false, queryOpts(ctx))
	if err != nil {
		return JobDetail{}, c.fail("read the versions of job "+id, err)
	}
	out := JobDetail{ID: *job.ID, Name: str(job.Name), Namespace: str(job.Namespace), Type: str(job.Type),
		Status: str(job.Status), Stop: job.Stop != nil && *job.Stop, Version: *job.Version,
		Stable: job.Stable != nil && *job.Stable, SubmitTime: unixTime(job.SubmitTime), JobModifyIndex: *job.JobModifyIndex}
	for _, g := range job.TaskGroups {
		gd := GroupDetail{Name: *g.Name, Desired: *g.Count}
		gd.Allocs.add(sum.Summary[*g.Name])
		for _, t := range g.Tasks {
			gd.Tasks = append(gd.Tasks, TaskInfo{Name: t.Name, Driver: t.Driver, Image: taskImage(t)})
		}
		out.Groups = append(out.Groups, gd)
	}
	if sum.Children != nil {
		out.Children = ChildCounts{int(sum.Children.Pending), int(sum.Children.Running), int(sum.Children.Dead)}
	}
	if d != nil {
		p := progressOf(d)
		out.LatestDeployment = &p
	}
	for _, v := range versions {
		out.Versions = append(out.Versions, VersionInfo{Version: *v.Version, Stable: v.Stable != nil && *v.Stable,
			SubmitTime: unixTime(v.SubmitTime)})
	}
	slices.SortFunc(out.Versions, func(a, b VersionInfo) int { return cmp.Compare(b.Version, a.Version) })
	return out, nil
}

// taskImage is a task's config image, "" when it has none.
func taskImage(t *api.Task) string {
	s, _ := t.Config["image"].(string)
	return s
}
