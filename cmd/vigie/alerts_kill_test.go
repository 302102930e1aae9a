package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// roomView is what a room shows of the incidents: each incident message in
// its final state (after edits), with its thread replies in order.
type roomView struct {
	Messages []string
	Threads  map[int][]string // by index in Messages
}

// volatile parts of messages: durations, clock times, incident numbers.
var volatile = regexp.MustCompile(`\b\d+(d\d+h|h\d+m|m\d+s|s)\b|\d\d:\d\d UTC|#\d+`)

func normalize(s string) string { return volatile.ReplaceAllString(s, "…") }

func (v roomView) String() string {
	var b strings.Builder
	for i, m := range v.Messages {
		fmt.Fprintf(&b, "[%d] %s\n", i, m)
		for _, r := range v.Threads[i] {
			fmt.Fprintf(&b, "    ↳ %s\n", r)
		}
	}
	return b.String()
}

// outboxView builds the view from queued messages of one room.
func outboxView(msgs []store.OutMessage, room string) roomView {
	v := roomView{Threads: map[int][]string{}}
	index := map[int64]int{}
	for _, m := range msgs {
		if m.Room != room {
			continue
		}
		switch {
		case m.EditOf != 0:
			v.Messages[index[m.EditOf]] = normalize(m.Plain)
		case m.ThreadRoot != 0:
			i := index[m.ThreadRoot]
			v.Threads[i] = append(v.Threads[i], normalize(m.Plain))
		default:
			index[m.ID] = len(v.Messages)
			v.Messages = append(v.Messages, normalize(m.Plain))
		}
	}
	return v
}

// matrixView builds the view from a room's history, as a client shows it.
func matrixView(msgs []*event.Event, bot id.UserID) roomView {
	v := roomView{Threads: map[int][]string{}}
	index := map[id.EventID]int{}
	for _, m := range msgs {
		if m.Sender != bot {
			continue
		}
		c := m.Content.AsMessage()
		switch {
		case c.RelatesTo.GetReplaceID() != "":
			v.Messages[index[c.RelatesTo.GetReplaceID()]] = normalize(c.NewContent.Body)
		case c.RelatesTo.GetThreadParent() != "":
			i := index[c.RelatesTo.GetThreadParent()]
			v.Threads[i] = append(v.Threads[i], normalize(c.Body))
		default:
			index[m.ID] = len(v.Messages)
			v.Messages = append(v.Messages, normalize(c.Body))
		}
	}
	return v
}

// expectedView runs the captured scenario once, uninterrupted, through the
// same watcher and engine in-process, and returns what the room must show.
func expectedView(t *testing.T, frames []string, room string) roomView {
	nomad := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames[:captureStart]})
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "expected"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rules, err := incidents.Rules(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	eng := incidents.New(incidents.Config{Rules: rules, Routes: []incidents.Route{{Transport: "matrix", Room: room}}, EditInterval: 200 * time.Millisecond}, st)
	w := watchers.NewNomad(watchers.NomadConfig{Address: nomad.URL, Topics: []string{"Allocation", "Deployment", "Evaluation", "Job", "Node"}, Namespaces: []string{"*"}}, st)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		go eng.Run(ctx)
		watchers.Supervise(ctx, eng, watcherBackoff, watchers.NewVisibility(nil, time.Minute), w)
	}()
	waitCursor(t, st, 0)
	nomad.Append(frames[captureStart:]...)
	waitCursor(t, st, nomad.LastIndex())
	waitEditsQueued(t, st)
	cancel()
	<-done
	msgs, err := st.Pending(t.Context(), "matrix", 100000)
	if err != nil {
		t.Fatal(err)
	}
	return outboxView(msgs, room)
}

