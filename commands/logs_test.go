package commands

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/vigie/vigie/nomadops"
)

// longLogs serves a 30-line log: too long for the room.
type longLogs struct{ NomadReader }

func (longLogs) Logs(_ context.Context, target, task string, lines int, stderr bool) (nomadops.LogTail, error) {
	t := nomadops.LogTail{JobID: target, AllocID: "aeb926df-c1d5", Group: "g", Task: "t", Stream: "stderr"}
	for i := range lines {
		t.Lines = append(t.Lines, fmt.Sprintf("line %d <b>", i))
	}
	return t, nil
}

func TestLongLogsGoToAThread(t *testing.T) {
	f := newConfirmFixture(t)
	if err := f.router.cfg.Registry.Register(&Logs{Nomad: longLogs{}}); err != nil {
		t.Fatal(err)
	}
	msgs := f.say(t, "@alice:x", "logs web 30 stderr")
	if len(msgs) != 2 || !strings.Contains(msgs[0].Plain, "📄 stderr of g/t, alloc aeb926df (job web), last 30 line(s): in the thread") ||
		msgs[1].ThreadRoot != msgs[0].ID || !strings.Contains(msgs[1].Plain, "line 29 <b>") || strings.Contains(msgs[1].HTML, "<b>") {
		t.Fatalf("logs:\n%s", plains(msgs))
	}
	if msgs := f.say(t, "@alice:x", "logs web 5"); len(msgs) != 1 || !strings.Contains(msgs[0].Plain, "line 4") {
		t.Fatalf("short logs:\n%s", plains(msgs))
	}
}

// colourLogs serves what a program wrote for a terminal.
type colourLogs struct{ NomadReader }

func (colourLogs) Logs(_ context.Context, target, task string, lines int, stderr bool) (nomadops.LogTail, error) {
	return nomadops.LogTail{JobID: target, AllocID: "aeb926df-c1d5", Group: "g", Task: "t", Stream: "stdout",
		Lines: []string{"\x1b[1;31mERROR\x1b[0m disk full\a", "fetch 10%\rfetch 100%", "\x1b]0;pwned title\x07done"}}, nil
}

// Task output loses its terminal control characters, as the watcher's
// stderr tails do.
func TestLogsLoseTerminalControls(t *testing.T) {
	f := newConfirmFixture(t)
	if err := f.router.cfg.Registry.Register(&Logs{Nomad: colourLogs{}}); err != nil {
		t.Fatal(err)
	}
	msgs := f.say(t, "@alice:x", "logs web")
	if len(msgs) != 1 || !strings.Contains(msgs[0].Plain, "ERROR disk full\nfetch 100%\ndone") || strings.ContainsAny(msgs[0].Plain+msgs[0].HTML, "\x1b\a\r") {
		t.Fatalf("logs: %q", plains(msgs))
	}
}
