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

// Commands runs command lines; the channel Handle returns is closed when
// the command no longer needs waiting for (it replied, or only follows a
// change it made).
type Commands interface {
	Handle(ctx context.Context, in commands.Incoming) <-chan struct{}
}

// Console reads commands and prints messages.
type Console struct {
	in      io.Reader
	out     io.Writer
	sender  string
	prefix  string
	cmds    Commands
	prompt  string // printed before each line is read; "" when not interactive
	session string // makes event IDs unique across console runs

	mu sync.Mutex // one message at a time on out
}

// Prompt is what an interactive console prints before reading a command.
const Prompt = "vigie> "

// New creates a console transport. Commands are accepted with or without
// prefix; sender is the identity they run as; prompt is printed before
// each command is read ("" for none, as when input is piped).
func New(in io.Reader, out io.Writer, sender, prefix, prompt string, cmds Commands) *Console {
	return &Console{in: in, out: out, sender: sender, prefix: prefix, prompt: prompt, cmds: cmds,
		session: fmt.Sprintf("%x", time.Now().UnixNano())}
}

// maxLine bounds one command line; longer lines are still read whole and
// answered (the router truncates its reply), never a crash.
const maxLine = 1 << 20

// Run reads stdin until end of input or ctx is done (a signal), whichever
// comes first, even while stdin stays open. Like a shell, each command is
// answered before the next line is read, so replies come in order; a
// change that goes on (a deployment followed until it completes) does not
// hold the next command (say, the promotion it waits for). Empty lines and
// lines starting with # are skipped, so command files can be piped in.
func (c *Console) Run(ctx context.Context) error {
	lines := make(chan lineRead)
	next := make(chan struct{}, 1)
	// The reader's goroutine blocks on stdin; when ctx ends first it stays
	// blocked until the process exits (or the next line), its result dropped.
	go c.read(ctx, lines, next)
	for n := 1; ; n++ {
		if c.prompt != "" {
			c.print(c.prompt)
		}
		next <- struct{}{}
		var l lineRead
		select {
		case <-ctx.Done():
			return nil
		case l = <-lines:
		}
		if text := strings.TrimSpace(l.text); text != "" && !strings.HasPrefix(text, "#") {
			settled := c.cmds.Handle(ctx, commands.Incoming{
				Transport: Transport, Room: Room, EventID: fmt.Sprintf("console:%s:%d", c.session, n),
				Sender: c.sender, Text: c.strip(text),
			})
			select {
			case <-ctx.Done():
				return nil
			case <-settled:
			}
		}
		if l.err == io.EOF {
			return nil
		}
		if l.err != nil {
			return fmt.Errorf("read standard input: %w", l.err)
		}
	}
}

type lineRead struct {
	text string
	err  error
}

// read reads a line each time Run asks for one, until an error.
func (c *Console) read(ctx context.Context, lines chan<- lineRead, next <-chan struct{}) {
	r := bufio.NewReaderSize(c.in, 64<<10)
	for {
		select {
		case <-ctx.Done():
			return
		case <-next:
		}
		text, err := readLine(r)
		select {
		case <-ctx.Done():
			return
		case lines <- lineRead{text, err}:
		}
		if err != nil {
			return
		}
	}
}

func (c *Console) print(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprint(c.out, s)
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
