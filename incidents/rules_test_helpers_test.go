package incidents

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/watchers"
)

// Test-only translation of the captured Nomad and Consul JSON into
// watchers.Event, field by field, so the rules are tested on real payloads
// without depending on the watchers' own translation.

type nomadFrame struct {
	Events []struct {
		Topic, Type, Key, Namespace string
		Index                       uint64
		Payload                     struct {
			Allocation *nomadAlloc
			Deployment *nomadDeployment
			Job        *nomadJob
			Node       *nomadNode
			Evaluation *nomadEval
		}
	}
}

type nomadAlloc struct {
	ID, Name, JobID, TaskGroup, NodeID, NodeName string
	ClientStatus, ClientDescription              string
	DesiredStatus, DesiredDescription            string
	DeploymentID                                 string
	DeploymentStatus                             *struct {
		Healthy *bool
		Canary  bool
	}
	TaskStates map[string]struct {
		State    string
		Failed   bool
		Restarts int
		Events   []struct {
			Type           string
			Time           int64
			DisplayMessage string
			ExitCode       int
			Signal         int
			Details        map[string]string
		}
	}
	FollowupEvalID string
	ModifyTime     int64
}

type nomadDeployment struct {
	ID, JobID                 string
	JobVersion                uint64
	Status, StatusDescription string
	TaskGroups                map[string]struct {
		DesiredTotal, DesiredCanaries, PlacedAllocs, HealthyAllocs, UnhealthyAllocs int
		AutoRevert, Promoted                                                        bool
	}
}

type nomadJob struct {
	ID, Type, Status, ParentID string
	Stop                       bool
	Version                    uint64
}

type nomadNode struct {
	ID, Name, Status, SchedulingEligibility string
	DrainStrategy                           json.RawMessage
	Events                                  []struct{ Message string }
}

type nomadEval struct {
	ID, JobID, Status, TriggeredBy, StatusDescription, BlockedEval string
	FailedTGAllocs                                                 map[string]struct {
		CoalescedFailures                                          int
		NodesEvaluated, NodesFiltered, NodesExhausted, NodesInPool int
		DimensionExhausted, ConstraintFiltered, ClassExhausted     map[string]int
		QuotaExhausted                                             []string
	}
	ModifyTime int64
}

