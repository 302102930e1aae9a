package commands

import (
	"context"
	"fmt"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
)

// BackupPruner is what prune needs.
type BackupPruner interface {
	PlanPrune(ctx context.Context, target string) (*backups.PrunePlan, error)
	Prune(ctx context.Context, p *backups.PrunePlan, trigger string) (*backups.PruneResult, error)
}

// Prune applies a target's retention now, after showing what goes.
type Prune struct {
	Backups BackupPruner
}

// Spec implements Command.
func (p *Prune) Spec() Spec {
	return Spec{Name: "prune", Access: Change, Summary: "delete the backups the retention no longer keeps", Usage: "<target>",
		Help: "Shows which backups the target's retention (keep_last, keep_daily, keep_weekly, keep_monthly) keeps and why, and which go; once " +
			"confirmed, deletes each one's manifest first, then its objects. The newest good backup always stays; broken ones are left for an operator.",
		MinArgs: 1, MaxArgs: 1}
}

// Preview implements Confirmable.
func (p *Prune) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	plan, err := p.Backups.PlanPrune(ctx, req.Args[0])
	if err != nil {
		return nil, backupError(err)
	}
	drop := plan.Drop()
	if len(drop) == 0 && len(plan.Leftovers) == 0 {
		return nil, Usagef("nothing to prune: the retention (%s) keeps all %d backups of %s", plan.Retention, len(plan.Decisions), plan.Target)
	}
	var rows [][]string
	for _, d := range plan.Decisions {
		verdict := "delete"
		if d.Keep {
			verdict = "keep"
		}
		rows = append(rows, []string{d.Backup.ID, verdict, d.Why})
	}
	nodes := []render.Node{render.Table([]string{"backup", "", "why"}, rows...)}
	if n := len(plan.Leftovers); n > 0 {
		nodes = append(nodes, render.Line(render.Textf("And %d leftover object(s) of runs that never wrote their manifest, older than a day.", n)))
	}
	summary := fmt.Sprintf("%s: delete %d of %d backups", plan.Target, len(drop), len(plan.Decisions))
	return &Proposal{Resource: "backup:" + plan.Target, Summary: summary, Preview: render.Group(nodes...), State: plan}, nil
}

// Apply implements Confirmable.
func (p *Prune) Apply(ctx context.Context, req *Request, pr *Proposal, _ Progress) (render.Node, error) {
	plan := pr.State.(*backups.PrunePlan)
	res, err := p.Backups.Prune(ctx, plan, req.Sender)
	if err != nil {
		return render.Node{}, err
	}
	return render.Text(fmt.Sprintf("✅ %s: %d backup(s) and %d leftover object(s) deleted.", plan.Target, len(res.Deleted), res.Leftovers)), nil
}
