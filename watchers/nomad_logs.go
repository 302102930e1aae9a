package watchers

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/render"
)

const (
	nomadLogTimeout = 5 * time.Second
	// nomadLogReadMax bounds what is read of a log, should a server ignore
	// origin=end and send the whole file.
	nomadLogReadMax = 256 << 10
	// tailCacheSize bounds the failures remembered per Watch run.
	tailCacheSize = 512
)

// tailCache remembers the stderr tail fetched for each failure of a task, so
// that the events that follow about the same failure reuse it instead of
// fetching it again. Oldest entries go first when it is full.
type tailCache struct {
	entries map[string]tailEntry
	order   []string
}

type tailEntry struct {
	failure int64 // Unix nanoseconds of the task event that was the failure
	tail    string
}

func newTailCache() *tailCache {
	return &tailCache{entries: map[string]tailEntry{}}
}

func (c *tailCache) get(key string, failure int64) (string, bool) {
	e, ok := c.entries[key]
	return e.tail, ok && e.failure == failure
}

func (c *tailCache) put(key string, failure int64, tail string) {
	if _, ok := c.entries[key]; !ok {
		if len(c.order) >= tailCacheSize {
			delete(c.entries, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, key)
	}
	c.entries[key] = tailEntry{failure: failure, tail: tail}
}

// taskFailure returns the time of the task event that makes t worth a
// stderr tail, 0 if none: the task failed (its latest event then), or it
// terminated with a non-zero exit code or OOM since it was last started,
// unless Nomad was killing it (a stop or a migration ends with "Killing",
// then "Terminated" with exit code 130).
func taskFailure(t Task) int64 {
	if t.Failed {
		if len(t.Events) == 0 {
			return 1
		}
		return max(t.Events[len(t.Events)-1].Time.UnixNano(), 1)
	}
	for i := len(t.Events) - 1; i >= 0; i-- {
		switch e := t.Events[i]; e.Type {
		case "Started":
			return 0
		case "Terminated":
			if e.ExitCode == 0 && !e.OOMKilled {
				return 0
			}
			for j := i - 1; j >= 0 && t.Events[j].Type != "Started"; j-- {
				if t.Events[j].Type == "Killing" {
					return 0
				}
			}
			return max(e.Time.UnixNano(), 1)
		}
	}
	return 0
}

// addStderrTails fills StderrTail for the failed tasks of the allocations
// in events.
func (r *nomadRun) addStderrTails(ctx context.Context, events []Event) {
	for _, ev := range events {
		a := ev.Alloc
		if a == nil {
			continue
		}
		for i := range a.Tasks {
			t := &a.Tasks[i]
			failure := taskFailure(*t)
			if failure == 0 {
				continue
			}
			key := a.ID + "/" + t.Name
			if tail, ok := r.tails.get(key, failure); ok {
				t.StderrTail = tail
				continue
			}
			tail, err := r.n.stderrTail(ctx, ev.Namespace, a.ID, t.Name)
			if err != nil {
				zerolog.Ctx(ctx).Debug().Err(err).Str("alloc", a.ID).Str("task", t.Name).Msg("Could not read the stderr of a failed Nomad task")
			}
			// Failures are remembered too: a log that cannot be read now is
			// not worth a timeout per event.
			r.tails.put(key, failure, tail)
			t.StderrTail = tail
		}
	}
}

// stderrTail fetches the last LogTailBytes of a task's stderr.
func (n *Nomad) stderrTail(ctx context.Context, namespace, allocID, task string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, nomadLogTimeout)
	defer cancel()
	q := url.Values{
		"task": {task}, "type": {"stderr"}, "origin": {"end"}, "plain": {"true"},
		// One byte more than kept, to tell a cut first line from a whole one.
		"offset": {strconv.Itoa(n.cfg.LogTailBytes + 1)},
	}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	resp, err := n.get(ctx, "/v1/client/fs/logs/"+url.PathEscape(allocID), q)
	if err != nil {
		return "", err
	}
	defer closeBody(resp)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET logs: %s: %s", resp.Status, readSnippet(resp))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, nomadLogReadMax))
	if err != nil {
		return "", err
	}
	return cleanTail(data, n.cfg.LogTailBytes), nil
}

// cleanTail keeps at most limit bytes of the end of a log, starting at a
// line boundary when the log was longer, without terminal escapes and as
// valid UTF-8. Escaping for display is the renderer's job.
func cleanTail(data []byte, limit int) string {
	if len(data) > limit {
		data = data[len(data)-limit-1:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		} else {
			data = data[1:]
		}
	}
	return render.Terminal(string(data))
}