// loadNomadEvents reads testdata/nomad-events.ndjson: one frame per line,
// "{}" heartbeats.
func loadNomadEvents(t *testing.T) []watchers.Event {
	t.Helper()
	raw, err := os.ReadFile("testdata/nomad-events.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return nomadFrameEvents(t, lines)
}

// nomadFrameEvents translates frames of a stream.
func nomadFrameEvents(t *testing.T, lines []string) []watchers.Event {
	t.Helper()
	var out []watchers.Event
	for _, line := range lines {
		var f nomadFrame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		for _, e := range f.Events {
			ev := watchers.Event{Source: "nomad", Topic: e.Topic, Type: e.Type, Index: e.Index, Namespace: e.Namespace}
			p := e.Payload
			switch {
			case p.Allocation != nil:
				ev.Alloc, ev.Time = p.Allocation.event(), time.Unix(0, p.Allocation.ModifyTime)
			case p.Deployment != nil:
				ev.Deployment = p.Deployment.event()
			case p.Job != nil:
				j := p.Job
				ev.Job = &watchers.Job{ID: j.ID, Type: j.Type, Status: j.Status, Stop: j.Stop, Version: j.Version, ParentID: j.ParentID}
			case e.Topic == "Job" && e.Type == "JobDeregistered":
				ev.Job = &watchers.Job{ID: e.Key, Purged: true}
			case p.Node != nil:
				ev.Node = p.Node.event()
			case p.Evaluation != nil:
				ev.Eval, ev.Time = p.Evaluation.event(), time.Unix(0, p.Evaluation.ModifyTime)
			default:
				t.Fatalf("index %d: unknown payload of %s/%s", e.Index, e.Topic, e.Type)
			}
			out = append(out, ev)
		}
	}
	return out
}

func (a *nomadAlloc) event() *watchers.Alloc {
	out := &watchers.Alloc{
		ID: a.ID, Name: a.Name, Job: a.JobID, Group: a.TaskGroup, NodeID: a.NodeID, NodeName: a.NodeName,
		ClientStatus: a.ClientStatus, ClientDescription: a.ClientDescription,
		DesiredStatus: a.DesiredStatus, DesiredDescription: a.DesiredDescription,
		DeploymentID: a.DeploymentID, Rescheduled: a.FollowupEvalID != "",
	}
	if s := a.DeploymentStatus; s != nil {
		out.Healthy, out.Canary = s.Healthy, s.Canary
	}
	for name, ts := range a.TaskStates {
		task := watchers.Task{Name: name, State: ts.State, Failed: ts.Failed, Restarts: ts.Restarts}
		for _, e := range ts.Events {
			task.Events = append(task.Events, watchers.TaskEvent{
				Type: e.Type, Time: time.Unix(0, e.Time), Message: e.DisplayMessage,
				ExitCode: e.ExitCode, Signal: e.Signal, OOMKilled: e.Details["oom_killed"] == "true",
			})
		}
		out.Tasks = append(out.Tasks, task)
	}
	sort.Slice(out.Tasks, func(i, j int) bool { return out.Tasks[i].Name < out.Tasks[j].Name })
	return out
}

func (d *nomadDeployment) event() *watchers.Deployment {
	out := &watchers.Deployment{ID: d.ID, Job: d.JobID, JobVersion: d.JobVersion, Status: d.Status, StatusDescription: d.StatusDescription}
	for name, g := range d.TaskGroups {
		out.Groups = append(out.Groups, watchers.DeploymentGroup{
			Name: name, Desired: g.DesiredTotal, DesiredCanaries: g.DesiredCanaries, Placed: g.PlacedAllocs,
			Healthy: g.HealthyAllocs, Unhealthy: g.UnhealthyAllocs, AutoRevert: g.AutoRevert, Promoted: g.Promoted,
		})
	}
	sort.Slice(out.Groups, func(i, j int) bool { return out.Groups[i].Name < out.Groups[j].Name })
	return out
}

func (n *nomadNode) event() *watchers.Node {
	out := &watchers.Node{
		ID: n.ID, Name: n.Name, Status: n.Status, Eligibility: n.SchedulingEligibility,
		Draining: len(n.DrainStrategy) > 0 && string(n.DrainStrategy) != "null",
	}
	if len(n.Events) > 0 {
		out.LastEvent = n.Events[len(n.Events)-1].Message
	}
	return out
}

func (e *nomadEval) event() *watchers.Eval {
	out := &watchers.Eval{ID: e.ID, Job: e.JobID, Status: e.Status, TriggeredBy: e.TriggeredBy, StatusDescription: e.StatusDescription, BlockedEval: e.BlockedEval}
	for group, f := range e.FailedTGAllocs {
		out.Failures = append(out.Failures, watchers.PlacementFailure{
			Group: group, Unplaced: 1 + f.CoalescedFailures, NodesEvaluated: f.NodesEvaluated, NodesFiltered: f.NodesFiltered,
			NodesExhausted: f.NodesExhausted, NodesInPool: f.NodesInPool,
			DimensionExhausted: f.DimensionExhausted, ConstraintFiltered: f.ConstraintFiltered,
			ClassExhausted: f.ClassExhausted, QuotaExhausted: f.QuotaExhausted,
		})
	}
	sort.Slice(out.Failures, func(i, j int) bool { return out.Failures[i].Group < out.Failures[j].Group })
	return out
}

// loadConsulChecks reads a captured /v1/health/state/any response as the
// events of one snapshot.
func loadConsulChecks(t *testing.T, file string) []*watchers.Event {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var checks []struct {
		Node, CheckID, Name, Status, Output, ServiceID, ServiceName string
		ServiceTags                                                 []string
	}
	if err := json.Unmarshal(raw, &checks); err != nil {
		t.Fatal(err)
	}
	out := make([]*watchers.Event, len(checks))
	for i, c := range checks {
		out[i] = &watchers.Event{Source: "consul", Topic: "Check", Type: c.Status, Check: &watchers.Check{
			Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Output: c.Output,
			ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: c.ServiceTags,
		}}
	}
	return out
}

// nomadEvent is the capture's event at index of the given topic whose
// payload ID (the event key) starts with id.
func nomadEvent(t *testing.T, events []watchers.Event, index uint64, topic, id string) *watchers.Event {
	t.Helper()
	for i := range events {
		ev := &events[i]
		if ev.Index == index && ev.Topic == topic && strings.HasPrefix(payloadID(ev), id) {
			return ev
		}
	}
	t.Fatalf("no %s event %s at index %d", topic, id, index)
	return nil
}

func payloadID(ev *watchers.Event) string {
	switch {
	case ev.Alloc != nil:
		return ev.Alloc.ID
	case ev.Deployment != nil:
		return ev.Deployment.ID
	case ev.Job != nil:
		return ev.Job.ID
	case ev.Node != nil:
		return ev.Node.ID
	case ev.Eval != nil:
		return ev.Eval.ID
	}
	return ev.Check.CheckID
}

// eventCase is one rule verdict on a captured event, optionally altered
// into a situation the capture lacks.
type eventCase struct {
	name   string
	index  uint64
	topic  string
	id     string // prefix of the payload's ID
	mutate func(ev *watchers.Event)
	want   []Signal // At is not compared
}

// runEventCases evaluates each case on a fresh copy of the capture.
func runEventCases(t *testing.T, r Rule, cases []eventCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := nomadEvent(t, loadNomadEvents(t), c.index, c.topic, c.id)
			if c.mutate != nil {
				c.mutate(ev)
			}
			assertSignals(t, r.Evaluate(ev), c.want)
		})
	}
}

