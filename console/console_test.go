package console

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
)

type collect struct {
	mu  sync.Mutex
	got []commands.Incoming
}

func (c *collect) Handle(_ context.Context, in commands.Incoming) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, in)
	done := make(chan struct{})
	close(done)
	return done
}

func TestRunReadsCommands(t *testing.T) {
	in := strings.NewReader("ping\n\n# a comment\n!vigie help ping\r\n  !VIGIE   status  \n!vigies x\n" + strings.Repeat("y", 3<<20) + "\nlast")
	c := &collect{}
	con := New(in, &bytes.Buffer{}, "@alice:example.org", "!vigie", "", c)
	if err := con.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var texts []string
	ids := map[string]bool{}
	for _, g := range c.got {
		texts = append(texts, g.Text[:min(len(g.Text), 20)])
		if g.Sender != "@alice:example.org" || g.Transport != Transport || g.Room != Room || ids[g.EventID] {
			t.Errorf("bad incoming %+v", g)
		}
		ids[g.EventID] = true
	}
	want := []string{"ping", "help ping", "status", "!vigies x", strings.Repeat("y", 20), "last"}
	if strings.Join(texts, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q\nwant %q", texts, want)
	}
	if l := len(c.got[4].Text); l != maxLine {
		t.Fatalf("overlong line kept %d bytes, want %d", l, maxLine)
	}
}

func TestDeliverPrintsReadableText(t *testing.T) {
	var out bytes.Buffer
	con := New(strings.NewReader(""), &out, "@a:x", "!vigie", "", &collect{})
	ctx := t.Context()
	msgs := []outbox.Delivery{
		{OutMessage: store.OutMessage{ID: 1, Plain: "Job web failed\n2 allocations"}},
		{OutMessage: store.OutMessage{ID: 2, Plain: "alloc 1 exit 1"}, ThreadRootRemote: "msg-1"},
		{OutMessage: store.OutMessage{ID: 3, Plain: "Job web resolved"}, EditOfRemote: "msg-1"},
		{OutMessage: store.OutMessage{ID: 4, Plain: "pong", ReplyTo: "console:x:1"}},
	}
	var ids []string
	for _, m := range msgs {
		id, err := con.Deliver(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	want := "[msg-1] Job web failed\n2 allocations\n  ↳ [msg-1] alloc 1 exit 1\n✎ [msg-1] is now: Job web resolved\npong\n"
	if ids[0] != "msg-1" || ids[3] != "msg-4" {
		t.Fatalf("remote IDs %v", ids)
	}
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// An interactive console prompts before each command; the prompt waits for
// the command before it to be answered.
func TestRunPrompts(t *testing.T) {
	var out bytes.Buffer
	c := &collect{}
	if err := New(strings.NewReader("ping\nhelp\n"), &out, "@a:x", "!vigie", Prompt, c).Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != Prompt+Prompt+Prompt || len(c.got) != 2 {
		t.Fatalf("output %q after %d commands", got, len(c.got))
	}
}
