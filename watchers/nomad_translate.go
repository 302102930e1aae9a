package watchers

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// A line of the stream is parsed once (fastjson), then each event is read
// from the parsed tree: its Topic, Type, Key and Namespace first, and its
// payload only for the topics and types translated. The wire types below
// mirror github.com/hashicorp/nomad/api (same field names and types) but
// hold only what Vigie translates: a change of type in an unrelated field
// then cannot cost an event, and a several-KB Node payload is not read
// beyond the fields named here.
//
// The decoding reproduces encoding/json's (which decoded the stream before)
// exactly, so that the same lines and events are skipped and the same
// Events come out: a line must be valid JSON as a whole; field names match
// case-insensitively as encoding/json folds them, a field given twice keeps
// its last value (objects and maps given twice are merged, arrays
// overwrite the previous one element by element); null leaves a scalar as
// it is and empties a pointer, map or slice; a value of the wrong type for
// a field read costs its event; strings are read as encoding/json unquotes
// them (invalid UTF-8 and lone surrogates become U+FFFD). One deviation:
// fastjson refuses lines nested deeper than 300 levels, encoding/json
// 10000 (the capture nests 14 levels at most).

// nomadAlloc is api.Allocation, as far as translated.
type nomadAlloc struct {
	ID, Name, JobID, TaskGroup, NodeID, NodeName string
	ClientStatus, ClientDescription              string
	DesiredStatus, DesiredDescription            string
	DeploymentID                                 string
	DeploymentStatus                             *nomadAllocDeploymentStatus
	FollowupEvalID                               string
	RescheduleTracker                            *nomadRescheduleTracker
	TaskStates                                   jsonMap[nomadTaskState]
	ModifyTime                                   int64 // Unix nanoseconds
}

type nomadAllocDeploymentStatus struct {
	Healthy *bool
	Canary  bool
}

// nomadRescheduleTracker counts its Events, of which nothing else is read.
type nomadRescheduleTracker struct{ Events int }

type nomadTaskState struct {
	State    string
	Failed   bool
	Restarts uint64
	Events   []*nomadTaskEvent
}

// nomadTaskEvent holds of the Details map only the values read.
type nomadTaskEvent struct {
	Type                    string
	Time                    int64 // Unix nanoseconds
	DisplayMessage, Message string
	ExitCode, Signal        int
	// Details["exit_code"], Details["signal"], Details["oom_killed"]
	DetailExitCode, DetailSignal, DetailOOMKilled string
}

type nomadDeployment struct {
	ID, JobID                 string
	JobVersion                uint64
	Status, StatusDescription string
	TaskGroups                jsonMap[nomadDeploymentGroup]
	ModifyTime                int64 // Unix nanoseconds; 0 on status updates in Nomad 1.11
}

type nomadDeploymentGroup struct {
	DesiredTotal, DesiredCanaries                int
	PlacedAllocs, HealthyAllocs, UnhealthyAllocs int
	AutoRevert, Promoted                         bool
}

type nomadEval struct {
	ID, JobID, Status, TriggeredBy, StatusDescription, BlockedEval string
	FailedTGAllocs                                                 jsonMap[nomadAllocMetric]
	ModifyTime                                                     int64 // Unix nanoseconds
}

type nomadAllocMetric struct {
	CoalescedFailures                                          int
	NodesEvaluated, NodesFiltered, NodesExhausted, NodesInPool int
	DimensionExhausted, ConstraintFiltered, ClassExhausted     map[string]int
	QuotaExhausted                                             []string
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
	Events                                  []*nomadNodeEvent
}

type nomadNodeEvent struct {
	Message     string
	Timestamp   time.Time
	CreateIndex uint64
}

// jsonMap is a JSON object read as encoding/json reads a map[string]*T:
// its entries sorted by key, a key given twice keeping its last value, a
// null value giving a nil entry.
type jsonMap[T any] []jsonEntry[T]

