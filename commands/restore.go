package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupRestorer is what restore needs.
type BackupRestorer interface {
	PlanRestore(ctx context.Context, target, id, database, into string) (*backups.RestorePlan, *backups.SnapshotRestore, error)
	Restore(ctx context.Context, p *backups.RestorePlan, trigger string, report func(backups.Progress)) (*backups.RestoreResult, error)
}

// Restore restores a PostgreSQL backup into a new database of the
// target's server, never over one that holds tables; by default a second
// person approves it. Consul and Nomad snapshots are restored by hand:
// the reply gives the commands.
type Restore struct {
	Backups BackupRestorer
	Timeout time.Duration
}

// Spec implements Command.
func (r *Restore) Spec() Spec {
	return Spec{Name: "restore", Access: Change, TwoPerson: true, Summary: "restore a PostgreSQL backup into a new database",
		Usage: "<target> [backup] [into=<database>] [db=<database in the backup>]",
		Help: "Restores the newest good backup, or the one given, into a new database (default <database>_restored_<date>) or an existing empty one, " +
			"with pg_restore -j, then compares every table's rows with those the dump holds. A database that holds tables is never " +
			"restored into. For Consul and Nomad targets, replies with the commands that restore the snapshot by hand.",
		MinArgs: 1, MaxArgs: 2, Options: []string{"into", "db"}, Timeout: r.Timeout}
}

// Preview implements Confirmable.
func (r *Restore) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	id := ""
	if len(req.Args) == 2 {
		id = req.Args[1]
	}
	plan, byHand, err := r.Backups.PlanRestore(ctx, req.Args[0], id, req.Options["db"], req.Options["into"])
	if err != nil {
		return nil, backupError(err)
	}
	if byHand != nil {
		return nil, Usagef("%s is a %s snapshot: Vigie does not restore those from the chat. Fetch and restore it by hand:\n%s",
			byHand.Backup.ID, byHand.Backup.Manifest.Kind, byHand.Command)
	}
	m := plan.Backup.Manifest
	into := "new database " + plan.Into
	if plan.Existing {
		into = "existing empty database " + plan.Into
	}
	summary := fmt.Sprintf("%s (%s) into %s", plan.Backup.ID, plan.Object.Database, plan.Into)
	preview := render.Group(
		render.Line(render.Text(fmt.Sprintf("Restore %s, database %s, taken %s: %s stored, %d tables, %d rows,",
			plan.Backup.ID, plan.Object.Database, m.Started.UTC().Format("2006-01-02 15:04 UTC"), render.Bytes(plan.Object.StoredBytes), len(plan.Facts.Tables), plan.Rows()))),
		render.Line(render.Text(fmt.Sprintf("into the %s on %s.", into, plan.Server))),
	)
	return &Proposal{Resource: "backup:" + plan.Target, Summary: summary, Preview: preview, State: plan}, nil
}

// Apply implements Confirmable.
func (r *Restore) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	plan := p.State.(*backups.RestorePlan)
	res, err := r.Backups.Restore(ctx, plan, req.Sender, func(pr backups.Progress) { _ = progress.Update(ctx, progressLine(pr)) })
	if err != nil {
		return render.Node{}, err
	}
	var rows int64
	for _, t := range res.Tables {
		rows += t.Rows
	}
	return render.Text(fmt.Sprintf("✅ %s restored into %s in %s: %d tables, %d rows, as dumped.", plan.Backup.ID, plan.Into, took(res.Took), len(res.Tables), rows)), nil
}