func assertSignals(t *testing.T, got, want []Signal) {
	t.Helper()
	for i := range got {
		got[i].At = time.Time{}
	}
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("signals:\n got %s\nwant %s", dumpSignals(got), dumpSignals(want))
	}
}

func dumpSignals(sigs []Signal) string {
	var b strings.Builder
	for _, s := range sigs {
		d := ""
		if s.Detail != nil {
			d = fmt.Sprintf(" detail=%+v", *s.Detail)
		}
		fmt.Fprintf(&b, "\n  {rule=%s key=%s sev=%s status=%d title=%q reason=%q labels=%+v%s occurrence=%q settle=%v hold=%q releases=%q}",
			s.Rule, s.Key, s.Severity, s.Status, s.Title, s.Reason, s.Labels, d, s.Occurrence, s.Settle, s.Hold, s.Releases)
	}
	return b.String()
}

// IDs of the capture.
const (
	crasherAlloc  = "aeb926df-c1d5-fba7-ac31-97f32a5f73f5"
	crasherDeploy = "f7ef71d7-6890-5abe-efb2-3048d133deaa"
	webAllocV0    = "ede2baab-da83-aaae-55ad-64711b0a3784"
	webAllocV1    = "1e1dbaa5-8346-64c6-460a-1435c83ecf55"
	webAllocMoved = "4e41c0d4-8722-608b-bdb1-6a3e4cfd23ec"
	webDeployV0   = "a6a5c578-e83e-dc69-cd0c-4f8364630d34"
	webDeployMove = "050af898-0266-ab7b-d1a6-addee7b957c0"
	vmNodeID      = "bea8c815-b2e2-c04f-b931-9d75f701a90e"
)
