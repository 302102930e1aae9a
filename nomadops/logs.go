package nomadops

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// LogTail is the end of a task's log.
type LogTail struct {
	JobID, AllocID, Group, Task string
	Stream                      string // stdout or stderr
	Lines                       []string
	Truncated                   bool // the log has more lines than these
}

// Log tail bounds: lines by default and at most, and the bytes fetched
// per line asked for, within a maximum.
const (
	defaultLogLines = 20
	maxLogLines     = 500
	bytesPerLine    = 512
	maxLogBytes     = 1 << 20
)

// minAllocPrefix is the shortest allocation ID prefix taken, as the
// 8-character IDs Nomad's CLI shows.
const minAllocPrefix = 8

// Logs returns the last lines (default 20, at most 500) of a task's
// stdout or stderr. target is a job, whose newest allocation is read, or
// an allocation ID or prefix of at least 8 characters. task may be empty
// when the allocation has one task; otherwise the error lists them.
func (c *Client) Logs(ctx context.Context, target, task string, lines int, stderr bool) (LogTail, error) {
	if lines <= 0 {
		lines = defaultLogLines
	}
	lines = min(lines, maxLogLines)
	a, err := c.resolveAlloc(ctx, target)
	if err != nil {
		return LogTail{}, err
	}
	var tasks []string
	for name := range a.TaskStates {
		tasks = append(tasks, name)
	}
	slices.Sort(tasks)
	switch {
	case task == "" && len(tasks) == 1:
		task = tasks[0]
	case task == "" && len(tasks) == 0:
		return LogTail{}, fmt.Errorf("allocation %s of %s has no task started yet", shortID(a.ID), a.JobID)
	case task == "":
		return LogTail{}, fmt.Errorf("allocation %s of %s has several tasks, say which: %s", shortID(a.ID), a.JobID, strings.Join(tasks, ", "))
	case !slices.Contains(tasks, task):
		return LogTail{}, notFound("task", task, a.JobID, tasks)
	}
	tail := LogTail{JobID: a.JobID, AllocID: a.ID, Group: a.TaskGroup, Task: task, Stream: "stdout"}
	if stderr {
		tail.Stream = "stderr"
	}
	size := min(maxLogBytes, lines*bytesPerLine)
	q := queryOpts(ctx)
	q.Params = map[string]string{"task": task, "type": tail.Stream, "origin": api.OriginEnd,
		"offset": strconv.Itoa(size), "plain": "true", "follow": "false"}
	// Through the server, which forwards to the node: the API's AllocFS
	// would first try the node directly, and wants framed JSON.
	body, err := c.api.Raw().Response("/v1/client/fs/logs/"+a.ID, q)
	if err != nil {
		return LogTail{}, c.fail(fmt.Sprintf("read the %s of %s in allocation %s", tail.Stream, task, shortID(a.ID)), err)
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, int64(size)))
	if err != nil {
		return LogTail{}, c.fail(fmt.Sprintf("read the %s of %s in allocation %s", tail.Stream, task, shortID(a.ID)), err)
	}
	text := strings.TrimSuffix(strings.ToValidUTF8(string(data), "\uFFFD"), "\n")
	if text == "" {
		return tail, nil
	}
	all := strings.Split(text, "\n")
	// A full read may have started inside a line.
	if len(data) >= size {
		all, tail.Truncated = all[1:], true
	}
	if len(all) > lines {
		all, tail.Truncated = all[len(all)-lines:], true
	}
	tail.Lines = all
	return tail, nil
}

// resolveAlloc finds a job's newest allocation, or an allocation by ID
// prefix.
func (c *Client) resolveAlloc(ctx context.Context, target string) (*api.AllocationListStub, error) {
	_, _, err := c.api.Jobs().Info(target, queryOpts(ctx))
	if err == nil {
		allocs, _, err := c.api.Jobs().Allocations(target, false, queryOpts(ctx))
		if err != nil {
			return nil, c.fail("list the allocations of job "+target, err)
		}
		if len(allocs) == 0 {
			return nil, fmt.Errorf("job %s has no allocation", target)
		}
		newest := allocs[0]
		for _, a := range allocs {
			if a.CreateIndex > newest.CreateIndex {
				newest = a
			}
		}
		return newest, nil
	}
	if err = c.fail("read job "+target, err); status(err) != 404 {
		return nil, err
	}
	if len(target) >= minAllocPrefix && strings.Trim(target, "0123456789abcdef-") == "" {
		q := queryOpts(ctx)
		// Nomad's UUID index takes whole bytes: an even prefix.
		q.Prefix = target[:len(target)&^1]
		allocs, _, err := c.api.Allocations().List(q)
		if err != nil {
			return nil, c.fail("list allocations", err)
		}
		var found []*api.AllocationListStub
		for _, a := range allocs {
			if strings.HasPrefix(a.ID, target) {
				found = append(found, a)
			}
		}
		switch len(found) {
		case 1:
			return found[0], nil
		case 0:
		default:
			var ids []string
			for _, a := range found {
				ids = append(ids, a.ID)
			}
			return nil, fmt.Errorf("allocation prefix %s is ambiguous: %s", target, strings.Join(ids, ", "))
		}
	}
	return nil, c.jobNotFound(ctx, target)
}
