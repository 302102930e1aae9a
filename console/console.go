// Package console is a transport over the terminal, like Hubot's shell
// adapter: the same command router and the same rendering as Matrix, one
// command per line on stdin, replies as plain text on stdout.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/outbox"
)

// Transport and Room name console messages in the outbox.
const (
	Transport = "console"
	Room      = "console"
)

// Commands runs command lines.
type Commands interface {
	Handle(ctx context.Context, in commands.Incoming)
	Wait()
}

// Console reads commands and prints messages.
type Console struct {
	in      io.Reader
	out     io.Writer
	sender  string
	prefix  string
	cmds    Commands
	session string // makes event IDs unique across console runs

	mu sync.Mutex // one message at a time on out
}

// New creates a console transport. Commands are accepted with or without
// prefix; sender is the identity they run as.
func New(in io.Reader, out io.Writer, sender, prefix string, cmds Commands) *Console {
	return &Console{in: in, out: out, sender: sender, prefix: prefix, cmds: cmds,
		session: fmt.Sprintf("%x", time.Now().UnixNano())}
}

// maxLine bounds one command line; longer lines are still read whole and
// answered (the router truncates its reply), never a crash.
const maxLine = 1 << 20

// Run reads stdin until end of input or ctx is done. Like a shell, each
// command finishes before the next line is read, so replies come in order.
// Empty lines and lines starting with # are skipped, so command files can be
// piped in.
func (c *Console) Run(ctx context.Context) error {
	r := bufio.NewReaderSize(c.in, 64<<10)
	for n := 1; ctx.Err() == nil; n++ {
		line, err := readLine(r)
		if text := strings.TrimSpace(line); text != "" && !strings.HasPrefix(text, "#") {
			c.cmds.Handle(ctx, commands.Incoming{
				Transport: Transport, Room: Room, EventID: fmt.Sprintf("console:%s:%d", c.session, n),
				Sender: c.sender, Text: c.strip(text),
			})
			c.cmds.Wait()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read standard input: %w", err)
		}
	}
	return nil
}

// readLine returns one line without its newline, keeping at most maxLine
// bytes of an overlong one.
func readLine(r *bufio.Reader) (string, error) {
	var sb strings.Builder
	for {
		chunk, isPrefix, err := r.ReadLine()
		if sb.Len() < maxLine {
			sb.Write(chunk[:min(len(chunk), maxLine-sb.Len())])
		}
		if err != nil || !isPrefix {
			return sb.String(), err
		}
	}
}

func (c *Console) strip(text string) string {
	if c.prefix != "" && len(text) >= len(c.prefix) && strings.EqualFold(text[:len(c.prefix)], c.prefix) {
		rest := text[len(c.prefix):]
		if rest == "" || rest[0] == ' ' || rest[0] == '\t' {
			return strings.TrimSpace(rest)
		}
	}
	return text
}

// Deliver prints a message. Messages that later ones may edit or thread
// under (alerts, not command replies) are tagged [msg-N], so that a reader
// can follow an incident's story in a terminal.
func (c *Console) Deliver(_ context.Context, d outbox.Delivery) (string, error) {
	id := fmt.Sprintf("msg-%d", d.ID)
	text := d.Plain
	switch {
	case d.EditOfRemote != "":
		text = "✎ [" + d.EditOfRemote + "] is now: " + text
	case d.ThreadRootRemote != "":
		text = indent("↳ ["+d.ThreadRootRemote+"] "+text, "  ")
	case d.ReplyTo == "":
		text = "[" + id + "] " + text
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintln(c.out, text); err != nil {
		return "", outbox.Permanent(fmt.Errorf("write to standard output: %w", err))
	}
	return id, nil
}

func indent(s, by string) string {
	return by + strings.ReplaceAll(s, "\n", "\n"+by)
}
