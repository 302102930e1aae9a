package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// took prints a run's duration for people: 850ms, 42s, 3m12s, 1h04m.
func took(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}

// age prints how long ago something was, coarsely: 40m, 5h, 3d.
func age(d time.Duration) string {
	switch {
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// progressLine shows a run in progress: stage, bytes, rate, elapsed.
func progressLine(p backups.Progress) render.Node {
	rate := ""
	if secs := p.Elapsed.Seconds(); secs >= 1 && p.Raw > 0 {
		rate = fmt.Sprintf(", %s/s", render.Bytes(int64(float64(p.Raw)/secs)))
	}
	stage := p.Stage
	if stage == "" {
		stage = "starting"
	}
	return render.Group(render.Text(fmt.Sprintf("⏳ %s of %s: %s — %s read, %s stored%s, %s", p.Action, p.Target, stage,
		render.Bytes(p.Raw), render.Bytes(p.Stored), rate, took(p.Elapsed))))
}

// backupError turns the service's errors into replies: an unknown target
// is the user's mistake (its usage and the targets), the rest is news.
func backupError(err error) error {
	var unknown *backups.UnknownTargetError
	if errors.As(err, &unknown) {
		return Usagef("no backup target %q (targets: %s)", unknown.Name, strings.Join(unknown.Known, ", "))
	}
	return err
}

// live runs a long backup operation in the command's progress message:
// it posts at once, is edited with the progress, and ends with the
// result or the error, so the command itself replies nothing more.
func live(ctx context.Context, req *Request, start string, run func(report func(backups.Progress)) (render.Node, error)) (render.Node, error) {
	p := req.Progress()
	if err := p.Update(ctx, render.Text("⏳ "+start)); err != nil {
		return render.Node{}, err
	}
	result, err := run(func(pr backups.Progress) { _ = p.Update(ctx, progressLine(pr)) })
	if err != nil {
		err = backupError(err)
		var usage *UsageError
		if errors.As(err, &usage) {
			_ = p.Update(ctx, render.Text("⚠️ "+err.Error()))
			return render.Node{}, err
		}
		_ = p.Update(ctx, render.Group(render.Text("⚠️ "+req.Name+" failed: "+err.Error())))
		return render.Node{}, shownError{err}
	}
	return render.Node{}, p.Update(ctx, result)
}
