package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupRunner is what backup needs.
type BackupRunner interface {
	Backup(ctx context.Context, target, trigger string, report func(backups.Progress)) (*backups.Manifest, error)
	PlanPrune(ctx context.Context, target string) (*backups.PrunePlan, error)
	Prune(ctx context.Context, p *backups.PrunePlan, trigger string) (*backups.PruneResult, error)
}

// Backup backs a target up now. It destroys nothing, so it runs at once,
// without a confirmation code; the retention applies after, as after a
// scheduled backup.
type Backup struct {
	Backups BackupRunner
	Timeout time.Duration // backups.timeout: how long a run may take
}

// Spec implements Command.
func (b *Backup) Spec() Spec {
	return Spec{Name: "backup", Access: Change, Summary: "back a target up now (PostgreSQL, Consul or Nomad to S3)", Usage: "<target>",
		Help: "Streams the target's dump or snapshot through zstd into S3 and writes its manifest, showing the progress in one message " +
			"edited as it goes. One run per target at a time. The retention applies after a good backup. See also backups, verify, restore, prune, backup report.",
		MinArgs: 1, MaxArgs: 1, Timeout: b.Timeout}
}

// Run implements Handler.
func (b *Backup) Run(ctx context.Context, req *Request) (render.Node, error) {
	target := req.Args[0]
	return live(ctx, req, "backing "+target+" up", func(report func(backups.Progress)) (render.Node, error) {
		m, err := b.Backups.Backup(ctx, target, req.Sender, report)
		if err != nil {
			return render.Node{}, err
		}
		out := []render.Node{render.Line(render.Text(fmt.Sprintf("✅ %s backed up: %s, %s stored (%s raw) in %s.",
			target, m.ID, render.Bytes(m.StoredBytes), render.Bytes(m.RawBytes), took(m.Ended.Sub(m.Started)))))}
		plan, err := b.Backups.PlanPrune(ctx, target)
		if err == nil {
			var res *backups.PruneResult
			if res, err = b.Backups.Prune(ctx, plan, req.Sender); err == nil && len(res.Deleted) > 0 {
				out = append(out, render.Line(render.Text(fmt.Sprintf("Retention (%s) deleted %d older backup(s).", plan.Retention, len(res.Deleted)))))
			}
		}
		if err != nil {
			out = append(out, render.Line(render.Text("⚠️ the retention could not be applied: "+err.Error())))
		}
		return render.Group(out...), nil
	})
}