type jsonEntry[T any] struct {
	Key string
	Val *T
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

// nomadTypeNames maps each type to itself, so that an Event's Type is not
// a new string each time.
var nomadTypeNames = func() map[string]string {
	m := make(map[string]string, len(nomadTypes))
	for t := range nomadTypes {
		m[t] = t
	}
	return m
}()

// nomadSkip is why an event or a line was skipped; kind groups the log lines.
type nomadSkip struct {
	kind string
	msg  string
}

func (e *nomadSkip) Error() string { return e.msg }

func skipf(kind, format string, args ...any) error {
	return &nomadSkip{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// nomadDecoder decodes the lines of a stream. Its parser's buffers are
// reused from line to line, so it must not be shared between goroutines,
// and what decodeLine returns is valid until its next call.
type nomadDecoder struct {
	p        fastjson.Parser
	norm     []byte            // the line with its lone surrogates replaced, when it has any
	payloads []*fastjson.Value // the Payload values of the event being translated
	err      error             // the first error reading the current item
	interned map[string]string // short strings already copied out of the parser
	scratch  []byte
}

// nomadParserKeep bounds the line size whose buffers are kept for the next
// line (fastjson's parser takes several times the line's size).
const nomadParserKeep = 1 << 20

var (
	errNotObject = errors.New("not a JSON object")
	errNoIndex   = errors.New("frame with events but no index")
	errNoID      = errors.New("no ID")
)

// decodeLine decodes a line of the stream: a heartbeat ("{}"), or the
// frame's index and its events, to translate with translate. One bad event
// does not make the line undecodable, so that it does not hide the
// frame's index and the other events.
func (d *nomadDecoder) decodeLine(line []byte) (index uint64, events []*fastjson.Value, heartbeat bool, err error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return 0, nil, false, errNotObject
	}
	if len(line) > nomadParserKeep {
		defer func() { d.p = fastjson.Parser{} }()
	}
	// fastjson's parser checks the structure, leniently as for the tokens:
	// the rest of encoding/json's checks, in one pass.
	surrogates, err := checkJSONTokens(line)
	if err != nil {
		return 0, nil, false, err
	}
	if surrogates {
		d.norm = replaceLoneSurrogates(d.norm[:0], line)
		line = d.norm
	}
	v, err := d.p.ParseBytes(line)
	if cap(d.norm) > nomadParserKeep {
		d.norm = nil // copied by the parser
	}
	if err != nil {
		return 0, nil, false, err
	}
	o, _ := v.Object()
	d.err = nil
	o.Visit(func(k []byte, v *fastjson.Value) {
		switch nomadFrameFields.match(k) {
		case "Index":
			d.uint64(v, &index, "Index")
		case "Events":
			switch v.Type() {
			case fastjson.TypeNull:
				events = nil
			case fastjson.TypeArray:
				events, _ = v.Array()
			default:
				d.fail(v, "[]Event", "Events")
			}
		}
	})
	if d.err != nil {
		return 0, nil, false, d.err
	}
	if index == 0 {
		if len(events) > 0 {
			return 0, nil, false, errNoIndex
		}
		return 0, nil, true, nil
	}
	return index, events, false, nil
}

// translate turns one event of the frame at index into an Event, or says
// why it cannot (a *nomadSkip).
func (d *nomadDecoder) translate(v *fastjson.Value, index uint64) (Event, error) {
	var topicV, typeV, keyV, nsV *fastjson.Value
	d.payloads = d.payloads[:0]
	d.err = nil
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(k []byte, v *fastjson.Value) {
			if d.err != nil {
				return
			}
			switch nomadEventFields.match(k) {
			case "Topic":
				d.strValue(v, &topicV, "Topic")
			case "Type":
				d.strValue(v, &typeV, "Type")
			case "Key":
				d.strValue(v, &keyV, "Key")
			case "Namespace":
				d.strValue(v, &nsV, "Namespace")
			case "Payload":
				switch v.Type() {
				case fastjson.TypeNull, fastjson.TypeObject:
					d.payloads = append(d.payloads, v)
				default:
					d.fail(v, "map[string]json.RawMessage", "Payload")
				}
			}
		})
	default:
		d.fail(v, "nomadEvent", "")
	}
	if d.err != nil {
		return Event{}, skipf("malformed event", "malformed event: %v", d.err)
	}

	var topic string
	topicB := stringBytes(topicV)
	for _, t := range nomadTopics {
		if string(topicB) == t {
			topic = t
			break
		}
	}
	if topic == "" {
		t := jsonString(topicB)
		return Event{}, skipf("topic "+t, "unknown topic %q", t)
	}
	typ, ok := nomadTypeNames[string(stringBytes(typeV))]
	if !ok {
		t := jsonString(stringBytes(typeV))
		return Event{}, skipf("type "+t, "unknown event type %q (topic %s)", t, topic)
	}
	ev := Event{Source: "nomad", Topic: topic, Type: typ, Index: index, Namespace: d.intern(stringBytes(nsV))}

	// Payload is a map of one key, the topic (and Deleted for a Job).
	var payload, deletedV *fastjson.Value
	for _, p := range d.payloads {
		if p.Type() == fastjson.TypeNull {
			payload, deletedV = nil, nil
			continue
		}
		o, _ := p.Object()
		o.Visit(func(k []byte, v *fastjson.Value) {
			switch string(k) {
			case topic:
				payload = v
			case "Deleted":
				deletedV = v
			}
		})
	}
	null := payload == nil || payload.Type() == fastjson.TypeNull
	if null && topic == "Job" && (typ == "JobDeregistered" || typ == "JobBatchDeregistered") {
		// A purge can leave no job to send.
		key := jsonString(stringBytes(keyV))
		if key == "" {
			return Event{}, skipf("payload Job", "%s without job or key", typ)
		}
		ev.Job = &Job{ID: key, Purged: true}
		return ev, nil
	}
	if null {
		return Event{}, skipf("payload "+topic, "%s event %s without a %s payload", topic, typ, topic)
	}
	var err error
	switch topic {
	case "Allocation":
		err = d.translateAlloc(payload, &ev)
	case "Deployment":
		err = d.translateDeployment(payload, &ev)
	case "Evaluation":
		err = d.translateEval(payload, &ev)
	case "Job":
		deleted := deletedV != nil && deletedV.Type() == fastjson.TypeTrue
		err = d.translateJob(payload, deleted, &ev)
	case "Node":
		err = d.translateNode(payload, &ev)
	}
	if err != nil {
		return Event{}, skipf("payload "+topic, "%s payload of %s: %v", topic, typ, err)
	}
	return ev, nil
}

func unixNano(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func (d *nomadDecoder) translateAlloc(v *fastjson.Value, ev *Event) error {
	var a nomadAlloc
	d.err = nil
	d.alloc(v, &a)
	if d.err != nil {
		return d.err
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
		Rescheduled:  a.FollowupEvalID != "" || a.RescheduleTracker != nil && a.RescheduleTracker.Events > 0,
	}
	if ds := a.DeploymentStatus; ds != nil {
		out.Canary = ds.Canary
		if ds.Healthy != nil {
			healthy := *ds.Healthy
			out.Healthy = &healthy
		}
	}
	for _, e := range a.TaskStates {
		ts := e.Val
		if ts == nil {
			continue
		}
		t := Task{Name: e.Key, State: ts.State, Failed: ts.Failed, Restarts: int(min(ts.Restarts, 1<<31-1))}
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
				ExitCode:  detailInt(te.ExitCode, te.DetailExitCode),
				Signal:    detailInt(te.Signal, te.DetailSignal),
				OOMKilled: te.DetailOOMKilled == "true",
			})
		}
		out.Tasks = append(out.Tasks, t)
	}
	// Sorted by name already (jsonMap).
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

