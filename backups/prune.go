package backups

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/store"
)

// PrunePlan is what retention would delete from a target, decided on one
// successful listing.
type PrunePlan struct {
	Target    string
	Retention Retention
	Decisions []Decision     // every backup, newest first
	Leftovers []storedObject // objects of no manifest, older than a day
}

// Drop returns the backups the plan deletes.
func (p *PrunePlan) Drop() []*Backup {
	var out []*Backup
	for _, d := range p.Decisions {
		if !d.Keep {
			out = append(out, d.Backup)
		}
	}
	return out
}

// leftoverAge is how old an object without manifest must be before it is
// deleted: a run in progress writes its manifest last.
const leftoverAge = 24 * time.Hour

// PlanPrune decides what retention deletes; it deletes nothing. A listing
// that fails gives no plan at all.
func (s *Service) PlanPrune(ctx context.Context, target string) (*PrunePlan, error) {
	t, err := s.Target(target)
	if err != nil {
		return nil, err
	}
	backups, orphans, err := s.catalog.list(ctx, t.Name)
	if err != nil {
		return nil, fmt.Errorf("nothing pruned: %w", err)
	}
	p := &PrunePlan{Target: t.Name, Retention: t.Retention, Decisions: prunePlan(backups, t.Retention)}
	cutoff := s.clock.Now().Add(-leftoverAge)
	for _, o := range orphans {
		if o.LastModified.Before(cutoff) {
			p.Leftovers = append(p.Leftovers, o)
		}
	}
	return p, nil
}

// PruneResult is what a prune deleted.
type PruneResult struct {
	Deleted   []string // backup IDs
	Leftovers int
}

// Prune applies a plan: each dropped backup loses its manifest first (it
// stops existing at once), then its objects. Before deleting anything it
// lists again and keeps whatever became the newest good backup since the
// plan.
func (s *Service) Prune(ctx context.Context, p *PrunePlan, trigger string) (*PruneResult, error) {
	t, err := s.Target(p.Target)
	if err != nil {
		return nil, err
	}
	r, err := s.begin(t.Name, ActionPrune, trigger)
	if err != nil {
		return nil, err
	}
	defer s.end(t.Name)
	run := store.BackupRun{Target: t.Name, Action: ActionPrune, Trigger: trigger}
	if run.ID, err = s.startRun(ctx, run, nil); err != nil {
		return nil, err
	}
	res, err := s.prune(ctx, p)
	s.record(ctx, run, err, s.clock.Now().Sub(r.started))
	if len(res.Deleted) > 0 || res.Leftovers > 0 {
		zerolog.Ctx(ctx).Info().Str("target", t.Name).Strs("deleted", res.Deleted).Int("leftovers", res.Leftovers).Msg("Backups pruned")
	}
	return res, err
}

func (s *Service) prune(ctx context.Context, p *PrunePlan) (*PruneResult, error) {
	res := &PruneResult{}
	now, _, err := s.catalog.list(ctx, p.Target)
	if err != nil {
		return res, fmt.Errorf("nothing pruned: %w", err)
	}
	newest, err := find(now, "")
	if err != nil {
		return res, errors.New("nothing pruned: no good backup is left to keep")
	}
	var errs []error
	for _, b := range p.Drop() {
		if b.ID == newest.ID || !b.Good() {
			continue // never the newest good one, never a broken one
		}
		if err := s.deleteBackup(ctx, b); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Deleted = append(res.Deleted, b.ID)
	}
	for _, o := range p.Leftovers {
		if err := s.cfg.Storage.Remove(ctx, o.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Leftovers++
	}
	return res, errors.Join(errs...)
}

// deleteBackup removes the manifest first: a backup half deleted is then
// only leftover objects, never a manifest naming missing ones.
func (s *Service) deleteBackup(ctx context.Context, b *Backup) error {
	if err := s.cfg.Storage.Remove(ctx, b.Key); err != nil {
		return err
	}
	s.catalog.forget(b.Key)
	var errs []error
	for _, o := range b.Manifest.Objects {
		errs = append(errs, s.cfg.Storage.Remove(ctx, o.Key))
	}
	errs = append(errs, s.cfg.Storage.Remove(ctx, strings.TrimSuffix(b.Key, manifestSuffix)+verifySuffix))
	return errors.Join(errs...)
}
