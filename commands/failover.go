package commands

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/stolon"
)

// StolonFailover is what failover needs.
type StolonFailover interface {
	Preflight(ctx context.Context, cluster string) (*stolon.Plan, error)
	Failover(ctx context.Context, plan *stolon.Plan, report func(stolon.Progress)) (*stolon.Result, error)
}

// Failover fails a Stolon cluster's master over to a standby without
// losing a committed write: previewed with its preflight, confirmed, by
// default approved by a second person, one at a time per cluster.
type Failover struct {
	Stolon  StolonFailover
	Timeout time.Duration // the longest failover the configuration allows
}

// Spec implements Command.
func (f *Failover) Spec() Spec {
	return Spec{Name: "failover", Access: Change, TwoPerson: true, Summary: "fail a Stolon cluster's master over to a standby, losing no committed write",
		Usage: "[cluster]",
		Help: "The preview checks that the cluster is in phase normal, a sentinel leads, the master is healthy and reachable, and Stolon would elect a standby " +
			"that replays within maxStandbyLag (asked directly: Stolon only sees the WAL received). Once confirmed, Vigie fences the master (new sessions " +
			"read-only, open ones ended), waits for the standbys to replay all it wrote, sets forceFail, and follows the election, the promotion, the " +
			"proxies and the old master's return as a standby, probing writes through the proxy: the result says how long writes were unavailable. " +
			"Anything that fails before forceFail lifts the fence; the fence never outlives the failover. See also db status.",
		MaxArgs: 1, Timeout: f.Timeout}
}

// Preview implements Confirmable.
func (f *Failover) Preview(ctx context.Context, req *Request) (*Proposal, error) {
	name := ""
	if len(req.Args) == 1 {
		name = req.Args[0]
	}
	plan, err := f.Stolon.Preflight(ctx, name)
	var refused *stolon.RefusedError
	if errors.As(err, &refused) {
		return nil, Usagef("%s", refusal(refused.Plan))
	}
	if err != nil {
		return nil, stolonError(err)
	}
	e := plan.Elected()
	summary := fmt.Sprintf("fail Stolon cluster %s over from %s to %s", plan.Cluster, plan.MasterKeeper, e.DB.Spec.KeeperUID)
	nodes := []render.Node{render.Line(render.Text("Preflight:")), checkList(plan.Checks)}
	if len(plan.Others) > 0 {
		var others []render.Node
		for _, o := range plan.Others {
			others = append(others, render.Text(fmt.Sprintf("%s (db %s): %s", o.DB.Spec.KeeperUID, o.DB.UID, o.Reason)))
		}
		nodes = append(nodes, render.Line(render.Text("Standbys Stolon would not elect:")), render.List(others...))
	}
	nodes = append(nodes, render.Line(render.Text(fmt.Sprintf(
		"Then: fence %s (its databases read-only for new sessions, open sessions ended), wait for the standbys to replay all it wrote, "+
			"set forceFail, and follow the sentinel until %s takes writes through the proxy and %s is back as a standby. "+
			"Writes are unavailable meanwhile (seconds).", plan.MasterKeeper, e.DB.Spec.KeeperUID, plan.MasterKeeper))))
	return &Proposal{Resource: "stolon:" + plan.Cluster, Summary: summary, Preview: render.Group(nodes...), State: plan}, nil
}

// refusal says why a failover is refused, every check listed.
func refusal(p *stolon.Plan) string {
	msg := "failover of " + p.Cluster + " refused:"
	for _, c := range p.Checks {
		msg += "\n" + checkMark(c.OK) + " " + c.Text
	}
	return msg
}

func checkList(checks []stolon.Check) render.Node {
	var items []render.Node
	for _, c := range checks {
		items = append(items, render.Text(checkMark(c.OK)+" "+c.Text))
	}
	return render.List(items...)
}

func checkMark(ok bool) string {
	if ok {
		return "✅"
	}
	return "❌"
}