func (d *nomadDecoder) translateDeployment(v *fastjson.Value, ev *Event) error {
	var dep nomadDeployment
	d.err = nil
	d.deployment(v, &dep)
	if d.err != nil {
		return d.err
	}
	if dep.ID == "" {
		return errNoID
	}
	out := &Deployment{ID: dep.ID, Job: dep.JobID, JobVersion: dep.JobVersion, Status: dep.Status, StatusDescription: dep.StatusDescription}
	for _, e := range dep.TaskGroups {
		g := e.Val
		if g == nil {
			continue
		}
		out.Groups = append(out.Groups, DeploymentGroup{
			Name: e.Key, Desired: g.DesiredTotal, DesiredCanaries: g.DesiredCanaries,
			Placed: g.PlacedAllocs, Healthy: g.HealthyAllocs, Unhealthy: g.UnhealthyAllocs,
			AutoRevert: g.AutoRevert, Promoted: g.Promoted,
		})
	}
	ev.Deployment = out
	ev.Time = unixNano(dep.ModifyTime)
	return nil
}

func (d *nomadDecoder) translateEval(v *fastjson.Value, ev *Event) error {
	var e nomadEval
	d.err = nil
	d.eval(v, &e)
	if d.err != nil {
		return d.err
	}
	if e.ID == "" {
		return errNoID
	}
	out := &Eval{ID: e.ID, Job: e.JobID, Status: e.Status, TriggeredBy: e.TriggeredBy, StatusDescription: e.StatusDescription, BlockedEval: e.BlockedEval}
	for _, f := range e.FailedTGAllocs {
		m := f.Val
		if m == nil {
			continue
		}
		out.Failures = append(out.Failures, PlacementFailure{
			Group: f.Key, Unplaced: 1 + m.CoalescedFailures, NodesEvaluated: m.NodesEvaluated, NodesFiltered: m.NodesFiltered,
			NodesExhausted: m.NodesExhausted, NodesInPool: m.NodesInPool,
			DimensionExhausted: m.DimensionExhausted, ConstraintFiltered: m.ConstraintFiltered,
			ClassExhausted: m.ClassExhausted, QuotaExhausted: m.QuotaExhausted,
		})
	}
	ev.Eval = out
	ev.Time = unixNano(e.ModifyTime)
	return nil
}

