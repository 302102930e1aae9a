package backups

import (
	"context"
	"time"

	"github.com/vigie/vigie/store"
)

// TargetStatus is how one target stands, for the report.
type TargetStatus struct {
	Target     *Target
	LastGood   *Backup       // nil: never backed up
	Previous   *Backup       // the good one before, for the size trend
	Verified   *Verification // the latest verification of any of its backups
	LastRun    *store.BackupRun
	Broken     int       // backups listed as broken
	NextBackup time.Time // zero: on demand only
	Running    string    // what runs now, "" if nothing
	Stale      bool      // no good backup within max_age
	Err        error     // the target could not be listed
}

// State sums a target up in one word: ok, running, failed (its latest
// backup run failed), stale, never (scheduled but never backed up),
// on demand (never backed up, nor scheduled to be), or unknown (S3
// unreadable).
func (t TargetStatus) State() string {
	switch {
	case t.Err != nil:
		return "unknown"
	case t.Running != "":
		return "running"
	case t.LastRunFailed():
		return "failed"
	case t.Stale:
		return "stale"
	case t.LastGood == nil && t.Target.Schedule == "":
		return "on demand"
	case t.LastGood == nil:
		return "never"
	}
	return "ok"
}

// LastRunFailed: the latest backup run ended badly.
func (t TargetStatus) LastRunFailed() bool {
	return t.LastRun != nil && (t.LastRun.Outcome == store.RunFailed || t.LastRun.Outcome == store.RunInterrupted)
}

// Report is the state of every target, and of Garage when configured.
type Report struct {
	At        time.Time
	Bucket    string
	Targets   []TargetStatus
	Garage    *GarageStatus
	GarageErr error
}

// Status gathers the report. garage may be nil.
func (s *Service) Status(ctx context.Context, garage *Garage) Report {
	now := s.clock.Now()
	rep := Report{At: now}
	if s.cfg.Storage == nil {
		return rep // no target
	}
	rep.Bucket = s.cfg.Storage.Bucket()
	for i := range s.cfg.Targets {
		t := &s.cfg.Targets[i]
		st := TargetStatus{Target: t, NextBackup: Next(t.Schedule, now)}
		if action, _, _, ok := s.Running(t.Name); ok {
			st.Running = action
		}
		if runs, err := s.store.LastBackupRuns(ctx, t.Name, ActionBackup, 1); err == nil && len(runs) > 0 {
			st.LastRun = &runs[0]
		}
		backups, _, err := s.catalog.list(ctx, t.Name)
		if err != nil {
			st.Err = err
			rep.Targets = append(rep.Targets, st)
			continue
		}
		for _, b := range backups { // oldest first
			switch {
			case !b.Good():
				st.Broken++
				continue
			case b.Verification != nil && (st.Verified == nil || b.Verification.At.After(st.Verified.At)):
				st.Verified = b.Verification
			}
			st.Previous, st.LastGood = st.LastGood, b
		}
		since := s.started
		if st.LastGood != nil {
			since = st.LastGood.Manifest.Ended
		}
		st.Stale = t.MaxAge > 0 && now.Sub(since) > t.MaxAge
		rep.Targets = append(rep.Targets, st)
	}
	if garage != nil {
		rep.Garage, rep.GarageErr = garage.Status(ctx, s.cfg.Storage.Bucket())
	}
	return rep
}
