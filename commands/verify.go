package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupVerifier is what verify needs.
type BackupVerifier interface {
	Verify(ctx context.Context, target, id, trigger string, report func(backups.Progress)) (*backups.Verification, error)
}

// Verify proves a backup: its checksums, a snapshot's own sums, or a real
// restore of a PostgreSQL dump on the verify server with the rows the
// dump holds. It reads and restores into a scratch database,
// destroying nothing, so it runs at once.
type Verify struct {
	Backups BackupVerifier
	Timeout time.Duration
}

// Spec implements Command.
func (v *Verify) Spec() Spec {
	return Spec{Name: "verify", Access: Change, Summary: "prove a backup restores (the newest, or the one given)", Usage: "<target> [backup]",
		Help: "Checks the stored objects against the manifest's SHA-256; a Consul or Nomad snapshot against its own SHA256SUMS; a PostgreSQL dump by " +
			"restoring it (pg_restore -j) into a scratch database on the target's verify server and comparing every table's rows with those " +
			"the dump holds, then dropping the scratch database. The result is kept beside the manifest.",
		MinArgs: 1, MaxArgs: 2, Timeout: v.Timeout}
}

// Run implements Handler.
func (v *Verify) Run(ctx context.Context, req *Request) (render.Node, error) {
	target, id := req.Args[0], ""
	if len(req.Args) == 2 {
		id = req.Args[1]
	}
	return live(ctx, req, "verifying "+target, func(report func(backups.Progress)) (render.Node, error) {
		res, err := v.Backups.Verify(ctx, target, id, req.Sender, report)
		if err != nil {
			if res != nil && res.BackupID != "" {
				return render.Node{}, fmt.Errorf("%s: %w", res.BackupID, err)
			}
			return render.Node{}, err
		}
		return render.Group(render.Line(render.Text(fmt.Sprintf("✅ %s verified (%s) in %s.", res.BackupID, res.Level, took(res.Duration)))),
			render.Line(render.Text(res.Detail))), nil
	})
}
