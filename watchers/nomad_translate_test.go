package watchers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/nomad/api"
	"github.com/valyala/fastjson"

	"github.com/vigie/vigie/internal/fakenomad"
)

// replayCapture runs the watcher over the whole capture and returns the
// events it delivered.
func replayCapture(t *testing.T) ([]Event, *fakenomad.Server) {
	t.Helper()
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	run(t, testNomad(fake, NomadConfig{}, fixedCursor{8, 0, true}), sink)
	_, cursors := captureEvents(t)
	var out []Event
	for _, b := range collect(t, sink, cursors[len(cursors)-1]) {
		out = append(out, b.Events...)
	}
	return out, fake
}

func pick(events []Event, index uint64, topic string) []Event {
	var out []Event
	for _, e := range events {
		if e.Index == index && e.Topic == topic {
			out = append(out, e)
		}
	}
	return out
}

func TestNomadTranslatesTheCrasher(t *testing.T) {
	events, fake := replayCapture(t)
	stderr, _ := fakenomad.CaptureLog(fakenomad.CrasherAllocID, "boom", "stderr")

	ev := pick(events, 23, "Allocation")[0]
	a := ev.Alloc
	if ev.Type != "AllocationUpdated" || ev.Namespace != "default" || !ev.Time.Equal(time.Unix(0, 1795705837850910907)) {
		t.Errorf("event %s %s %v", ev.Type, ev.Namespace, ev.Time)
	}
	if a.ID != fakenomad.CrasherAllocID || a.Name != "crasher.crasher[0]" || a.Job != "crasher" || a.Group != "crasher" ||
		a.NodeID != "bea8c815-b2e2-c04f-b931-9d75f701a90e" || a.NodeName != "vm" ||
		a.ClientStatus != "failed" || a.ClientDescription != "Failed tasks" || a.DesiredStatus != "run" ||
		a.DeploymentID != "f7ef71d7-6890-5abe-efb2-3048d133deaa" || a.Healthy == nil || *a.Healthy || a.Canary || a.Rescheduled {
		t.Errorf("alloc %+v", a)
	}
	if len(a.Tasks) != 1 {
		t.Fatalf("tasks %+v", a.Tasks)
	}
	task := a.Tasks[0]
	if task.Name != "boom" || task.State != "dead" || !task.Failed || task.Restarts != 1 || task.StderrTail != stderr {
		t.Errorf("task %+v", task)
	}
	var types []string
	for _, e := range task.Events {
		types = append(types, e.Type)
	}
	if !slices.Equal(types, []string{"Received", "Task Setup", "Started", "Terminated", "Restarting", "Started", "Terminated", "Not Restarting"}) {
		t.Errorf("task events %q", types)
	}
	last, crash := task.Events[7], task.Events[6]
	if last.Message != `Exceeded allowed attempts 1 in interval 1m0s and mode is "fail"` || !last.Time.Equal(time.Unix(0, 1795705837764408585)) {
		t.Errorf("last event %+v", last)
	}
	if crash.ExitCode != 1 || crash.Signal != 0 || crash.OOMKilled || crash.Message != "Exit Code: 1" {
		t.Errorf("terminated event %+v", crash)
	}

	// The first crash (22, restarting) has its tail too; kills (exit 130)
	// and clean exits do not; each crash is fetched once.
	if first := pick(events, 22, "Allocation")[0].Alloc.Tasks[0]; first.Failed || first.StderrTail != stderr {
		t.Errorf("first crash %+v", first)
	}
	for _, e := range events {
		if e.Alloc != nil && e.Alloc.ID != fakenomad.CrasherAllocID && e.Alloc.Tasks != nil && e.Alloc.Tasks[0].StderrTail != "" {
			t.Errorf("tail for %s at %d", e.Alloc.ID, e.Index)
		}
	}
	var fetches []string
	for _, r := range fake.Requests() {
		if strings.HasPrefix(r, "/v1/client/fs/logs/") {
			fetches = append(fetches, r)
		}
	}
	want := "/v1/client/fs/logs/" + fakenomad.CrasherAllocID + "?namespace=default&offset=2049&origin=end&plain=true&task=boom&type=stderr"
	if len(fetches) != 2 || fetches[0] != want || fetches[1] != want {
		t.Errorf("log fetches %q", fetches)
	}
}