// Apply implements Confirmable.
func (f *Failover) Apply(ctx context.Context, req *Request, p *Proposal, progress Progress) (render.Node, error) {
	plan := p.State.(*stolon.Plan)
	res, err := f.Stolon.Failover(ctx, plan, func(pr stolon.Progress) { _ = progress.Update(ctx, renderFailoverProgress(pr)) })
	if err != nil {
		var refused *stolon.RefusedError
		if errors.As(err, &refused) {
			return render.Node{}, fmt.Errorf("%s (nothing was changed)", refusal(refused.Plan))
		}
		if res == nil {
			return render.Node{}, stolonError(err)
		}
		_ = progress.Update(ctx, render.Group(render.Line(render.Text("❌ failover of "+plan.Cluster+" failed: "+err.Error())), stepList(res.Steps), warnings(res)))
		return render.Node{}, shownError{err}
	}
	return renderFailoverResult(res), nil
}

func renderFailoverProgress(p stolon.Progress) render.Node {
	nodes := []render.Node{render.Line(render.Text("⏳ failing Stolon cluster " + p.Cluster + " over"))}
	nodes = append(nodes, stepList(p.Steps))
	if p.Waiting != "" {
		nodes = append(nodes, render.Line(render.Italic(render.Text(p.Waiting+"…"))))
	}
	return render.Group(nodes...)
}

func stepList(steps []stolon.Step) render.Node {
	var items []render.Node
	for _, s := range steps {
		items = append(items, render.Text(fmt.Sprintf("%s %s (+%s): %s", checkMark(!s.Failed), s.Name, took(s.Took), s.Detail)))
	}
	return render.List(items...)
}

func warnings(res *stolon.Result) render.Node {
	var out []render.Node
	for _, w := range res.Warnings {
		out = append(out, render.Line(render.Text("⚠️ "+w)))
	}
	if res.FenceLeft != nil {
		out = append(out, render.Line(render.Text("⚠️ Vigie's fence is still set ("+res.FenceLeft.String()+"); it retries lifting it and alerts until it is gone.")))
	}
	return render.Group(out...)
}

func renderFailoverResult(res *stolon.Result) render.Node {
	head := fmt.Sprintf("✅ Stolon cluster %s failed over from %s to %s (db %s, timeline %d) in %s.",
		res.Cluster, res.OldKeeper, res.NewKeeper, res.NewDB, res.Timeline, took(lastStepAt(res).Sub(res.Started)))
	if res.PostCheck != nil || !res.Rejoined {
		head = "⚠️" + head[len("✅"):]
	}
	writes := "Writes through the proxy never failed."
	if len(res.Outages) > 0 {
		o := res.Outages[0]
		writes = fmt.Sprintf("Writes were unavailable through the proxy for %s (%s to %s UTC, probed every 200 ms)",
			took(res.WritesDown()), o.From.UTC().Format("15:04:05.0"), res.Outages[len(res.Outages)-1].To.UTC().Format("15:04:05.0"))
		if len(res.Outages) > 1 {
			writes += fmt.Sprintf(" in %d outages", len(res.Outages))
		}
		writes += "."
	}
	writes += " No committed write was lost: " + res.OldKeeper + " was fenced until the standbys had replayed all it wrote."
	nodes := []render.Node{render.Line(render.Text(head)), render.Line(render.Text(writes)), stepList(res.Steps)}
	if res.PostCheck != nil {
		nodes = append(nodes, render.Line(render.Text("❌ post-check failed: "+res.PostCheck.Error()+" (the failover itself is as clusterdata tells it above).")))
	}
	nodes = append(nodes, warnings(res))
	return render.Group(nodes...)
}

func lastStepAt(res *stolon.Result) time.Time {
	if n := len(res.Steps); n > 0 {
		return res.Steps[n-1].At
	}
	return res.Started
}
