package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupLister is what backups needs.
type BackupLister interface {
	Targets() []backups.Target
	List(ctx context.Context, target string) ([]*backups.Backup, error)
}

// Backups lists what S3 holds for one target, or the latest of each.
type Backups struct {
	Backups BackupLister
}

// Spec implements Command.
func (b *Backups) Spec() Spec {
	return Spec{Name: "backups", Access: Read, Summary: "the backups S3 holds: when, size, duration, verified", Usage: "[target]",
		Help:    "Read from the manifests in S3 (the source of truth). A backup whose manifest is damaged or names a missing object is listed as broken and never counted.",
		MaxArgs: 1}
}

// backupsShown bounds the rows of one target's table.
const backupsShown = 20

// Run implements Handler.
func (b *Backups) Run(ctx context.Context, req *Request) (render.Node, error) {
	targets := b.Backups.Targets()
	if len(targets) == 0 {
		return render.Text("No backup target is configured ([[backups.targets]])."), nil
	}
	if len(req.Args) == 1 {
		list, err := b.Backups.List(ctx, req.Args[0])
		if err != nil {
			return render.Node{}, backupError(err)
		}
		return b.table(req, req.Args[0], list), nil
	}
	var rows [][]string
	for _, t := range targets {
		list, err := b.Backups.List(ctx, t.Name)
		if err != nil {
			return render.Node{}, err
		}
		good, broken := 0, 0
		var newest *backups.Backup
		for _, bk := range list {
			if bk.Good() {
				good, newest = good+1, bk
			} else {
				broken++
			}
		}
		row := []string{t.Name, t.Kind, fmt.Sprint(good), "never", "—", "—"}
		if newest != nil {
			row[3], row[4], row[5] = newest.Manifest.Started.UTC().Format("2006-01-02 15:04 UTC"), render.Bytes(newest.Manifest.StoredBytes), verified(newest)
		}
		if broken > 0 {
			row[2] += fmt.Sprintf(" (+%d broken)", broken)
		}
		rows = append(rows, row)
	}
	return render.Group(render.Heading(render.Text("Backups")), render.Table([]string{"target", "kind", "backups", "newest", "size", "verified"}, rows...)), nil
}

func (b *Backups) table(req *Request, target string, list []*backups.Backup) render.Node {
	if len(list) == 0 {
		return render.Text("No backup of " + target + " yet.")
	}
	var rows [][]string
	start := max(0, len(list)-backupsShown)
	for i := len(list) - 1; i >= start; i-- { // newest first
		bk := list[i]
		if !bk.Good() {
			rows = append(rows, []string{bk.ID, "—", "—", "—", "broken: " + bk.Broken})
			continue
		}
		m := bk.Manifest
		rows = append(rows, []string{bk.ID, m.Started.UTC().Format("2006-01-02 15:04 UTC"), render.Bytes(m.StoredBytes), took(m.Ended.Sub(m.Started)), verified(bk)})
	}
	out := []render.Node{render.Heading(render.Text("Backups of " + target)), render.Table([]string{"backup", "started", "size", "took", "verified"}, rows...)}
	if start > 0 {
		out = append(out, render.Line(render.Textf("And %d older.", start)))
	}
	return render.Group(out...)
}

// verified says how a backup's latest verification went.
func verified(b *backups.Backup) string {
	v := b.Verification
	switch {
	case v == nil:
		return "not yet"
	case v.OK:
		return "✅ " + v.Level + " " + v.At.UTC().Format("01-02 15:04")
	}
	return "❌ " + v.At.UTC().Format("01-02 15:04") + ": " + strings.TrimSpace(v.Error)
}