func TestNomadTranslatesDeploymentsNodesEvalsAndJobs(t *testing.T) {
	events, _ := replayCapture(t)

	d := pick(events, 24, "Deployment")[0]
	if d.Type != "DeploymentStatusUpdate" || d.Deployment.ID != "f7ef71d7-6890-5abe-efb2-3048d133deaa" || d.Deployment.Job != "crasher" ||
		d.Deployment.Status != "failed" || d.Deployment.StatusDescription != "Failed due to unhealthy allocations" ||
		!slices.Equal(d.Deployment.Groups, []DeploymentGroup{{Name: "crasher", Desired: 1, Placed: 1, Unhealthy: 1}}) {
		t.Errorf("deployment %s %+v", d.Type, d.Deployment)
	}

	for _, c := range []struct {
		index       uint64
		eligibility string
		draining    bool
		last        string
		dated       bool
	}{
		{43, "ineligible", true, "Node drain strategy set", true},
		{49, "ineligible", false, "Node drain complete", true},
		{51, "eligible", false, "Node drain complete", false}, // drain off adds no node event
		{56, "ineligible", false, "Node marked as ineligible for scheduling", true},
		{58, "eligible", false, "Node marked as eligible for scheduling", true},
	} {
		e := pick(events, c.index, "Node")[0]
		n := e.Node
		if e.Type != "NodeDrain" || n.ID != "bea8c815-b2e2-c04f-b931-9d75f701a90e" || n.Name != "vm" || n.Status != "ready" ||
			n.Eligibility != c.eligibility || n.Draining != c.draining || n.LastEvent != c.last || e.Time.IsZero() == c.dated {
			t.Errorf("node at %d: %s %+v %v", c.index, e.Type, n, e.Time)
		}
	}

	blocked := pick(events, 45, "Evaluation")[0].Eval
	if blocked.ID != "4fa9b21d-a669-104d-0615-32a927fbfd21" || blocked.Status != "blocked" || blocked.Job != "web" ||
		blocked.TriggeredBy != "queued-allocs" || blocked.StatusDescription != "created to place remaining allocations" ||
		len(blocked.Failures) != 1 || blocked.Failures[0].Group != "web" || blocked.Failures[0].NodesInPool != 0 || blocked.Failures[0].Unplaced != 1 {
		t.Errorf("blocked eval %+v", blocked)
	}
	if drain := pick(events, 47, "Evaluation")[0].Eval; drain.BlockedEval != blocked.ID || drain.Status != "complete" || drain.Failures[0].Group != "web" {
		t.Errorf("drain eval %+v", drain)
	}

	stop := pick(events, 36, "Job")
	if len(stop) != 2 || stop[0].Type != "JobDeregistered" || !stop[0].Time.Equal(time.Unix(0, 1795705863432727336)) ||
		*stop[0].Job != (Job{ID: "crasher", Type: "service", Status: "dead", Stop: true, Version: 1}) {
		t.Errorf("job stop %+v", stop)
	}
	if child := pick(events, 39, "Job")[0].Job; child.ID != "backup/dispatch-1795705868-d94dd8a4" || child.ParentID != "backup" || child.Type != "batch" {
		t.Errorf("dispatched job %+v", child)
	}
	if e := pick(events, 37, "Job")[0]; !e.Time.IsZero() {
		t.Errorf("job status change dated %v", e.Time)
	}
}

func TestTranslateNomadPurgedJob(t *testing.T) {
	for _, raw := range []string{
		`{"Topic":"Job","Type":"JobDeregistered","Key":"gone","Namespace":"default","Index":70,"Payload":{"Job":null}}`,
		`{"Topic":"Job","Type":"JobBatchDeregistered","Key":"gone","Namespace":"default","Index":70,"Payload":{}}`,
		`{"Topic":"Job","Type":"JobDeregistered","Key":"gone","Namespace":"default","Index":70,"Payload":{"Deleted":true,"Job":{"ID":"gone","Stop":true}}}`,
	} {
		ev, err := translateNomad(raw, 70)
		if err != nil || ev.Job == nil || ev.Job.ID != "gone" || !ev.Job.Purged {
			t.Errorf("%s: %+v %v", raw, ev.Job, err)
		}
	}
	if _, err := translateNomad(`{"Topic":"Job","Type":"JobRegistered","Key":"x","Payload":{"Job":null}}`, 70); err == nil {
		t.Error("a registration without a job was translated")
	}
}