func (d *nomadDecoder) translateJob(v *fastjson.Value, deleted bool, ev *Event) error {
	var j nomadJob
	d.err = nil
	d.job(v, &j)
	if d.err != nil {
		return d.err
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

func (d *nomadDecoder) translateNode(v *fastjson.Value, ev *Event) error {
	var n nomadNode
	d.err = nil
	d.node(v, &n)
	if d.err != nil {
		return d.err
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

// The readers of the wire types. Each reads a value as encoding/json would
// into the field, recording the first error in d.err, after which the
// rest is not read.

var (
	nomadFrameFields = newJSONFields("Index", "Events")
	nomadEventFields = newJSONFields("Topic", "Type", "Key", "Namespace", "Payload")
	nomadAllocFields = newJSONFields("ID", "Name", "JobID", "TaskGroup", "NodeID", "NodeName",
		"ClientStatus", "ClientDescription", "DesiredStatus", "DesiredDescription", "DeploymentID",
		"DeploymentStatus", "FollowupEvalID", "RescheduleTracker", "TaskStates", "ModifyTime")
	nomadAllocDSFields         = newJSONFields("Healthy", "Canary")
	nomadRescheduleFields      = newJSONFields("Events")
	nomadTaskStateFields       = newJSONFields("State", "Failed", "Restarts", "Events")
	nomadTaskEventFields       = newJSONFields("Type", "Time", "DisplayMessage", "Message", "Details", "ExitCode", "Signal")
	nomadDeploymentFields      = newJSONFields("ID", "JobID", "JobVersion", "Status", "StatusDescription", "TaskGroups", "ModifyTime")
	nomadDeploymentGroupFields = newJSONFields("DesiredTotal", "DesiredCanaries", "PlacedAllocs", "HealthyAllocs", "UnhealthyAllocs", "AutoRevert", "Promoted")
	nomadEvalFields            = newJSONFields("ID", "JobID", "Status", "TriggeredBy", "StatusDescription", "BlockedEval", "FailedTGAllocs", "ModifyTime")
	nomadAllocMetricFields     = newJSONFields("CoalescedFailures", "NodesEvaluated", "NodesFiltered", "NodesExhausted", "NodesInPool",
		"DimensionExhausted", "ConstraintFiltered", "ClassExhausted", "QuotaExhausted")
	nomadJobFields       = newJSONFields("ID", "Type", "Status", "ParentID", "Stop", "Version", "JobModifyIndex", "SubmitTime")
	nomadNodeFields      = newJSONFields("ID", "Name", "Status", "SchedulingEligibility", "DrainStrategy", "Events")
	nomadNodeEventFields = newJSONFields("Message", "Timestamp", "CreateIndex")
	nomadNoFields        = newJSONFields()
)

func (d *nomadDecoder) alloc(v *fastjson.Value, a *nomadAlloc) {
	d.object(v, "nomadAlloc", nomadAllocFields, func(name string, v *fastjson.Value) {
		switch name {
		case "ID":
			d.str(v, &a.ID, name)
		case "Name":
			d.str(v, &a.Name, name)
		case "JobID":
			d.str(v, &a.JobID, name)
		case "TaskGroup":
			d.str(v, &a.TaskGroup, name)
		case "NodeID":
			d.str(v, &a.NodeID, name)
		case "NodeName":
			d.str(v, &a.NodeName, name)
		case "ClientStatus":
			d.str(v, &a.ClientStatus, name)
		case "ClientDescription":
			d.str(v, &a.ClientDescription, name)
		case "DesiredStatus":
			d.str(v, &a.DesiredStatus, name)
		case "DesiredDescription":
			d.str(v, &a.DesiredDescription, name)
		case "DeploymentID":
			d.str(v, &a.DeploymentID, name)
		case "DeploymentStatus":
			jsonPtr(d, v, &a.DeploymentStatus, func(v *fastjson.Value, s *nomadAllocDeploymentStatus) {
				d.object(v, "AllocDeploymentStatus", nomadAllocDSFields, func(name string, v *fastjson.Value) {
					switch name {
					case "Healthy":
						d.boolPtr(v, &s.Healthy, name)
					case "Canary":
						d.bool(v, &s.Canary, name)
					}
				})
			})
		case "FollowupEvalID":
			d.str(v, &a.FollowupEvalID, name)
		case "RescheduleTracker":
			jsonPtr(d, v, &a.RescheduleTracker, func(v *fastjson.Value, t *nomadRescheduleTracker) {
				d.object(v, "RescheduleTracker", nomadRescheduleFields, func(name string, v *fastjson.Value) {
					switch v.Type() {
					case fastjson.TypeNull:
						t.Events = 0
					case fastjson.TypeArray:
						events, _ := v.Array()
						t.Events = len(events)
					default:
						d.fail(v, "[]*RescheduleEvent", name)
					}
				})
			})
		case "TaskStates":
			jsonMapOf(d, v, &a.TaskStates, name, d.taskState)
		case "ModifyTime":
			d.int64(v, &a.ModifyTime, name)
		}
	})
}

func (d *nomadDecoder) taskState(v *fastjson.Value, ts *nomadTaskState) {
	d.object(v, "TaskState", nomadTaskStateFields, func(name string, v *fastjson.Value) {
		switch name {
		case "State":
			d.str(v, &ts.State, name)
		case "Failed":
			d.bool(v, &ts.Failed, name)
		case "Restarts":
			d.uint64(v, &ts.Restarts, name)
		case "Events":
			jsonSlice(d, v, &ts.Events, name, func(v *fastjson.Value, e **nomadTaskEvent) {
				jsonPtr(d, v, e, d.taskEvent)
			})
		}
	})
}

func (d *nomadDecoder) taskEvent(v *fastjson.Value, e *nomadTaskEvent) {
	d.object(v, "TaskEvent", nomadTaskEventFields, func(name string, v *fastjson.Value) {
		switch name {
		case "Type":
			d.str(v, &e.Type, name)
		case "Time":
			d.int64(v, &e.Time, name)
		case "DisplayMessage":
			d.str(v, &e.DisplayMessage, name)
		case "Message":
			d.str(v, &e.Message, name)
		case "ExitCode":
			d.int(v, &e.ExitCode, name)
		case "Signal":
			d.int(v, &e.Signal, name)
		case "Details":
			switch v.Type() {
			case fastjson.TypeNull:
				e.DetailExitCode, e.DetailSignal, e.DetailOOMKilled = "", "", ""
			case fastjson.TypeObject:
				o, _ := v.Object()
				o.Visit(func(k []byte, v *fastjson.Value) {
					var s string
					d.str(v, &s, name)
					switch string(k) {
					case "exit_code":
						e.DetailExitCode = s
					case "signal":
						e.DetailSignal = s
					case "oom_killed":
						e.DetailOOMKilled = s
					}
				})
			default:
				d.fail(v, "map[string]string", name)
			}
		}
	})
}

func (d *nomadDecoder) deployment(v *fastjson.Value, dep *nomadDeployment) {
	d.object(v, "nomadDeployment", nomadDeploymentFields, func(name string, v *fastjson.Value) {
		switch name {
		case "ID":
			d.str(v, &dep.ID, name)
		case "JobID":
			d.str(v, &dep.JobID, name)
		case "JobVersion":
			d.uint64(v, &dep.JobVersion, name)
		case "Status":
			d.str(v, &dep.Status, name)
		case "StatusDescription":
			d.str(v, &dep.StatusDescription, name)
		case "TaskGroups":
			jsonMapOf(d, v, &dep.TaskGroups, name, func(v *fastjson.Value, g *nomadDeploymentGroup) {
				d.object(v, "DeploymentState", nomadDeploymentGroupFields, func(name string, v *fastjson.Value) {
					switch name {
					case "DesiredTotal":
						d.int(v, &g.DesiredTotal, name)
					case "DesiredCanaries":
						d.int(v, &g.DesiredCanaries, name)
					case "PlacedAllocs":
						d.int(v, &g.PlacedAllocs, name)
					case "HealthyAllocs":
						d.int(v, &g.HealthyAllocs, name)
					case "UnhealthyAllocs":
						d.int(v, &g.UnhealthyAllocs, name)
					case "AutoRevert":
						d.bool(v, &g.AutoRevert, name)
					case "Promoted":
						d.bool(v, &g.Promoted, name)
					}
				})
			})
		case "ModifyTime":
			d.int64(v, &dep.ModifyTime, name)
		}
	})
}

func (d *nomadDecoder) eval(v *fastjson.Value, e *nomadEval) {
	d.object(v, "nomadEval", nomadEvalFields, func(name string, v *fastjson.Value) {
		switch name {
		case "ID":
			d.str(v, &e.ID, name)
		case "JobID":
			d.str(v, &e.JobID, name)
		case "Status":
			d.str(v, &e.Status, name)
		case "TriggeredBy":
			d.str(v, &e.TriggeredBy, name)
		case "StatusDescription":
			d.str(v, &e.StatusDescription, name)
		case "BlockedEval":
			d.str(v, &e.BlockedEval, name)
		case "FailedTGAllocs":
			jsonMapOf(d, v, &e.FailedTGAllocs, name, d.allocMetric)
		case "ModifyTime":
			d.int64(v, &e.ModifyTime, name)
		}
	})
}

func (d *nomadDecoder) allocMetric(v *fastjson.Value, m *nomadAllocMetric) {
	d.object(v, "AllocationMetric", nomadAllocMetricFields, func(name string, v *fastjson.Value) {
		switch name {
		case "CoalescedFailures":
			d.int(v, &m.CoalescedFailures, name)
		case "NodesEvaluated":
			d.int(v, &m.NodesEvaluated, name)
		case "NodesFiltered":
			d.int(v, &m.NodesFiltered, name)
		case "NodesExhausted":
			d.int(v, &m.NodesExhausted, name)
		case "NodesInPool":
			d.int(v, &m.NodesInPool, name)
		case "DimensionExhausted":
			d.intMap(v, &m.DimensionExhausted, name)
		case "ConstraintFiltered":
			d.intMap(v, &m.ConstraintFiltered, name)
		case "ClassExhausted":
			d.intMap(v, &m.ClassExhausted, name)
		case "QuotaExhausted":
			jsonSlice(d, v, &m.QuotaExhausted, name, func(v *fastjson.Value, s *string) {
				d.str(v, s, name)
			})
		}
	})
}

func (d *nomadDecoder) job(v *fastjson.Value, j *nomadJob) {
	d.object(v, "nomadJob", nomadJobFields, func(name string, v *fastjson.Value) {
		switch name {
		case "ID":
			d.str(v, &j.ID, name)
		case "Type":
			d.str(v, &j.Type, name)
		case "Status":
			d.str(v, &j.Status, name)
		case "ParentID":
			d.str(v, &j.ParentID, name)
		case "Stop":
			d.bool(v, &j.Stop, name)
		case "Version":
			d.uint64(v, &j.Version, name)
		case "JobModifyIndex":
			d.uint64(v, &j.JobModifyIndex, name)
		case "SubmitTime":
			d.int64(v, &j.SubmitTime, name)
		}
	})
}

func (d *nomadDecoder) node(v *fastjson.Value, n *nomadNode) {
	d.object(v, "nomadNode", nomadNodeFields, func(name string, v *fastjson.Value) {
		switch name {
		case "ID":
			d.str(v, &n.ID, name)
		case "Name":
			d.str(v, &n.Name, name)
		case "Status":
			d.str(v, &n.Status, name)
		case "SchedulingEligibility":
			d.str(v, &n.SchedulingEligibility, name)
		case "DrainStrategy":
			jsonPtr(d, v, &n.DrainStrategy, func(v *fastjson.Value, _ *struct{}) {
				d.object(v, "DrainStrategy", nomadNoFields, nil)
			})
		case "Events":
			jsonSlice(d, v, &n.Events, name, func(v *fastjson.Value, e **nomadNodeEvent) {
				jsonPtr(d, v, e, func(v *fastjson.Value, e *nomadNodeEvent) {
					d.object(v, "NodeEvent", nomadNodeEventFields, func(name string, v *fastjson.Value) {
						switch name {
						case "Message":
							d.str(v, &e.Message, name)
						case "Timestamp":
							d.time(v, &e.Timestamp)
						case "CreateIndex":
							d.uint64(v, &e.CreateIndex, name)
						}
					})
				})
			})
		}
	})
}

// fail records a value of the wrong type for a field.
func (d *nomadDecoder) fail(v *fastjson.Value, goType, field string) {
	if d.err != nil {
		return
	}
	kind := "bool"
	switch v.Type() {
	case fastjson.TypeObject, fastjson.TypeArray, fastjson.TypeString, fastjson.TypeNumber, fastjson.TypeNull:
		kind = v.Type().String()
	}
	if field != "" {
		d.err = fmt.Errorf("json: cannot unmarshal %s into Go struct field %s of type %s", kind, field, goType)
	} else {
		d.err = fmt.Errorf("json: cannot unmarshal %s into Go value of type %s", kind, goType)
	}
}

// object reads the fields of a struct from v, calling f for each key that
// names one of fields (null leaves the struct as it is).
func (d *nomadDecoder) object(v *fastjson.Value, goType string, fields *jsonFields, f func(name string, v *fastjson.Value)) {
	switch v.Type() {
	case fastjson.TypeNull:
		return
	case fastjson.TypeObject:
	default:
		d.fail(v, goType, "")
		return
	}
	if f == nil {
		return
	}
	o, _ := v.Object()
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		if name := fields.match(k); name != "" {
			f(name, v)
		}
	})
}

// jsonPtr reads a *T: null makes it nil, an object is read into the T it
// points to, a new one if nil.
func jsonPtr[T any](d *nomadDecoder, v *fastjson.Value, p **T, read func(*fastjson.Value, *T)) {
	if v.Type() == fastjson.TypeNull {
		*p = nil
		return
	}
	if *p == nil {
		*p = new(T)
	}
	read(v, *p)
}

// jsonSlice reads a []T as encoding/json does: null makes it nil, an array
// is read element by element over the slice's current elements (which a
// field given twice has), then the slice is cut to the array's length.
func jsonSlice[T any](d *nomadDecoder, v *fastjson.Value, s *[]T, field string, read func(*fastjson.Value, *T)) {
	switch v.Type() {
	case fastjson.TypeNull:
		*s = nil
		return
	case fastjson.TypeArray:
	default:
		d.fail(v, "slice", field)
		return
	}
	a, _ := v.Array()
	if len(a) == 0 {
		*s = []T{}
		return
	}
	x := *s
	for i, v := range a {
		if d.err != nil {
			return
		}
		if i >= cap(x) {
			x = slices.Grow(x, 1)
		}
		if i >= len(x) {
			x = x[:i+1]
		}
		read(v, &x[i])
	}
	*s = x[:len(a)]
}

// jsonMapOf reads a map[string]*T into m: null empties it, an object adds
// its entries, each read into a new T (nil for null).
func jsonMapOf[T any](d *nomadDecoder, v *fastjson.Value, m *jsonMap[T], field string, read func(*fastjson.Value, *T)) {
	switch v.Type() {
	case fastjson.TypeNull:
		*m = (*m)[:0]
		return
	case fastjson.TypeObject:
	default:
		d.fail(v, "map", field)
		return
	}
	o, _ := v.Object()
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		e := jsonEntry[T]{Key: jsonString(k)}
		switch v.Type() {
		case fastjson.TypeNull:
		case fastjson.TypeObject:
			e.Val = new(T)
			read(v, e.Val)
		default:
			d.fail(v, "struct", field)
		}
		*m = append(*m, e)
	})
	if len(*m) > 1 {
		// Sorted by key, the last of equal keys kept.
		slices.SortStableFunc(*m, func(a, b jsonEntry[T]) int { return cmp.Compare(a.Key, b.Key) })
		out := (*m)[:0]
		for i, e := range *m {
			if i+1 < len(*m) && (*m)[i+1].Key == e.Key {
				continue
			}
			out = append(out, e)
		}
		*m = out
	}
}

