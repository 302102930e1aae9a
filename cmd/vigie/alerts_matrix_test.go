package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/store"
)

// framesUpTo returns the captured frames with an index up to max.
func framesUpTo(t *testing.T, frames []string, max uint64) []string {
	t.Helper()
	var out []string
	for _, f := range frames {
		var fr struct{ Index uint64 }
		if err := json.Unmarshal([]byte(f), &fr); err != nil {
			t.Fatal(err)
		}
		if fr.Index <= max {
			out = append(out, f)
		}
	}
	return out
}

// editOf waits for the bot's edit of a message whose new body contains want.
func editOf(root id.EventID, want string) func([]*event.Event) bool {
	return func(msgs []*event.Event) bool {
		for _, m := range msgs {
			c := m.Content.AsMessage()
			if c.RelatesTo.GetReplaceID() == root && c.NewContent != nil && strings.Contains(c.NewContent.Body, want) {
				return true
			}
		}
		return false
	}
}

// Alice handles the alert as the shipped policy lets ops do: reactions
// and commands, authorized by her LDAP groups.
func TestAlertReactionsAndCommandsInMatrix(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	e.useDirectory(t)
	room := e.alice.CreateRoom(t, false, e.botID)
	frames := fakenomad.CaptureFrames()
	nomad, st, bot := e.startAlerting(t, room, frames)

	// The crasher fails (index 23): one incident message, its stderr in the thread.
	nomad.Append(framesUpTo(t, frames, 23)[captureStart:]...)
	var root id.EventID
	msgs := e.alice.WaitForMessages(t, room, 20*time.Second, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			c := m.Content.AsMessage()
			if m.Sender == e.botID && c.RelatesTo == nil && strings.Contains(c.Body, "crasher/crasher: allocations failing") {
				root = m.ID
				return true
			}
		}
		return false
	})
	if root == "" || len(msgs) == 0 {
		t.Fatal("no incident message")
	}
	e.alice.WaitForMessages(t, room, 10*time.Second, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			c := m.Content.AsMessage()
			if c.RelatesTo.GetThreadParent() == root && strings.Contains(c.Body, "crashing on purpose") {
				return true
			}
		}
		return false
	})

	if _, err := e.alice.Client.SendReaction(t.Context(), room, root, "👀"); err != nil {
		t.Fatal(err)
	}
	e.alice.WaitForMessages(t, room, 10*time.Second, editOf(root, "👀 acknowledged by "+e.alice.ID.String()))
	ev := e.alice.SendText(t, room, "!vigie alerts")
	e.alice.WaitForMessages(t, room, 10*time.Second, hasReply(e.botID, ev, "👀 "+e.alice.ID.String()))

	if _, err := e.alice.Client.SendReaction(t.Context(), room, root, "🔇"); err != nil {
		t.Fatal(err)
	}
	e.alice.WaitForMessages(t, room, 10*time.Second, editOf(root, "🔇 silenced by "+e.alice.ID.String()))
	ev = e.alice.SendText(t, room, "!vigie silences")
	e.alice.WaitForMessages(t, room, 10*time.Second, hasReply(e.botID, ev, "until resolved · by "+e.alice.ID.String()))

	// Reactions are audited like typed commands.
	log, err := st.AuditLog(t.Context(), store.AuditFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var acked, silenced bool
	for _, r := range log {
		acked = acked || (r.Command == "ack" && r.Outcome == "ok" && r.Actor == e.alice.ID.String())
		silenced = silenced || (r.Command == "silence" && r.Outcome == "ok")
	}
	if !acked || !silenced {
		t.Fatalf("audit log: %+v", log)
	}
	bot.stop(t)
}
