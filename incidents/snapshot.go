package incidents

import (
	"context"
	"strings"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/watchers"
)

// snapshotRule unwraps severity overrides to reach a SnapshotRule.
func snapshotRule(r Rule) (SnapshotRule, Severity, bool) {
	if w, ok := r.(withSeverity); ok {
		sr, ok := w.Rule.(SnapshotRule)
		return sr, w.severity, ok
	}
	sr, ok := r.(SnapshotRule)
	return sr, 0, ok
}

// snapshot runs the snapshot rules and resolves the incidents whose check
// is gone from a full Consul snapshot: a deregistered check, an ended
// maintenance.
func (p *pass) snapshot(ctx context.Context, events []watchers.Event) error {
	checks := make([]*watchers.Event, 0, len(events))
	for i := range events {
		if events[i].Check != nil {
			checks = append(checks, &events[i])
		}
	}
	// Every Consul node has at least serfHealth: an empty snapshot is an
	// ACL filtering everything out, not a cluster where all is gone.
	if len(checks) == 0 {
		zerolog.Ctx(ctx).Warn().Msg("Empty Consul health snapshot (token without node:read/service:read?); not resolving anything from it")
		return nil
	}
	for _, r := range p.e.cfg.Rules {
		sr, severity, ok := snapshotRule(r)
		if !ok {
			continue
		}
		knownList, _, err := p.fact(ctx, factServices, sr.Name())
		if err != nil {
			return err
		}
		var known []string
		if knownList != "" {
			known = strings.Split(knownList, ",")
		}
		sigs, services := sr.EvaluateSnapshot(checks, known)
		for _, sig := range sigs {
			if sig.Rule == "" {
				sig.Rule = sr.Name()
			}
			if severity != 0 && sig.Status != Resolved {
				sig.Severity = severity
			}
			if err := p.apply(ctx, sig, nil); err != nil {
				return err
			}
		}
		if err := p.setFact(ctx, factServices, sr.Name(), strings.Join(services, ",")); err != nil {
			return err
		}
	}
	for _, gone := range []struct{ prefix, reason string }{
		{checkKeyPrefix, "check no longer registered in Consul"},
		{maintenanceKeyPrefix + "/", "maintenance ended"},
	} {
		live, err := p.synced(ctx).LiveIncidentsWithPrefix(ctx, gone.prefix)
		if err != nil {
			return err
		}
		for i := range live {
			if !p.seen[live[i].Key] {
				if err := p.resolve(ctx, &live[i], gone.reason); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// checkKeyPrefix starts the keys of Consul check incidents.
const checkKeyPrefix = "check/"