// intMap reads a map[string]int: null makes it nil, an object adds its
// entries (0 for null).
func (d *nomadDecoder) intMap(v *fastjson.Value, m *map[string]int, field string) {
	switch v.Type() {
	case fastjson.TypeNull:
		*m = nil
		return
	case fastjson.TypeObject:
	default:
		d.fail(v, "map[string]int", field)
		return
	}
	if *m == nil {
		*m = map[string]int{}
	}
	o, _ := v.Object()
	o.Visit(func(k []byte, v *fastjson.Value) {
		if d.err != nil {
			return
		}
		var n int
		d.int(v, &n, field)
		(*m)[jsonString(k)] = n
	})
}

// strValue keeps a string value for later (null leaves it as it is).
func (d *nomadDecoder) strValue(v *fastjson.Value, dst **fastjson.Value, field string) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeString:
		*dst = v
	default:
		d.fail(v, "string", field)
	}
}

func (d *nomadDecoder) str(v *fastjson.Value, dst *string, field string) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		*dst = d.intern(b)
	default:
		d.fail(v, "string", field)
	}
}

func (d *nomadDecoder) bool(v *fastjson.Value, dst *bool, field string) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeTrue:
		*dst = true
	case fastjson.TypeFalse:
		*dst = false
	default:
		d.fail(v, "bool", field)
	}
}

