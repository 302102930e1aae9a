package watchers

// The decoder Vigie had before fastjson, on encoding/json, kept as the
// reference of the differential tests: the new one must skip the same
// lines and events and give the same Events.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// legacyNomadFrame is one line of the stream: the events of one raft index.
// Events stay raw so that one bad event does not hide the frame's index.
type legacyNomadFrame struct {
	Index  uint64
	Events []json.RawMessage
}

// legacyNomadEvent is api.Event with the Namespace the api struct drops; Payload
// has a single key, the topic.
type legacyNomadEvent struct {
	Topic     string
	Type      string
	Key       string
	Namespace string
	Payload   map[string]json.RawMessage
}

type legacyNomadAlloc struct {
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

type legacyNomadDeployment struct {
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

type legacyNomadEval struct {
	ID, JobID, Status, TriggeredBy, StatusDescription, BlockedEval string
	FailedTGAllocs                                                 map[string]*struct {
		CoalescedFailures                                          int
		NodesEvaluated, NodesFiltered, NodesExhausted, NodesInPool int
		DimensionExhausted, ConstraintFiltered, ClassExhausted     map[string]int
		QuotaExhausted                                             []string
	}
	ModifyTime int64 // Unix nanoseconds
}

type legacyNomadJob struct {
	ID, Type, Status, ParentID string
	Stop                       bool
	Version                    uint64
	JobModifyIndex             uint64
	SubmitTime                 int64 // Unix nanoseconds
}

type legacyNomadNode struct {
	ID, Name, Status, SchedulingEligibility string
	DrainStrategy                           *struct{}
	Events                                  []*struct {
		Message     string
		Timestamp   time.Time
		CreateIndex uint64
	}
}

// legacyDecodeNomadLine decodes a line of the stream. A heartbeat is "{}".
func legacyDecodeNomadLine(line []byte) (f legacyNomadFrame, heartbeat bool, err error) {
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

// legacyTranslateNomad turns one event of the frame at index into an Event, or
// says why it cannot (a *nomadSkip).
func legacyTranslateNomad(raw json.RawMessage, index uint64) (Event, error) {
	var e legacyNomadEvent
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
	if legacyIsNull(payload) && e.Topic == "Job" && (e.Type == "JobDeregistered" || e.Type == "JobBatchDeregistered") {
		// A purge can leave no job to send.
		if e.Key == "" {
			return Event{}, skipf("payload Job", "%s without job or key", e.Type)
		}
		ev.Job = &Job{ID: e.Key, Purged: true}
		return ev, nil
	}
	if legacyIsNull(payload) {
		return Event{}, skipf("payload "+e.Topic, "%s event %s without a %s payload", e.Topic, e.Type, e.Topic)
	}
	var err error
	switch e.Topic {
	case "Allocation":
		err = legacyTranslateAlloc(payload, &ev)
	case "Deployment":
		err = legacyTranslateDeployment(payload, &ev)
	case "Evaluation":
		err = legacyTranslateEval(payload, &ev)
	case "Job":
		var deleted bool
		if d, ok := e.Payload["Deleted"]; ok {
			if json.Unmarshal(d, &deleted) != nil {
				deleted = false
			}
		}
		err = legacyTranslateJob(payload, deleted, &ev)
	case "Node":
		err = legacyTranslateNode(payload, &ev)
	}
	if err != nil {
		return Event{}, skipf("payload "+e.Topic, "%s payload of %s: %v", e.Topic, e.Type, err)
	}
	return ev, nil
}

func legacyIsNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func legacyTranslateAlloc(raw json.RawMessage, ev *Event) error {
	var a legacyNomadAlloc
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

func legacyTranslateDeployment(raw json.RawMessage, ev *Event) error {
	var d legacyNomadDeployment
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

func legacyTranslateEval(raw json.RawMessage, ev *Event) error {
	var e legacyNomadEval
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

func legacyTranslateJob(raw json.RawMessage, deleted bool, ev *Event) error {
	var j legacyNomadJob
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

func legacyTranslateNode(raw json.RawMessage, ev *Event) error {
	var n legacyNomadNode
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