// The wire types mirror github.com/hashicorp/nomad/api: check them against
// its own decoders on every captured event (times excepted: the api decodes
// payloads through float64 and loses nanoseconds).
func TestTranslateNomadAgreesWithTheNomadAPI(t *testing.T) {
	var d nomadDecoder
	for _, line := range fakenomad.CaptureFrames() {
		var theirs api.Events
		if err := json.Unmarshal([]byte(line), &theirs); err != nil {
			t.Fatal(err)
		}
		index, events, _, err := d.decodeLine([]byte(line))
		if err != nil || index != theirs.Index || len(events) != len(theirs.Events) {
			t.Fatalf("frame %d: %d events, %v", theirs.Index, len(events), err)
		}
		ours := struct{ Index uint64 }{index}
		for i, want := range theirs.Events {
			got, err := d.translate(events[i], ours.Index)
			if err != nil {
				t.Fatalf("index %d: %v", ours.Index, err)
			}
			if got.Topic != string(want.Topic) || got.Type != want.Type || key(got) != want.Key {
				t.Errorf("index %d: %s %s %s", ours.Index, got.Topic, got.Type, key(got))
			}
			switch want.Topic {
			case api.TopicAllocation:
				a, _ := want.Allocation()
				g := got.Alloc
				if g.ClientStatus != a.ClientStatus || g.DesiredStatus != a.DesiredStatus || g.Group != a.TaskGroup ||
					g.NodeName != a.NodeName || len(g.Tasks) != len(a.TaskStates) ||
					(a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil) != (g.Healthy != nil) {
					t.Errorf("alloc at %d: %+v", ours.Index, g)
				}
				for _, task := range g.Tasks {
					ts := a.TaskStates[task.Name]
					if task.State != ts.State || task.Failed != ts.Failed || task.Restarts != int(ts.Restarts) || len(task.Events) != len(ts.Events) {
						t.Errorf("task %s at %d: %+v", task.Name, ours.Index, task)
					}
					for j, e := range ts.Events {
						if task.Events[j].ExitCode != e.ExitCode || task.Events[j].Message != e.DisplayMessage || task.Events[j].Type != e.Type {
							t.Errorf("task event %d of %s at %d: %+v", j, task.Name, ours.Index, task.Events[j])
						}
					}
				}
			case api.TopicDeployment:
				d, _ := want.Deployment()
				if got.Deployment.Status != d.Status || got.Deployment.JobVersion != d.JobVersion || len(got.Deployment.Groups) != len(d.TaskGroups) {
					t.Errorf("deployment at %d: %+v", ours.Index, got.Deployment)
				}
			case api.TopicEvaluation:
				e, _ := want.Evaluation()
				if got.Eval.Status != e.Status || got.Eval.BlockedEval != e.BlockedEval || len(got.Eval.Failures) != len(e.FailedTGAllocs) {
					t.Errorf("eval at %d: %+v", ours.Index, got.Eval)
				}
				for _, f := range got.Eval.Failures {
					if m := e.FailedTGAllocs[f.Group]; m == nil || f.Unplaced != 1+m.CoalescedFailures {
						t.Errorf("placement failure of %s at %d: %+v", f.Group, ours.Index, f)
					}
				}
			case api.TopicJob:
				j, err := want.Job()
				if err != nil {
					// The api's decoder fails on dispatched jobs: their
					// Payload is base64 text, its field a []byte.
					if !strings.Contains(err.Error(), "Job.Payload") || got.Job.ParentID != "backup" {
						t.Errorf("job at %d: %v", ours.Index, err)
					}
					continue
				}
				if got.Job.Stop != *j.Stop || got.Job.Status != *j.Status || got.Job.Version != *j.Version || got.Job.ParentID != *j.ParentID {
					t.Errorf("job at %d: %+v", ours.Index, got.Job)
				}
			case api.TopicNode:
				n, _ := want.Node()
				if got.Node.Eligibility != n.SchedulingEligibility || got.Node.Draining != (n.DrainStrategy != nil) || got.Node.LastEvent != n.Events[len(n.Events)-1].Message {
					t.Errorf("node at %d: %+v", ours.Index, got.Node)
				}
			}
		}
	}
}