func (d *nomadDecoder) boolPtr(v *fastjson.Value, dst **bool, field string) {
	switch v.Type() {
	case fastjson.TypeNull:
		*dst = nil
	case fastjson.TypeTrue, fastjson.TypeFalse:
		if *dst == nil {
			*dst = new(bool)
		}
		**dst = v.Type() == fastjson.TypeTrue
	default:
		d.fail(v, "bool", field)
	}
}

func (d *nomadDecoder) uint64(v *fastjson.Value, dst *uint64, field string) {
	integer(d, v, dst, field, "uint64", v.Uint64)
}

func (d *nomadDecoder) int64(v *fastjson.Value, dst *int64, field string) {
	integer(d, v, dst, field, "int64", v.Int64)
}

func (d *nomadDecoder) int(v *fastjson.Value, dst *int, field string) {
	integer(d, v, dst, field, "int", v.Int)
}

// integer reads a JSON integer with parse (fastjson's integer parsing is
// strconv's); null leaves dst as it is.
func integer[T any](d *nomadDecoder, v *fastjson.Value, dst *T, field, kind string, parse func() (T, error)) {
	switch v.Type() {
	case fastjson.TypeNull:
	case fastjson.TypeNumber:
		n, err := parse()
		if err != nil {
			d.fail(v, kind, field)
			return
		}
		*dst = n
	default:
		d.fail(v, kind, field)
	}
}

// time reads a time.Time with its own UnmarshalJSON, which takes the raw
// JSON: v must not have been read as a string before, for fastjson's
// MarshalTo to give the string as it came.
func (d *nomadDecoder) time(v *fastjson.Value, dst *time.Time) {
	d.scratch = v.MarshalTo(d.scratch[:0])
	if err := dst.UnmarshalJSON(d.scratch); err != nil && d.err == nil {
		d.err = err
	}
}

// nomadInternMax bounds the strings interned and their length: statuses,
// types, names and namespaces repeat from event to event, IDs (36 bytes)
// do not.
const (
	nomadInternMax    = 4096
	nomadInternMaxLen = 32
)