// waitCursor waits until the Nomad cursor exists and reaches index.
func waitCursor(t *testing.T, st *store.Store, index uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		at, _, ok, err := st.Cursor(t.Context(), "nomad")
		if err != nil {
			t.Fatal(err)
		}
		if ok && at >= index {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nomad cursor at %d (exists: %v), want %d", at, ok, index)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEditsQueued waits until the engine owes no edit: the debounced edits
// of every incident and storm summary are in the outbox. With the cursor
// at the end of the stream, what the room will show is then all queued.
func waitEditsQueued(t *testing.T, st *store.Store) {
	t.Helper()
	never := time.Now().Add(100 * 365 * 24 * time.Hour)
	deadline := time.Now().Add(30 * time.Second)
	for {
		owed := 0
		err := st.InTx(t.Context(), func(tx *store.Tx) error {
			ins, err := tx.DueIncidents(t.Context(), never)
			if err != nil {
				return err
			}
			sums, err := tx.DueSummaries(t.Context(), never)
			owed = len(ins) + len(sums)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if owed == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d edits still owed", owed)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAlerting starts the bot watching a fake Nomad that holds the frames
// before captureStart, posting incidents to room, and waits until its
// stream position is stored: until then a new Vigie starts at the
// cluster's index, by design. It returns the fake, the bot's store (read
// as an operator would) and the process.
func (e *matrixEnv) startAlerting(t *testing.T, room id.RoomID, frames []string) (*fakenomad.Server, *store.Store, *botProcess) {
	t.Helper()
	nomad := fakenomad.New(t, fakenomad.Config{HeartbeatInterval: 200 * time.Millisecond, Frames: frames[:captureStart]})
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("[nomad]\naddress = %q\nstream_timeout = \"3s\"\n[consul]\nwatch = false\n[alerts]\nedit_interval = \"200ms\"\n[[alerts.rooms]]\nroom = %q\n", nomad.URL, room)
	if err := os.WriteFile(e.config, append(cfg, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	bot, _ := e.start(t)
	e.alice.WaitForJoin(t, room, e.botID, 30*time.Second)
	st, err := store.Open(t.Context(), e.dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	waitCursor(t, st, 0)
	return nomad, st, bot
}

// A crash at any moment loses and repeats nothing: the bot is killed and
// restarted at random points while the scenario streams in, and the room
// ends up exactly as after an uninterrupted run.
func TestAlertsExactlyOnceAcrossKills(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	room := e.alice.CreateRoom(t, false, e.botID)
	frames := fakenomad.CaptureFrames()
	want := expectedView(t, frames, room.String())
	if len(want.Messages) < 4 {
		t.Fatalf("the scenario should raise several incidents:\n%s", want)
	}

	nomad, st, bot := e.startAlerting(t, room, frames)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	remaining := frames[captureStart:]
	kills := 0
	procs := []*botProcess{bot}
	for len(remaining) > 0 {
		n := min(1+rng.IntN(6), len(remaining))
		nomad.Append(remaining[:n]...)
		remaining = remaining[n:]
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		if rng.IntN(3) == 0 || (len(remaining) == 0 && kills < 3) {
			bot.kill()
			kills++
			bot, _ = e.start(t)
			procs = append(procs, bot)
		}
	}
	t.Logf("%d SIGKILLs", kills)
	waitCursor(t, st, nomad.LastIndex())
	waitEditsQueued(t, st)
	waitOutbox(t, e.dataDir, func(c map[string]int) bool { return c[store.StatePending] == 0 })

	reconciled := 0
	for _, p := range procs {
		reconciled += strings.Count(p.log(), "An interrupted attempt had delivered the message")
	}
	t.Logf("%d interrupted sends found already delivered and not repeated", reconciled)
	got := matrixView(e.alice.Messages(t, room), e.botID)
	if got.String() != want.String() {
		// Tell an engine duplicate (two rows) from a delivery duplicate (one row sent twice).
		var rows []string
		for id := int64(1); ; id++ {
			m, err := st.Message(t.Context(), id)
			if err != nil {
				break
			}
			rows = append(rows, fmt.Sprintf("%d %s att=%d err=%q %q", m.ID, m.State, m.Attempts, m.LastError, strings.SplitN(m.Plain, "\n", 2)[0]))
		}
		t.Logf("bot outbox:\n%s", strings.Join(rows, "\n"))
		for i, p := range procs {
			for _, l := range strings.Split(p.log(), "\n") {
				if strings.Contains(l, "echo") || strings.Contains(l, "interrupted") || strings.Contains(l, "First sync") {
					t.Logf("process %d: %s", i, l)
				}
			}
		}
		t.Fatalf("room after %d kills differs from an uninterrupted run\n--- got\n%s--- want\n%s", kills, got, want)
	}
	if slices.ContainsFunc(got.Messages, func(m string) bool { return strings.Contains(m, "web/web") }) {
		t.Fatal("a normal replacement of web raised an incident")
	}
	bot.stop(t)
}
