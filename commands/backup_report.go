package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupStatus is what backup report needs.
type BackupStatus interface {
	Status(ctx context.Context, garage *backups.Garage) backups.Report
}

// BackupReport posts the backup report on demand; the same report goes to
// backups.report_room on its schedule.
type BackupReport struct {
	Backups BackupStatus
	Garage  *backups.Garage // nil: no Garage figures
}

// Spec implements Command.
func (b *BackupReport) Spec() Spec {
	return Spec{Name: "backup report", Access: Read, Summary: "how every backup target stands, as in the daily report",
		Help: "One row per target: the last good backup, its age, its size and how it changed against the one before (a dump that shrinks by half " +
			"is a warning sign), how long it took, the last verification, the next run and the state. With Garage's admin API configured, the " +
			"bucket's objects and bytes and the cluster's health."}
}

// Run implements Handler.
func (b *BackupReport) Run(ctx context.Context, req *Request) (render.Node, error) {
	return RenderBackupReport(b.Backups.Status(ctx, b.Garage)), nil
}

// shrinkWarning is the size change below which a backup is flagged.
const shrinkWarning = -0.30

// RenderBackupReport renders the report: a table in Matrix (aligned text
// on the console) and Garage's figures.
func RenderBackupReport(rep backups.Report) render.Node {
	if len(rep.Targets) == 0 {
		return render.Text("No backup target is configured ([[backups.targets]]).")
	}
	var rows [][]string
	var notes []render.Node
	worst := "ok"
	for _, st := range rep.Targets {
		t := st.Target
		row := []string{t.Name, "never", "—", "—", "—", "—", next(st.NextBackup, rep.At), stateMark(st.State())}
		if st.Err != nil {
			notes = append(notes, render.Line(render.Text(t.Name+": "+st.Err.Error())))
		}
		if g := st.LastGood; g != nil {
			m := g.Manifest
			row[1] = m.Started.UTC().Format("01-02 15:04")
			row[2] = age(rep.At.Sub(m.Ended))
			row[3] = render.Bytes(m.StoredBytes)
			if p := st.Previous; p != nil && p.Manifest.StoredBytes > 0 {
				change := float64(m.StoredBytes-p.Manifest.StoredBytes) / float64(p.Manifest.StoredBytes)
				row[3] += sizeChange(change)
				if change <= shrinkWarning {
					row[3] += " ⚠️"
					notes = append(notes, render.Line(render.Text(fmt.Sprintf("%s: the last backup is %.0f%% smaller than the one before: check what the source holds.", t.Name, -change*100))))
				}
			}
			row[4] = took(m.Ended.Sub(m.Started))
		}
		if v := st.Verified; v != nil {
			row[5] = "✅ " + age(rep.At.Sub(v.At)) + " ago"
			if !v.OK {
				row[5] = "❌ " + age(rep.At.Sub(v.At)) + " ago"
			}
		}
		if st.LastRunFailed() {
			notes = append(notes, render.Line(render.Text(fmt.Sprintf("%s: the last backup run (%s) %s: %s", t.Name,
				st.LastRun.Started.UTC().Format("01-02 15:04"), st.LastRun.Outcome, st.LastRun.Error))))
		}
		if st.Broken > 0 {
			notes = append(notes, render.Line(render.Text(fmt.Sprintf("%s: %d broken backup(s) listed (see backups %s).", t.Name, st.Broken, t.Name))))
		}
		if worse(st.State(), worst) {
			worst = st.State()
		}
		rows = append(rows, row)
	}
	head := "✅ Backups: all good"
	if worst != "ok" {
		head = "⚠️ Backups: attention needed"
	}
	out := []render.Node{render.Heading(render.Text(head + " · " + rep.At.UTC().Format("2006-01-02 15:04 UTC"))),
		render.Table([]string{"target", "last good", "age", "size (change)", "took", "verified", "next", "state"}, rows...)}
	out = append(out, notes...)
	switch {
	case rep.GarageErr != nil:
		out = append(out, render.Line(render.Text("Garage: "+rep.GarageErr.Error())))
	case rep.Garage != nil:
		g := rep.Garage
		out = append(out, render.Line(render.Text(fmt.Sprintf("Garage (admin API %s): cluster %s, %d/%d storage nodes, %d/%d partitions all OK; bucket %s: %d objects, %s, %d unfinished uploads.",
			g.API, g.Health, g.StorageNodesOK, g.StorageNodes, g.PartitionsAllOK, g.Partitions, rep.Bucket, g.Objects, render.Bytes(g.Bytes), g.UnfinishedUploads))))
	}
	return render.Group(out...)
}

// stateOrder ranks states from good to bad.
var stateOrder = map[string]int{"ok": 0, "on demand": 0, "running": 1, "never": 2, "stale": 3, "unknown": 4, "failed": 5}

func worse(a, b string) bool { return stateOrder[a] > stateOrder[b] }

func stateMark(s string) string {
	switch s {
	case "ok":
		return "✅ ok"
	case "running":
		return "⏳ running"
	case "on demand":
		return "on demand"
	}
	return "❌ " + s
}

// sizeChange prints a relative size change: " (+3%)", " (±0%)".
func sizeChange(change float64) string {
	if change > -0.005 && change < 0.005 {
		return " (±0%)"
	}
	return fmt.Sprintf(" (%+.0f%%)", change*100)
}

// next prints when a run comes, "on demand" without a schedule.
func next(at, now time.Time) string {
	if at.IsZero() {
		return "on demand"
	}
	return "in " + age(at.Sub(now))
}