// intern returns b as a string: a copy, shared with the previous ones for
// short strings.
func (d *nomadDecoder) intern(b []byte) string {
	if len(b) > nomadInternMaxLen || !utf8.Valid(b) {
		return jsonString(b)
	}
	if s, ok := d.interned[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.interned == nil {
		d.interned = make(map[string]string)
	}
	if len(d.interned) < nomadInternMax {
		d.interned[s] = s
	}
	return s
}

// stringBytes returns the content of a string value (nil for nil).
func stringBytes(v *fastjson.Value) []byte {
	if v == nil {
		return nil
	}
	b, _ := v.StringBytes()
	return b
}

// jsonString copies a string out of the parser, each byte of invalid
// UTF-8 replaced by U+FFFD as encoding/json does.
func jsonString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return string(out)
}

// checkJSONTokens checks what fastjson's parser lets through and
// encoding/json does not: control characters and bad escapes in strings,
// numbers outside JSON's grammar (fastjson takes any run of digits, signs,
// dots and exponents, NaN and Inf), other words than true, false and null,
// other characters outside strings than JSON's whitespace and punctuation.
// With fastjson's check of the structure, a line is valid JSON (to
// encoding/json) if and only if it passes both. It also reports whether a
// string has a \u escape of a surrogate.
func checkJSONTokens(b []byte) (surrogates bool, err error) {
	// Control characters are rare: JSON allows \t, \n and \r outside
	// strings only, which the slow path tells.
	if hasControlByte(b) {
		return checkJSONTokensSlow(b)
	}
	// Backslashes appear in strings only (the parser refuses them
	// elsewhere), so escapes can be checked from the start of the line.
	escapes := false
	for i := bytes.IndexByte(b, '\\'); i >= 0; {
		escapes = true
		n, s, err := checkJSONEscape(b, i)
		if err != nil {
			return false, err
		}
		surrogates = surrogates || s
		i += n
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			break
		}
		i += j
	}
	for i := 0; i < len(b); {
		switch c := b[i]; jsonByteClass[c] &^ jsonNumberPart {
		case jsonQuote:
			// The string ends at the first quote after an even run of
			// backslashes (escapes are valid). Most are short.
			j := i + 1
			for {
				k := nextQuote(b, j)
				if k < 0 {
					return false, errors.New("unterminated string")
				}
				n := 0
				for escapes && b[k-1-n] == '\\' {
					n++
				}
				if n%2 == 0 {
					i = k + 1
					break
				}
				j = k + 1
			}
		case jsonPunct:
			i++
			for i < len(b) && jsonByteClass[b[i]] == jsonPunct {
				i++
			}
		case jsonNumber:
			j := i + 1
			for j < len(b) && jsonByteClass[b[j]]&jsonNumberPart != 0 {
				j++
			}
			if !validJSONNumber(b[i:j]) {
				return false, fmt.Errorf("invalid number %q at offset %d", b[i:j], i)
			}
			i = j
		case jsonLetter:
			j := i + 1
			for j < len(b) && jsonByteClass[b[j]]&^jsonNumberPart == jsonLetter {
				j++
			}
			if w := string(b[i:j]); w != "true" && w != "false" && w != "null" {
				return false, fmt.Errorf("invalid literal %q at offset %d", b[i:j], i)
			}
			i = j
		default:
			return false, fmt.Errorf("invalid character %q at offset %d", c, i)
		}
	}
	return surrogates, nil
}

// Classes of bytes outside strings; jsonNumberPart marks those a number
// can go on with (the letters e and E are letters too).
const (
	jsonQuote = 1 + iota
	jsonPunct
	jsonNumber // '-' and digits, which start a number
	jsonLetter

	jsonNumberPart = 8
)

var jsonByteClass = func() (t [256]byte) {
	for _, c := range "{}[],: \t\n\r" {
		t[c] = jsonPunct
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = jsonLetter, jsonLetter
	}
	t['"'] = jsonQuote
	t['-'] = jsonNumber | jsonNumberPart
	for c := '0'; c <= '9'; c++ {
		t[c] = jsonNumber | jsonNumberPart
	}
	t['+'], t['.'] = jsonNumberPart, jsonNumberPart
	t['e'], t['E'] = jsonLetter|jsonNumberPart, jsonLetter|jsonNumberPart
	return t
}()

// nextQuote returns the offset of the first quote in b from j, -1 if none.
// Most strings are short: eight bytes at a time for a start.
func nextQuote(b []byte, j int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for end := j + 32; j+8 <= len(b) && j < end; j += 8 {
		// A zero byte of q flags its high bit (and maybe those above it,
		// never those below).
		q := binary.LittleEndian.Uint64(b[j:]) ^ (ones * '"')
		if m := (q - ones) &^ q & highs; m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
	}
	if k := bytes.IndexByte(b[j:], '"'); k >= 0 {
		return j + k
	}
	return -1
}

// hasControlByte reports whether b has a byte below 0x20.
func hasControlByte(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	var acc uint64
	i := 0
	for ; i+16 <= len(b); i += 16 {
		x, y := binary.LittleEndian.Uint64(b[i:]), binary.LittleEndian.Uint64(b[i+8:])
		// A byte below 0x20 flags its high bit (and maybe those above
		// it in the word, never any in a word without one).
		acc |= (x-ones*0x20)&^x | (y-ones*0x20)&^y
	}
	if acc&highs != 0 {
		return true
	}
	for ; i < len(b); i++ {
		if b[i] < 0x20 {
			return true
		}
	}
	return false
}

