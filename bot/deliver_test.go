package bot

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

type noCommands struct{}

func (noCommands) Handle(context.Context, commands.Incoming) <-chan struct{} { return nil }

// The relations the incident messages of later issues rely on (edit of an
// earlier message, thread under it, reply to a command), delivered through
// the outbox to a real homeserver and read back as a client sees them.
func TestDeliverRelationsOnRealHomeserver(t *testing.T) {
	hs := testenv.StartDendrite(t)
	botUser := hs.Register(t, "vigie", "bot-password-1")
	alice := hs.Register(t, "alice", "alice-password-1")
	room := alice.CreateRoom(t, false, botUser.ID)

	dir := t.TempDir()
	st, err := store.Open(t.Context(), filepath.Join(dir, "data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b := New(Config{
		Homeserver: hs.URL, UserID: botUser.ID.String(), Password: "bot-password-1", DeviceName: "test",
		CommandPrefix: "!vigie", AllowedInviters: []string{alice.ID.String()}, DataDir: dir, Started: time.Now(),
	}, st, noCommands{}, nil, zerolog.Nop())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	box := outbox.New(st)
	sender := box.NewSender(Transport, st, b, outbox.SenderConfig{}, telemetry.NewMetrics())
	done := make(chan struct{}, 2)
	go func() { b.Run(ctx); done <- struct{}{} }()
	go func() { sender.Run(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	alice.WaitForJoin(t, room, botUser.ID, 30*time.Second)

	cmd := alice.SendText(t, room, "!vigie status")
	msg := func(text string) render.Message { return render.Render(render.Bold(render.Text(text))) }
	ids, err := box.Send(ctx, outbox.Message{Transport: Transport, Room: room.String(), Content: msg("Job web failing"), ReplyTo: cmd.String()})
	if err != nil {
		t.Fatal(err)
	}
	root := ids[0]
	if _, err := box.Send(ctx,
		outbox.Message{Transport: Transport, Room: room.String(), Content: msg("alloc 1: exit 1"), ThreadRoot: root},
		outbox.Message{Transport: Transport, Room: room.String(), Content: msg("Job web resolved"), EditOf: root},
	); err != nil {
		t.Fatal(err)
	}
	sent := func(text string) func([]*event.Event) bool {
		return func(msgs []*event.Event) bool {
			for _, m := range msgs {
				if m.Sender == botUser.ID && m.Content.AsMessage().Body == text {
					return true
				}
			}
			return false
		}
	}
	alice.WaitForMessages(t, room, 10*time.Second, sent("* Job web resolved"))
	byBody := map[string]*event.Event{}
	for _, m := range alice.Messages(t, room) {
		if m.Sender == botUser.ID {
			byBody[m.Content.AsMessage().Body] = m
		}
	}
	orig, thread, edit := byBody["Job web failing"], byBody["alloc 1: exit 1"], byBody["* Job web resolved"]
	if orig == nil || thread == nil || edit == nil || len(byBody) != 3 {
		t.Fatalf("bot messages: %v", byBody)
	}
	if c := orig.Content.AsMessage(); c.MsgType != event.MsgNotice || c.FormattedBody != "<strong>Job web failing</strong>" || c.RelatesTo.GetReplyTo() != cmd {
		t.Errorf("original: %+v", c)
	}
	if rel := thread.Content.AsMessage().RelatesTo; rel.GetThreadParent() != orig.ID {
		t.Errorf("thread reply relates to %+v, want thread of %s", rel, orig.ID)
	}
	ec := edit.Content.AsMessage()
	if ec.RelatesTo.GetReplaceID() != orig.ID || ec.NewContent == nil || ec.NewContent.Body != "Job web resolved" ||
		ec.NewContent.FormattedBody != "<strong>Job web resolved</strong>" || ec.NewContent.MsgType != event.MsgNotice {
		t.Errorf("edit: relates %+v, new content %+v", ec.RelatesTo, ec.NewContent)
	}
	if ec.RelatesTo.GetReplyTo() != "" || ec.RelatesTo.GetThreadParent() != "" {
		t.Errorf("edit carries extra relations: %+v", ec.RelatesTo)
	}

	// A long edit's fallback body is its headline, cut between words (mautrix
	// cuts at 50 bytes, mid-word and mid-character).
	long := render.Render(render.Heading(render.Text("🔴 CRITICAL · web-frontend/api-gateway: allocations failing on every node of the cluster since the last deployment of version 42 rolled out to the whole fleet at noon")),
		render.Line(render.Text("Latest: "+strings.Repeat("task server exited with code 1 ", 20))))
	if _, err := box.Send(ctx, outbox.Message{Transport: Transport, Room: room.String(), Content: long, EditOf: root}); err != nil {
		t.Fatal(err)
	}
	var fallback string
	alice.WaitForMessages(t, room, 10*time.Second, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			if c := m.Content.AsMessage(); m.Sender == botUser.ID && c.NewContent != nil && c.NewContent.Body == long.Plain {
				fallback = c.Body
				return true
			}
		}
		return false
	})
	if fallback != "* 🔴 CRITICAL · web-frontend/api-gateway: allocations failing on every node of the cluster since the last deployment of version 42 rolled out to the whole…" {
		t.Errorf("edit fallback %q", fallback)
	}
}
