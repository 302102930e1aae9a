package watchers

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The wire types below mirror github.com/hashicorp/nomad/api (same field
// names and types) but hold only what Vigie translates: a change of type in
// an unrelated field then cannot cost an event, and decoding a several-KB
// Node payload stays cheap.

// nomadFrame is one line of the stream: the events of one raft index.
// Events stay raw so that one bad event does not hide the frame's index.
type nomadFrame struct {
	Index  uint64
	Events []json.RawMessage
}

// nomadEvent is api.Event with the Namespace the api struct drops; Payload
// has a single key, the topic.
type nomadEvent struct {
	Topic     string
	Type      string
	Key       string
	Namespace string
	Payload   map[string]json.RawMessage
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
	FollowupEvalID    string
	RescheduleTracker *struct{ Events []json.RawMessage }
	TaskStates        map[string]*struct {
		State    string
		Failed   bool
		Restarts uint64
		Events   []*struct {
			Type                    string
			Time                    int64 // Unix nanoseconds
			DisplayMessage, Message string
			Details                 map[string]string
			ExitCode, Signal        int
		}
	}
	ModifyTime int64 // Unix nanoseconds
}

type nomadDeployment struct {
	ID, JobID                 string
	JobVersion                uint64
	Status, StatusDescription string
	TaskGroups                map[string]*struct {
		DesiredTotal, DesiredCanaries                int
		PlacedAllocs, HealthyAllocs, UnhealthyAllocs int
		AutoRevert, Promoted                         bool
	}
	ModifyTime int64 // Unix nanoseconds; 0 on status updates in Nomad 1.11
}

type nomadEval struct {
	ID, JobID, Status, TriggeredBy, StatusDescription, BlockedEval string
	FailedTGAllocs                                                 map[string]*struct {
		CoalescedFailures                                          int
		NodesEvaluated, NodesFiltered, NodesExhausted, NodesInPool int
		DimensionExhausted, ConstraintFiltered, ClassExhausted     map[string]int
		QuotaExhausted                                             []string
	}
	ModifyTime int64 // Unix nanoseconds
}

type nomadJob struct {
	ID, Type, Status, ParentID string
	Stop                       bool
	Version                    uint64
	JobModifyIndex             uint64
	SubmitTime                 int64 // Unix nanoseconds
}

type nomadNode struct {
	ID, Name, Status, SchedulingEligibility string
	DrainStrategy                           *struct{}
	Events                                  []*struct {
		Message     string
		Timestamp   time.Time
		CreateIndex uint64
	}
}

// nomadTopics are the topics translated.
var nomadTopics = []string{"Allocation", "Deployment", "Evaluation", "Job", "Node"}

// nomadTypes are the event types Nomad emits (nomad/structs/event.go, and
// nomad/state/events.go, which names a type after the raft message, so any
// of them can come with any topic the message touched: the capture has
// Node events of type AllocationUpdated and Job events of type
// EvaluationUpdated). AllocationCreated and NodeEligibility are defined but
// not emitted by Nomad 1.11 (eligibility changes come as NodeDrain).
var nomadTypes = map[string]bool{
	"NodeRegistration": true, "NodeDeregistration": true, "NodeEligibility": true,
	"NodeDrain": true, "NodeStreamEvent": true, "NodePoolUpserted": true, "NodePoolDeleted": true,
	"DeploymentStatusUpdate": true, "DeploymentPromotion": true, "DeploymentAllocHealth": true,
	"AllocationCreated": true, "AllocationUpdated": true, "AllocationUpdateDesiredStatus": true,
	"EvaluationUpdated": true, "PlanResult": true,
	"JobRegistered": true, "JobDeregistered": true, "JobBatchDeregistered": true,
	"ServiceRegistration": true, "ServiceDeregistration": true,
	"HostVolumeRegistered": true, "HostVolumeDeleted": true,
	"CSIVolumeRegistered": true, "CSIVolumeDeregistered": true, "CSIVolumeClaim": true,
}

// nomadSkip is why an event or a line was skipped; kind groups the log lines.
type nomadSkip struct {
	kind string
	msg  string
}

func (e *nomadSkip) Error() string { return e.msg }

func skipf(kind, format string, args ...any) error {
	return &nomadSkip{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// decodeNomadLine decodes a line of the stream. A heartbeat is "{}".
func decodeNomadLine(line []byte) (f nomadFrame, heartbeat bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return f, false, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, &f); err != nil {
		return f, false, err
	}
	if f.Index == 0 {
		if len(f.Events) > 0 {
			return f, false, errors.New("frame with events but no index")
		}
		return f, true, nil
	}
	return f, false, nil
}

// translateNomad turns one event of the frame at index into an Event, or
// says why it cannot (a *nomadSkip).
func translateNomad(raw json.RawMessage, index uint64) (Event, error) {
	var e nomadEvent
	if err := json.Unmarshal(raw, &e); err != nil {
		return Event{}, skipf("malformed event", "malformed event: %v", err)
	}
	if !slices.Contains(nomadTopics, e.Topic) {
		return Event{}, skipf("topic "+e.Topic, "unknown topic %q", e.Topic)
	}
	if !nomadTypes[e.Type] {
		return Event{}, skipf("type "+e.Type, "unknown event type %q (topic %s)", e.Type, e.Topic)
	}
	ev := Event{Source: "nomad", Topic: e.Topic, Type: e.Type, Index: index, Namespace: e.Namespace}
	payload := e.Payload[e.Topic]
	if isNull(payload) && e.Topic == "Job" && (e.Type == "JobDeregistered" || e.Type == "JobBatchDeregistered") {
		// A purge can leave no job to send.
		if e.Key == "" {
			return Event{}, skipf("payload Job", "%s without job or key", e.Type)
		}
		ev.Job = &Job{ID: e.Key, Purged: true}
		return ev, nil
	}
	if isNull(payload) {
		return Event{}, skipf("payload "+e.Topic, "%s event %s without a %s payload", e.Topic, e.Type, e.Topic)
	}
	var err error
	switch e.Topic {
	case "Allocation":
		err = translateAlloc(payload, &ev)
	case "Deployment":
		err = translateDeployment(payload, &ev)
	case "Evaluation":
		err = translateEval(payload, &ev)
	case "Job":
		var deleted bool
		if d, ok := e.Payload["Deleted"]; ok {
			if json.Unmarshal(d, &deleted) != nil {
				deleted = false
			}
		}
		err = translateJob(payload, deleted, &ev)
	case "Node":
		err = translateNode(payload, &ev)
	}
	if err != nil {
		return Event{}, skipf("payload "+e.Topic, "%s payload of %s: %v", e.Topic, e.Type, err)
	}
	return ev, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func unixNano(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

var errNoID = errors.New("no ID")

func translateAlloc(raw json.RawMessage, ev *Event) error {
	var a nomadAlloc
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	if a.ID == "" {
		return errNoID
	}
	out := &Alloc{
		ID: a.ID, Name: a.Name, Job: a.JobID, Group: a.TaskGroup,
		NodeID: a.NodeID, NodeName: a.NodeName,
		ClientStatus: a.ClientStatus, ClientDescription: a.ClientDescription,
		DesiredStatus: a.DesiredStatus, DesiredDescription: a.DesiredDescription,
		DeploymentID: a.DeploymentID,
		Rescheduled:  a.FollowupEvalID != "" || a.RescheduleTracker != nil && len(a.RescheduleTracker.Events) > 0,
	}
	if ds := a.DeploymentStatus; ds != nil {
		out.Canary = ds.Canary
		if ds.Healthy != nil {
			healthy := *ds.Healthy
			out.Healthy = &healthy
		}
	}
	for name, ts := range a.TaskStates {
		if ts == nil {
			continue
		}
		t := Task{Name: name, State: ts.State, Failed: ts.Failed, Restarts: int(min(ts.Restarts, 1<<31-1))}
		for _, te := range ts.Events {
			if te == nil {
				continue
			}
			msg := te.DisplayMessage
			if msg == "" {
				msg = te.Message
			}
			t.Events = append(t.Events, TaskEvent{
				Type: te.Type, Time: unixNano(te.Time), Message: msg,
				// The top-level fields are deprecated in favour of Details.
				ExitCode:  detailInt(te.ExitCode, te.Details["exit_code"]),
				Signal:    detailInt(te.Signal, te.Details["signal"]),
				OOMKilled: te.Details["oom_killed"] == "true",
			})
		}
		out.Tasks = append(out.Tasks, t)
	}
	slices.SortFunc(out.Tasks, func(a, b Task) int { return cmp.Compare(a.Name, b.Name) })
	ev.Alloc = out
	ev.Time = unixNano(a.ModifyTime)
	return nil
}

// detailInt prefers a non-zero deprecated field, else the Details value.
func detailInt(field int, detail string) int {
	if field != 0 {
		return field
	}
	v, err := strconv.Atoi(detail)
	if err != nil {
		return 0
	}
	return v
}

func translateDeployment(raw json.RawMessage, ev *Event) error {
	var d nomadDeployment
	if err := json.Unmarshal(raw, &d); err != nil {
		return err
	}
	if d.ID == "" {
		return errNoID
	}
	out := &Deployment{ID: d.ID, Job: d.JobID, JobVersion: d.JobVersion, Status: d.Status, StatusDescription: d.StatusDescription}
	for name, g := range d.TaskGroups {
		if g == nil {
			continue
		}
		out.Groups = append(out.Groups, DeploymentGroup{
			Name: name, Desired: g.DesiredTotal, DesiredCanaries: g.DesiredCanaries,
			Placed: g.PlacedAllocs, Healthy: g.HealthyAllocs, Unhealthy: g.UnhealthyAllocs,
			AutoRevert: g.AutoRevert, Promoted: g.Promoted,
		})
	}
	slices.SortFunc(out.Groups, func(a, b DeploymentGroup) int { return cmp.Compare(a.Name, b.Name) })
	ev.Deployment = out
	ev.Time = unixNano(d.ModifyTime)
	return nil
}

func translateEval(raw json.RawMessage, ev *Event) error {
	var e nomadEval
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	if e.ID == "" {
		return errNoID
	}
	out := &Eval{ID: e.ID, Job: e.JobID, Status: e.Status, TriggeredBy: e.TriggeredBy, StatusDescription: e.StatusDescription, BlockedEval: e.BlockedEval}
	for group, m := range e.FailedTGAllocs {
		if m == nil {
			continue
		}
		out.Failures = append(out.Failures, PlacementFailure{
			Group: group, Unplaced: 1 + m.CoalescedFailures, NodesEvaluated: m.NodesEvaluated, NodesFiltered: m.NodesFiltered,
			NodesExhausted: m.NodesExhausted, NodesInPool: m.NodesInPool,
			DimensionExhausted: m.DimensionExhausted, ConstraintFiltered: m.ConstraintFiltered,
			ClassExhausted: m.ClassExhausted, QuotaExhausted: m.QuotaExhausted,
		})
	}
	slices.SortFunc(out.Failures, func(a, b PlacementFailure) int { return cmp.Compare(a.Group, b.Group) })
	ev.Eval = out
	ev.Time = unixNano(e.ModifyTime)
	return nil
}

func translateJob(raw json.RawMessage, deleted bool, ev *Event) error {
	var j nomadJob
	if err := json.Unmarshal(raw, &j); err != nil {
		return err
	}
	if j.ID == "" {
		return errNoID
	}
	ev.Job = &Job{ID: j.ID, Type: j.Type, Status: j.Status, Stop: j.Stop, Version: j.Version, ParentID: j.ParentID, Purged: deleted}
	// SubmitTime dates the job's last submission: the event's time only
	// when this event is that submission.
	if j.JobModifyIndex == ev.Index {
		ev.Time = unixNano(j.SubmitTime)
	}
	return nil
}

func translateNode(raw json.RawMessage, ev *Event) error {
	var n nomadNode
	if err := json.Unmarshal(raw, &n); err != nil {
		return err
	}
	if n.ID == "" {
		return errNoID
	}
	out := &Node{ID: n.ID, Name: n.Name, Status: n.Status, Eligibility: n.SchedulingEligibility, Draining: n.DrainStrategy != nil}
	for _, e := range slices.Backward(n.Events) {
		if e == nil {
			continue
		}
		out.LastEvent = e.Message
		// The latest node event is this event's cause only if written at
		// its index (a drain turned off adds none, for one).
		if e.CreateIndex == ev.Index {
			ev.Time = e.Timestamp.UTC()
		}
		break
	}
	ev.Node = out
	return nil
}

// joinReverts tells a deployment that failed with an auto-revert which
// version the job now runs as. Nomad writes the failed deployment and the
// job registered again with the old spec in one raft entry (the Job of a
// DeploymentStatusUpdate or DeploymentAllocHealth request), so both are in
// the same frame: a Job event, named after the request, at the new version.
func joinReverts(events []Event) {
	for i := range events {
		d := events[i].Deployment
		if d == nil || d.Status != "failed" || !strings.Contains(d.StatusDescription, "rolling back to job version") {
			continue
		}
		for _, e := range events {
			if j := e.Job; j != nil && j.ID == d.Job && e.Namespace == events[i].Namespace {
				d.RevertedAs = j.Version
			}
		}
	}
}