// checkJSONEscape checks the escape at b[i] (a backslash) and returns its
// length.
func checkJSONEscape(b []byte, i int) (n int, surrogate bool, err error) {
	if i+1 >= len(b) {
		return 0, false, errors.New("unterminated string")
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, false, nil
	case 'u':
		r, ok := hex4(b[i+2:])
		if !ok {
			return 0, false, fmt.Errorf("invalid escape %q at offset %d", b[i:min(i+6, len(b))], i)
		}
		return 6, isSurrogate(r), nil
	}
	return 0, false, fmt.Errorf("invalid escape %q at offset %d", b[i:i+2], i)
}

// checkJSONTokensSlow is checkJSONTokens for a line with control
// characters.
func checkJSONTokensSlow(b []byte) (surrogates bool, err error) {
	for i := 0; i < len(b); {
		switch c := b[i]; {
		case c == '"':
			j, s, err := scanJSONString(b, i+1)
			if err != nil {
				return false, err
			}
			surrogates = surrogates || s
			i = j
		case c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' || '0' <= c && c <= '9':
			j := i + 1
			for j < len(b) && ('0' <= b[j] && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
				j++
			}
			if !validJSONNumber(b[i:j]) {
				return false, fmt.Errorf("invalid number %q at offset %d", b[i:j], i)
			}
			i = j
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			j := i + 1
			for j < len(b) && ('a' <= b[j] && b[j] <= 'z' || 'A' <= b[j] && b[j] <= 'Z') {
				j++
			}
			if w := string(b[i:j]); w != "true" && w != "false" && w != "null" {
				return false, fmt.Errorf("invalid literal %q at offset %d", b[i:j], i)
			}
			i = j
		default:
			return false, fmt.Errorf("invalid character %q at offset %d", c, i)
		}
	}
	return surrogates, nil
}

// scanJSONString checks the string starting at b[i], after its opening
// quote, and returns the offset after its closing quote.
func scanJSONString(b []byte, i int) (end int, surrogates bool, err error) {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for {
		// Eight bytes at a time to the next quote, backslash or control
		// character: the lowest byte flagged is one (bytes above a match
		// can be flagged wrongly, not below).
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q, bs := x^(ones*'"'), x^(ones*'\\')
			if m := ((q-ones)&^q | (bs-ones)&^bs | (x-ones*0x20)&^x) & highs; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return 0, false, errors.New("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, surrogates, nil
		case c == '\\':
			n, s, err := checkJSONEscape(b, i)
			if err != nil {
				return 0, false, err
			}
			surrogates = surrogates || s
			i += n
		case c < 0x20:
			return 0, false, fmt.Errorf("control character %q in string at offset %d", c, i)
		default:
			i++
		}
	}
}

// validJSONNumber reports whether b is -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func validJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// replaceLoneSurrogates appends line to dst with each \u escape of a
// surrogate that is not the first half of a pair (with the \u escape that
// follows it) replaced by \ufffd, the rune encoding/json reads it as. The
// escapes of pairs are kept, for fastjson to read them as encoding/json
// does. Backslashes appear only in strings in valid JSON, and the result
// is the same length.
func replaceLoneSurrogates(dst, line []byte) []byte {
	dst = append(dst, line...)
	b := dst[len(dst)-len(line):]
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 {
			break
		}
		i += j
		if i+1 >= len(b) || b[i+1] != 'u' {
			i += 2
			continue
		}
		r, ok := hex4(b[i+2:])
		if !ok {
			i += 2
			continue
		}
		if !isSurrogate(r) {
			i += 6
			continue
		}
		if r < 0xdc00 && i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if r2, ok := hex4(b[i+8:]); ok && 0xdc00 <= r2 && r2 <= 0xdfff {
				i += 12
				continue
			}
		}
		copy(b[i:], `\ufffd`)
		i += 6
	}
	return dst
}

func isSurrogate(r rune) bool { return 0xd800 <= r && r <= 0xdfff }

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}

// jsonFields matches object keys to a struct's field names as
// encoding/json does: exactly, or else case-insensitively, with its
// folding (which also folds, say, 'ſ' to 'S' and the Kelvin sign to 'K').
type jsonFields struct {
	byLen  [][]string        // names by length
	folded map[string]string // folded name to name
}

func newJSONFields(names ...string) *jsonFields {
	f := &jsonFields{folded: map[string]string{}}
	for _, n := range names {
		for len(f.byLen) <= len(n) {
			f.byLen = append(f.byLen, nil)
		}
		f.byLen[len(n)] = append(f.byLen[len(n)], n)
		f.folded[string(appendFoldedName(nil, []byte(n)))] = n
	}
	return f
}

// match returns the field name k stands for, "" if none.
func (f *jsonFields) match(k []byte) string {
	var names []string
	if len(k) < len(f.byLen) {
		names = f.byLen[len(k)]
		for _, n := range names {
			if string(k) == n {
				return n
			}
		}
	}
	for _, c := range k {
		if c >= utf8.RuneSelf {
			var buf [64]byte
			return f.folded[string(appendFoldedName(buf[:0], k))]
		}
	}
	// ASCII folds to ASCII of the same length.
	for _, n := range names {
		if asciiEqualFold(k, n) {
			return n
		}
	}
	return ""
}

func asciiEqualFold(k []byte, n string) bool {
	for i := range len(k) {
		a, b := k[i], n[i]
		if 'a' <= a && a <= 'z' {
			a -= 'a' - 'A'
		}
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// appendFoldedName is encoding/json's (fold.go).
func appendFoldedName(out, in []byte) []byte {
	for i := 0; i < len(in); {
		// Handle single-byte ASCII.
		if c := in[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		// Handle multi-byte Unicode.
		r, n := utf8.DecodeRune(in[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune returns the smallest rune for all runes in the same fold set.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}