func TestTaskFailure(t *testing.T) {
	at := func(s int64) time.Time { return time.Unix(s, 0) }
	for _, c := range []struct {
		name string
		task Task
		want int64
	}{
		{"running", Task{Events: []TaskEvent{{Type: "Started", Time: at(1)}}}, 0},
		{"crashed, restarting", Task{Events: []TaskEvent{{Type: "Started"}, {Type: "Terminated", ExitCode: 2, Time: at(2)}, {Type: "Restarting", Time: at(3)}}}, at(2).UnixNano()},
		{"crashed, running again", Task{Events: []TaskEvent{{Type: "Terminated", ExitCode: 2}, {Type: "Restarting"}, {Type: "Started"}}}, 0},
		{"OOM", Task{Events: []TaskEvent{{Type: "Started"}, {Type: "Terminated", OOMKilled: true, ExitCode: 137, Time: at(4)}}}, at(4).UnixNano()},
		{"stopped", Task{Events: []TaskEvent{{Type: "Started"}, {Type: "Killing"}, {Type: "Terminated", ExitCode: 130, Signal: 2}, {Type: "Killed"}}}, 0},
		{"clean exit", Task{Events: []TaskEvent{{Type: "Started"}, {Type: "Terminated"}}}, 0},
		{"failed", Task{Failed: true, Events: []TaskEvent{{Type: "Driver Failure", Time: at(5)}}}, at(5).UnixNano()},
		{"failed, no events", Task{Failed: true}, 1},
	} {
		if got := taskFailure(c.task); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestCleanTail(t *testing.T) {
	for _, c := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short\nlog\n", 100, "short\nlog\n"},
		{"first line\nsecond\nthird\n", 10, "third\n"}, // cut inside "second": dropped
		{"12345\nabcdef\n", 7, "abcdef\n"},             // cut at a line start: kept
		{"nonewlineatall", 4, "tall"},
		{"\x1b[31merror:\x1b[0m boom \x1b]8;;http://x\x07link\x1b]8;;\x07\x1b(B\n", 100, "error: boom link\n"},
		{"bad \xff\xfe utf8\n", 100, "bad \uFFFD utf8\n"},
	} {
		if got := cleanTail([]byte(c.in), c.limit); got != c.want {
			t.Errorf("cleanTail(%q, %d) = %q, want %q", c.in, c.limit, got, c.want)
		}
	}
}

// translateNomad translates one event, given as JSON, of a frame at index.
func translateNomad(raw string, index uint64) (Event, error) {
	var d nomadDecoder
	_, events, _, err := d.decodeLine([]byte(fmt.Sprintf(`{"Index":%d,"Events":[%s]}`, index, raw)))
	if err != nil {
		return Event{}, err
	}
	return d.translate(events[0], index)
}

// decoding is what a decoder makes of a line: the line's error, or its
// index and, per event, the Event or why it was skipped.
type decoding struct {
	err       error
	heartbeat bool
	index     uint64
	events    []Event
	skips     []error // nil for an event translated
}

func decodeWith(d *nomadDecoder, line []byte) (out decoding) {
	index, events, heartbeat, err := d.decodeLine(line)
	if err != nil || heartbeat {
		return decoding{err: err, heartbeat: heartbeat}
	}
	out.index = index
	for _, raw := range events {
		ev, err := d.translate(raw, index)
		out.events = append(out.events, ev)
		out.skips = append(out.skips, err)
	}
	return out
}

// decodeWithLegacy is decodeWith for the encoding/json decoder.
func decodeWithLegacy(line []byte) (out decoding) {
	f, heartbeat, err := legacyDecodeNomadLine(line)
	if err != nil || heartbeat {
		return decoding{err: err, heartbeat: heartbeat}
	}
	out.index = f.Index
	for _, raw := range f.Events {
		ev, err := legacyTranslateNomad(raw, f.Index)
		out.events = append(out.events, ev)
		out.skips = append(out.skips, err)
	}
	return out
}

// diffDecodings says how the decoding of a line differs from the
// reference's, "" if it does not: the same lines and events skipped, for
// the same kind (and message, but for the JSON errors quoted), the same
// Events otherwise.
func diffDecodings(got, want decoding) string {
	switch {
	case (got.err == nil) != (want.err == nil):
		return fmt.Sprintf("line error %v, want %v", got.err, want.err)
	case got.heartbeat != want.heartbeat || got.index != want.index || len(got.events) != len(want.events):
		return fmt.Sprintf("heartbeat %v index %d with %d events, want %v %d %d", got.heartbeat, got.index, len(got.events), want.heartbeat, want.index, len(want.events))
	}
	for i := range got.events {
		g, w := got.skips[i], want.skips[i]
		switch {
		case (g == nil) != (w == nil):
			return fmt.Sprintf("event %d: skip %v, want %v", i, g, w)
		case g != nil:
			gs, ok1 := g.(*nomadSkip)
			ws, ok2 := w.(*nomadSkip)
			if !ok1 || !ok2 || gs.kind != ws.kind {
				return fmt.Sprintf("event %d: skip %#v, want %#v", i, g, w)
			}
			if quotesJSONError := gs.kind == "malformed event" || strings.HasPrefix(gs.kind, "payload ") && strings.Contains(ws.msg, " payload of "); !quotesJSONError && gs.msg != ws.msg {
				return fmt.Sprintf("event %d: skip %q, want %q", i, gs.msg, ws.msg)
			}
			if strings.HasSuffix(ws.msg, ": no ID") != strings.HasSuffix(gs.msg, ": no ID") {
				return fmt.Sprintf("event %d: skip %q, want %q", i, gs.msg, ws.msg)
			}
		case !reflect.DeepEqual(got.events[i], want.events[i]):
			return fmt.Sprintf("event %d:\n%s\nwant\n%s", i, dumpEvent(got.events[i]), dumpEvent(want.events[i]))
		}
	}
	// joinReverts runs on the events of a frame.
	var g, w []Event
	for i := range got.events {
		if got.skips[i] == nil {
			g = append(g, got.events[i])
			w = append(w, want.events[i])
		}
	}
	joinReverts(g)
	joinReverts(w)
	if !reflect.DeepEqual(g, w) {
		return "joinReverts differs"
	}
	return ""
}

func dumpEvent(e Event) string {
	b, _ := json.MarshalIndent(e, "", " ")
	return string(b)
}

// checkDecoding checks a line against the reference decoder, with a fresh
// decoder then with one that decoded another line before (its buffers are
// reused).
func checkDecoding(t *testing.T, d *nomadDecoder, line []byte) decoding {
	t.Helper()
	// diffDecodings joins reverts in place: a fresh reference each time.
	got := decodeWith(&nomadDecoder{}, line)
	if diff := diffDecodings(got, decodeWithLegacy(line)); diff != "" {
		t.Fatalf("%s\nline %q", diff, line)
	}
	if diff := diffDecodings(decodeWith(d, line), decodeWithLegacy(line)); diff != "" {
		t.Fatalf("reused decoder: %s\nline %q", diff, line)
	}
	return got
}

// nomadDecoderCases are lines that take the decoders off the beaten path;
// FuzzNomadFrame starts from them too.
var nomadDecoderCases = func() []string {
	frame := func(events ...string) string {
		return `{"Events":[` + strings.Join(events, ",") + `],"Index":70}`
	}
	ev := func(topic, typ, payload string) string {
		return fmt.Sprintf(`{"Topic":%q,"Type":%q,"Key":"k","Namespace":"default","Payload":{%q:%s}}`, topic, typ, topic, payload)
	}
	alloc := func(fields string) string {
		return frame(ev("Allocation", "AllocationUpdated", `{"ID":"a",`+fields+`}`))
	}
	node := func(fields string) string { return frame(ev("Node", "NodeDrain", `{"ID":"n",`+fields+`}`)) }
	eval := func(fields string) string {
		return frame(ev("Evaluation", "EvaluationUpdated", `{"ID":"e",`+fields+`}`))
	}
	job := func(fields string) string { return frame(ev("Job", "JobRegistered", `{"ID":"j",`+fields+`}`)) }
	dep := func(fields string) string {
		return frame(ev("Deployment", "DeploymentStatusUpdate", `{"ID":"d",`+fields+`}`))
	}
	task := func(fields string) string { return alloc(`"TaskStates":{"t":{"Events":[{` + fields + `}]}}`) }
	return []string{
		// Lines.
		"{}", "", "null", "[]", "{", `{"Index":3}`, `{"Events":[{}],"Index":1}`, `{"Events":[],"Index":0}`, `{"Events":null,"Index":4}`,
		`{"Index":"5","Events":[]}`, `{"Index":-1}`, `{"Index":1.5}`, `{"Index":1e2}`, `{"Index":18446744073709551616}`, `{"Index":5,"Events":{}}`,
		`{"Index":5,"Events":[]} x`, `{"Index":5,"Events":[NaN]}`, `{"Index":5,"Events":[01]}`, `{"Index":5,"Events":["a` + "" + `"]}`,
		`{"Index":5,"Events":["\x"]}`, `{"Index":5,"Events":[tru]}`, `{"Index":5,"Events":[-]}`, `{"Index":5,"Events":[1.]}`,
		"\v{\"Index\":5}\u00a0", "\xc2\xa0{}", `{"index":6,"EVENTS":[null]}`, `{"Index":6,"Index":null,"Events":[5,"x",[],true]}`,
		`{"Index":7,"Events":[{}],"Events":null}`, `{"Index":7,"Events":[{},{}],"Events":[{}]}`, `{"\u0049ndex":8}`, `{"Inde\u0078":9,"Events":[1]}`,
		// Events.
		frame(`{"Topic":7}`), frame(`{"Topic":"Service","Type":"ServiceRegistration"}`), frame(`{"Topic":"Job","Type":"JobFrobnicated"}`),
		frame(`{"Topic":"Job","Type":"JobRegistered","Payload":[]}`), frame(`{"Topic":"Job","Type":"JobRegistered","Payload":{"Job":5}}`),
		frame(`{"topic":"Job","TYPE":"JobRegistered","kEy":"k","Payload":{"Job":{"id":"x","ſtatus":"dead","\u212aey":1}}}`),
		frame(`{"Topic":"Job","Type":"JobRegistered","Topic":null,"Payload":{"Job":{"ID":"x"}},"Payload":null}`),
		frame(`{"Topic":"Job","Type":"JobRegistered","Payload":{"Job":{"ID":"x"}},"Payload":{"Deleted":true}}`),
		frame(`{"Topic":"Job","Type":"JobDeregistered","Key":"k","Payload":{"Job":{"ID":"x"},"Deleted":"true"}}`),
		frame(`{"Topic":"Job","Type":"JobDeregistered","Key":"k","Payload":{"Job":{"ID":"x"},"Deleted":1,"Deleted":true}}`),
		frame(`{"Topic":"Job","Type":"JobDeregistered","Key":"","Payload":{"Job":null}}`),
		frame(`{"Topic":"Job","Type":"JobBatchDeregistered","Key":"k\ud800","Payload":{"job":{"ID":"x"}}}`),
		frame(`{"Topic":"Job","Type":"JobDeregistered","Key":"k","Namespace":5,"Payload":{"Job":null}}`),
		frame(`{"Topic":"Job","Type":"JobRegistered","Namespace":"n\u00e9` + "\xff" + `","Payload":{"Job":{"ID":"x"}}}`),
		frame(`{"Topic":"\u004aob","Type":"Job\u0052egistered","Payload":{"\u004aob":{"\u0049D":"x"}}}`),
		frame(`{"Topic":"Job` + "\xff" + `","Type":"JobRegistered"}`), frame(`{"Topic":"Job","Type":"` + "\xed\xa0\x80" + `"}`), frame(`{"Topic":"Job","Type":"Job\ud800Registered"}`),
		frame(ev("Node", "NodeDrain", `{"ID":"n"}`), `{"Topic":7}`, ev("Job", "JobRegistered", `{"ID":"j"}`)),
		// Strings.
		job(`"Status":"a\ud800b","ParentID":"\ud800\u0041","Type":"\ud83d\ude00\udc00\ud800\ud800"`),
		job(`"Status":"\\ud800","ParentID":"\\\ud800x","Type":"\ud800\\u0041"`),
		job(`"Status":"` + "\xff\xfe\xe2\x82" + `","ParentID":"\u00e9` + "\xa9" + `","Type":"ok\u2028\u0000` + "\u2028\x7f" + `"`),
		job(`"ID":"\ud800"`), job(`"ID":""`), job(`"ID":null`), job(`"ID":"x","ID":null`), job(`"ID":5`),
		// Numbers and types.
		job(`"Version":-1`), job(`"Version":1.0`), job(`"Version":1e2`), job(`"Version":18446744073709551615`), job(`"Version":18446744073709551616`),
		job(`"SubmitTime":9223372036854775807,"JobModifyIndex":70`), job(`"SubmitTime":9223372036854775808`), job(`"SubmitTime":-5,"JobModifyIndex":70`),
		job(`"Stop":"true"`), job(`"Stop":1`), job(`"Stop":true,"Stop":null`), job(`"Stop":true,"Stop":false`),
		job(`"Resources":"a type change elsewhere","TaskGroups":5,"Meta":[1]`),
		// Allocations.
		alloc(`"DeploymentStatus":{"Healthy":true},"DeploymentStatus":{"Canary":true}`),
		alloc(`"DeploymentStatus":{"Healthy":true},"DeploymentStatus":null`), alloc(`"DeploymentStatus":{"Healthy":null,"Canary":1}`),
		alloc(`"DeploymentStatus":5`), alloc(`"DeploymentStatus":{"Healthy":"yes"}`), alloc(`"DeploymentStatus":{"Healthy":false,"Healthy":null}`),
		alloc(`"RescheduleTracker":{"Events":[null]}`), alloc(`"RescheduleTracker":{"Events":[1]},"RescheduleTracker":{"Events":[]}`),
		alloc(`"RescheduleTracker":{"Events":[1]},"RescheduleTracker":{}`), alloc(`"RescheduleTracker":{"Events":"x"}`), alloc(`"RescheduleTracker":[]`),
		alloc(`"FollowupEvalID":"f"`), alloc(`"ModifyTime":"x"`), alloc(`"ModifyTime":1.5`),
		alloc(`"TaskStates":{"b":{"State":"dead"},"a":null,"c":{"Restarts":5000000000}}`),
		alloc(`"TaskStates":{"a":{"State":"x","Failed":true}},"TaskStates":{"a":{"Restarts":1},"b":{}}`),
		alloc(`"TaskStates":{"a":{}},"TaskStates":null,"TaskStates":{"b":{}}`), alloc(`"TaskStates":{"a":{}},"TaskStates":{}`),
		alloc(`"TaskStates":{"\ud800":{},"\udc00":{"State":"s"},"` + "\xff" + `":{},"` + "\xfe" + `":{}}`), alloc(`"TaskStates":{"a":5}`), alloc(`"TaskStates":[]`),
		alloc(`"TaskStates":{"a":{"Restarts":-1}}`), alloc(`"TaskStates":{"a":{"Events":{}}}`), alloc(`"TaskStates":{"a":{"Events":[5]}}`),
		alloc(`"TaskStates":{"a":{"Events":[{"Type":"a","Message":"m"},{"Type":"b"}],"Events":[{"Type":"c"}]}}`),
		alloc(`"TaskStates":{"a":{"Events":[{"Type":"a"},{"Type":"b"},{"Type":"c"}],"Events":[{"Message":"x"}],"Events":[null,{"Time":5},{}]}}`),
		alloc(`"TaskStates":{"a":{"Events":[{"Type":"a"}],"Events":[],"Events":[{}]}}`),
		alloc(`"TaskStates":{"a":{"Events":[null,{"Type":"a"}]}}`),
		task(`"Type":"Terminated","ExitCode":0,"Details":{"exit_code":"3","signal":"9","oom_killed":"true"}`),
		task(`"Type":"Terminated","ExitCode":2,"Signal":0,"Details":{"exit_code":"3","signal":"x"}`),
		task(`"Details":{"exit_code":"3"},"Details":{"signal":"4"}`), task(`"Details":{"exit_code":"3"},"Details":null`),
		task(`"Details":{"exit_code":null,"other":null}`), task(`"Details":{"other":5}`), task(`"Details":[]`), task(`"Details":{"exit_code":"3","exit_code":"-9"}`),
		task(`"ExitCode":1e2`), task(`"ExitCode":"1"`), task(`"ExitCode":9223372036854775808`), task(`"Time":-1,"DisplayMessage":"","Message":"m"`),
		task(`"type":"Started","displaymessage":"d","TIME":5`),
		// Deployments and evaluations.
		dep(`"TaskGroups":{"b":{"DesiredTotal":2},"a":{"AutoRevert":true,"Promoted":null},"c":null}`),
		dep(`"TaskGroups":{"a":{"DesiredTotal":2}},"TaskGroups":{"a":{"PlacedAllocs":1}}`), dep(`"TaskGroups":{"a":{"DesiredTotal":"2"}}`),
		dep(`"JobVersion":-1`), dep(`"Status":"failed","StatusDescription":"rolling back to job version 0"`),
		frame(ev("Deployment", "DeploymentStatusUpdate", `{"ID":"d","JobID":"j","Status":"failed","StatusDescription":"x - rolling back to job version 0"}`),
			ev("Job", "DeploymentStatusUpdate", `{"ID":"j","Version":3}`)),
		eval(`"FailedTGAllocs":{"g":{"CoalescedFailures":2,"DimensionExhausted":{"memory":3,"cpu":null},"ConstraintFiltered":{},"QuotaExhausted":[]}}`),
		eval(`"FailedTGAllocs":{"g":{"DimensionExhausted":{"memory":3},"DimensionExhausted":{"cpu":1},"ClassExhausted":null}}`),
		eval(`"FailedTGAllocs":{"g":{"DimensionExhausted":{"memory":3},"DimensionExhausted":null}}`),
		eval(`"FailedTGAllocs":{"g":{"QuotaExhausted":["a","b"],"QuotaExhausted":[null]}}`),
		eval(`"FailedTGAllocs":{"g":{"QuotaExhausted":["a","b","c"],"QuotaExhausted":["x"],"QuotaExhausted":[null,null,null]}}`),
		eval(`"FailedTGAllocs":{"g":{"QuotaExhausted":[1]}}`), eval(`"FailedTGAllocs":{"g":{"DimensionExhausted":{"m":"3"}}}`),
		eval(`"FailedTGAllocs":{"g":{"DimensionExhausted":{"` + "\xff" + `":1,"\ud800":2,"\udbff":3}}}`), eval(`"FailedTGAllocs":{"b":{},"a":{},"b":null}`),
		eval(`"FailedTGAllocs":5`), eval(`"BlockedEval":"b","TriggeredBy":"t","Status":"blocked"`),
		// Nodes.
		node(`"Events":[null]`), node(`"Events":[]`), node(`"Events":null`), node(`"Events":5`), node(`"DrainStrategy":{}`), node(`"DrainStrategy":5`),
		node(`"DrainStrategy":{"Deadline":"x"},"DrainStrategy":null`), node(`"DrainStrategy":[]`),
		node(`"Events":[{"Message":"m","Timestamp":"2026-11-30T13:32:01.123456789+01:00","CreateIndex":70}]`),
		node(`"Events":[{"Message":"m","Timestamp":"2026-11-30T13:32:01Z","CreateIndex":70},null]`),
		node(`"Events":[{"Message":"m","Timestamp":"\u0032026-11-30T13:32:01Z","CreateIndex":70}]`),
		node(`"Events":[{"Timestamp":5}]`), node(`"Events":[{"Timestamp":{}}]`), node(`"Events":[{"Timestamp":null,"CreateIndex":70}]`),
		node(`"Events":[{"Timestamp":"2026-11-30T13:32:01Z"}],"Events":[{"Message":"m","CreateIndex":70}]`),
		node(`"Events":[{"Timestamp":"2026-13-30T13:32:01Z"}]`), node(`"Events":[{"timestamp":"2026-11-30T13:32:01Z","createindex":70}]`),
		node(`"Name":"vm","Status":"ready","SchedulingEligibility":"eligible","NodeResources":"changed","Attributes":[]`),
	}
}()

func TestNomadDecoderAgreesWithEncodingJSON(t *testing.T) {
	var d nomadDecoder
	translated := 0
	for _, line := range append(fakenomad.CaptureFrames(), nomadDecoderCases...) {
		out := checkDecoding(t, &d, []byte(line))
		for _, err := range out.skips {
			if err == nil {
				translated++
			}
		}
	}
	if translated < 112+50 {
		t.Errorf("only %d events translated", translated)
	}
}

// The one deviation: fastjson refuses lines nested deeper than 300.
func TestNomadDecoderNestingLimit(t *testing.T) {
	line := func(depth int) []byte {
		return []byte(`{"Index":5,"Events":[{"Topic":"Job","Type":"JobRegistered","Payload":{"Job":{"ID":"j","Meta":` +
			strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}}]}`)
	}
	var d nomadDecoder
	if out := checkDecoding(t, &d, line(290)); out.err != nil || out.skips[0] != nil {
		t.Fatalf("nested 290 levels: %+v", out)
	}
	if _, _, _, err := d.decodeLine(line(300)); err == nil {
		t.Fatal("nested 300 levels: decoded")
	}
	if _, _, err := legacyDecodeNomadLine(line(300)); err != nil {
		t.Fatal(err)
	}
	// Deeper than the stack can take, were the validator first.
	if _, _, _, err := d.decodeLine(line(4 << 20)); err == nil {
		t.Fatal("nested 4M levels: decoded")
	}
}

// FuzzNomadFrame feeds lines to the decoder and translator: they must never
// panic, must agree with the encoding/json decoder, and whatever they
// accept must be a well-formed Event. The seeds include real frames of up
// to 15 KB, so run it with -fuzzminimizetime 2s or it spends most of its
// time minimizing.
func FuzzNomadFrame(f *testing.F) {
	for _, line := range fakenomad.CaptureFrames() {
		f.Add([]byte(line))
	}
	for _, s := range append(nomadDecoderCases,
		`{"Events":[{"Topic":"Job","Type":"JobDeregistered","Key":"k","Payload":{"Job":null}}],"Index":2}`,
		`{"Events":[{"Topic":"Node","Type":"NodeDrain","Payload":{"Node":{"ID":"n","Events":[null]}}}],"Index":2}`,
		`{"Events":[{"Topic":"Allocation","Type":"PlanResult","Payload":{"Allocation":{"ID":"a","TaskStates":{"t":null,"u":{"Events":[null,{"Details":{"exit_code":"-9"}}]}}}}}],"Index":2}`,
	) {
		f.Add([]byte(s))
	}
	var reused nomadDecoder
	f.Fuzz(func(t *testing.T, line []byte) {
		out := checkDecoding(t, &reused, line)
		if out.err != nil || out.heartbeat {
			return
		}
		if out.index == 0 {
			t.Fatal("frame without index accepted")
		}
		for i, ev := range out.events {
			if err := out.skips[i]; err != nil {
				if _, ok := err.(*nomadSkip); !ok {
					t.Fatalf("error of type %T", err)
				}
				continue
			}
			set := 0
			for _, p := range []bool{ev.Alloc != nil, ev.Deployment != nil, ev.Job != nil, ev.Node != nil, ev.Eval != nil, ev.Check != nil} {
				if p {
					set++
				}
			}
			if set != 1 || ev.Source != "nomad" || ev.Index != out.index || key(ev) == "" {
				t.Fatalf("bogus event %+v", ev)
			}
			if ev.Alloc != nil {
				for _, task := range ev.Alloc.Tasks {
					taskFailure(task)
				}
			}
		}
		if s := cleanTail(line, 64); !utf8.ValidString(s) {
			t.Fatalf("cleanTail gave invalid UTF-8 %q", s)
		}
	})
}

// A deployment failed with an auto-revert comes with the job registered
// again in the same raft entry: the frame of the captured failure (24),
// described as Nomad's deployment watcher does on a revert, with the job
// event such an entry carries (the captured crasher job, as version 2).
func TestNomadTellsTheVersionAnAutoRevertRunsAs(t *testing.T) {
	var failed, withJob struct {
		Index  uint64
		Events []map[string]any
	}
	if err := json.Unmarshal([]byte(frameAt(t, 24)), &failed); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(frameAt(t, 23)), &withJob); err != nil {
		t.Fatal(err)
	}
	for _, e := range failed.Events {
		if e["Topic"] == "Deployment" {
			d := e["Payload"].(map[string]any)["Deployment"].(map[string]any)
			d["StatusDescription"] = "Failed due to unhealthy allocations - rolling back to job version 0"
		}
	}
	for _, e := range withJob.Events {
		if e["Topic"] == "Job" {
			e["Type"], e["Index"] = "DeploymentStatusUpdate", 24
			j := e["Payload"].(map[string]any)["Job"].(map[string]any)
			j["Version"], j["JobModifyIndex"], j["ModifyIndex"] = 2, 24, 24
			failed.Events = append(failed.Events, e)
		}
	}
	frame, err := json.Marshal(failed)
	if err != nil {
		t.Fatal(err)
	}
	fake := fakenomad.New(t, fakenomad.Config{})
	sink := newBatchSink()
	run(t, testNomad(fake, NomadConfig{}, fixedCursor{}), sink)
	sink.next(t) // the start position
	fake.Append(fakenomad.Reindex(string(frame), 66))
	b := sink.next(t)
	d := pick(b.Events, 66, "Deployment")
	if len(d) != 1 || d[0].Deployment.RevertedAs != 2 {
		t.Fatalf("deployment %+v", d)
	}
	// Without the job in the frame, the version is unknown.
	events := []Event{d[0]}
	events[0].Deployment = &Deployment{Job: "crasher", Status: "failed", StatusDescription: d[0].Deployment.StatusDescription}
	joinReverts(events)
	if events[0].Deployment.RevertedAs != 0 {
		t.Fatalf("reverted as %d without a job event", events[0].Deployment.RevertedAs)
	}
}

// FuzzNomadJSONValidity checks that fastjson's parser and checkJSONTokens
// together accept exactly the JSON encoding/json accepts, but for nesting
// deeper than fastjson's limit.
func FuzzNomadJSONValidity(f *testing.F) {
	for _, line := range fakenomad.CaptureFrames()[:5] {
		f.Add([]byte(line))
	}
	for _, s := range append(nomadDecoderCases, `1`, `-0.5e+7`, `"\u00e9\ud83d\ude00"`, `[1,2,{"a":null}]`, ` true `, `"a\/b\\\"\b\f\n\r\t"`,
		`01`, `1.`, `.5`, `1e`, `-`, `+1`, `NaN`, `-Inf`, `nul`, `"\u12"`, `"\x"`, "\"\t\"", `[1,]`, `{"a":1,}`, `{"a"}`, `'a'`, "1 2", `[1 2]`) {
		f.Add([]byte(s))
	}
	var p fastjson.Parser
	f.Fuzz(func(t *testing.T, b []byte) {
		_, lexErr := checkJSONTokens(b)
		_, parseErr := p.ParseBytes(b)
		want := json.Valid(b)
		if got := lexErr == nil && parseErr == nil; got != want {
			if want && parseErr != nil && strings.Contains(parseErr.Error(), "too big depth") {
				return
			}
			t.Fatalf("accepted %v, encoding/json %v (token check: %v, parser: %v) for %q", got, want, lexErr, parseErr, b)
		}
	})
}
