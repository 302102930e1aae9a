package backups

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// EventStore is what the event source reads: its cursor and the runs.
type EventStore interface {
	Cursor(ctx context.Context, name string) (index uint64, skip int, ok bool, err error)
	FinishedBackupRuns(ctx context.Context, seq int64, limit int) ([]store.BackupRun, error)
}

// Events tells the incident pipeline how backups go, like a watcher: each
// backup and verification that ends, once, in the order they ended (its
// place is the cursor, committed with what it causes), and each target
// that goes stale (no good backup within its max_age) or fresh again.
// Reading S3 is its sight: S3 out of reach is a blind source.
type Events struct {
	svc      *Service
	store    EventStore
	interval time.Duration // between two looks at S3 for freshness
}

// NewEvents builds the event source of svc.
func NewEvents(svc *Service, st EventStore, interval time.Duration) *Events {
	return &Events{svc: svc, store: st, interval: interval}
}

// eventsCursor is the cursor's name, and the source's.
const eventsCursor = "backups"

// Name implements watchers.Watcher.
func (e *Events) Name() string { return eventsCursor }

// Address implements watchers.Watcher.
func (e *Events) Address() string { return e.svc.Storage().Endpoint() }

// Watch implements watchers.Watcher.
func (e *Events) Watch(ctx context.Context, sink watchers.Sink, lookout watchers.Lookout) error {
	index, _, _, err := e.store.Cursor(ctx, eventsCursor)
	if err != nil {
		return fmt.Errorf("backups: read the cursor: %w", err)
	}
	seq := int64(index)
	watching := e.svc.clock.Now() // a target never backed up is stale max_age after this
	told := map[string]string{}   // per target: the freshness last told
	tick := time.NewTicker(e.interval)
	defer tick.Stop()
	for {
		if seq, err = e.tellRuns(ctx, sink, seq); err != nil {
			return err
		}
		if err := e.tellFreshness(ctx, sink, lookout, watching, told); err != nil {
			return err
		}
		if err := e.svc.AbortLeftUploads(ctx); err != nil && ctx.Err() == nil {
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Backups: uploads left to abort, retrying later")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.svc.Finished():
		case <-tick.C:
		}
	}
}

// tellRuns delivers the runs that ended since seq, one batch each.
func (e *Events) tellRuns(ctx context.Context, sink watchers.Sink, seq int64) (int64, error) {
	for {
		runs, err := e.store.FinishedBackupRuns(ctx, seq, 100)
		if err != nil {
			return seq, fmt.Errorf("backups: read the finished runs: %w", err)
		}
		if len(runs) == 0 {
			return seq, nil
		}
		for _, r := range runs {
			b := watchers.Batch{Cursor: watchers.Cursor{Name: eventsCursor, Index: uint64(r.FinishedSeq)}}
			if r.Action == ActionBackup || r.Action == ActionVerify {
				b.Events = []watchers.Event{e.runEvent(r)}
			}
			if err := sink.Consume(ctx, b); err != nil {
				if ctx.Err() != nil {
					return seq, nil
				}
				return seq, fmt.Errorf("backups: deliver run %d: %w", r.ID, err)
			}
			seq = r.FinishedSeq
		}
	}
}

func (e *Events) runEvent(r store.BackupRun) watchers.Event {
	kind := ""
	if t, err := e.svc.Target(r.Target); err == nil {
		kind = t.Kind
	}
	return watchers.Event{Source: eventsCursor, Topic: watchers.TopicBackup, Type: watchers.BackupRun, Index: uint64(r.FinishedSeq), Time: r.Ended,
		Backup: &watchers.Backup{Target: r.Target, Kind: kind, Action: r.Action, Outcome: r.Outcome, Trigger: r.Trigger,
			RunID: r.ID, BackupID: r.BackupID, Error: r.Error, Detail: r.Detail}}
}

// tellFreshness lists each target with a max_age and tells when it turns
// stale or fresh. The first look of a run tells every target's state, so
// what a previous run left open resolves.
func (e *Events) tellFreshness(ctx context.Context, sink watchers.Sink, lookout watchers.Lookout, watching time.Time, told map[string]string) error {
	var news []watchers.Event
	for _, t := range e.svc.Targets() {
		backups, _, err := e.svc.catalog.list(ctx, t.Name)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			lookout.Lost(err)
			zerolog.Ctx(ctx).Debug().Err(err).Msg("Backups: cannot list S3")
			return nil
		}
		lookout.Seen()
		good, _ := find(backups, "")
		if good != nil && e.svc.observer != nil {
			m := good.Manifest
			e.svc.observer.ObserveLastGoodBackup(t.Name, m.Ended, m.Ended.Sub(m.Started), m.StoredBytes)
		}
		if t.MaxAge <= 0 {
			continue
		}
		now := e.svc.clock.Now()
		since := watching
		if good != nil {
			since = good.Manifest.Ended
		}
		state := watchers.BackupFresh
		if now.Sub(since) > t.MaxAge {
			state = watchers.BackupStale
		}
		if told[t.Name] == state {
			continue
		}
		nb := &watchers.Backup{Target: t.Name, Kind: t.Kind, MaxAge: t.MaxAge}
		if good != nil {
			nb.LastGood, nb.BackupID = good.Manifest.Ended, good.ID
		}
		news = append(news, watchers.Event{Source: eventsCursor, Topic: watchers.TopicBackup, Type: state, Time: now, Backup: nb})
		told[t.Name] = state
	}
	if len(news) == 0 {
		return nil
	}
	if err := sink.Consume(ctx, watchers.Batch{Events: news}); err != nil {
		for _, ev := range news {
			delete(told, ev.Backup.Target) // told again next time
		}
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("backups: deliver freshness: %w", err)
	}
	return nil
}
