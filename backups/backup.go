package backups

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/store"
)

// Backup backs a target up now: every stream of the source goes through
// zstd and SHA-256 into S3, then the manifest is written, last. trigger
// says who asked ("schedule", "catch-up" or a user); report, if not nil,
// is called with the progress every few seconds. A failed run leaves no
// manifest and no pending upload.
func (s *Service) Backup(ctx context.Context, target, trigger string, report func(Progress)) (*Manifest, error) {
	t, err := s.Target(target)
	if err != nil {
		return nil, err
	}
	r, err := s.begin(target, ActionBackup, trigger)
	if err != nil {
		return nil, err
	}
	defer s.end(target)
	m := &Manifest{Format: manifestFormat, Target: t.Name, Kind: t.Kind, Started: s.uniqueStart(target, r.started), VigieVersion: s.cfg.Version}
	m.ID = backupID(t.Name, m.Started)
	run := store.BackupRun{Target: t.Name, Action: ActionBackup, Trigger: trigger, BackupID: m.ID}
	if run.ID, err = s.store.StartBackupRun(ctx, t.Name, ActionBackup, trigger, m.ID); err != nil {
		return nil, fmt.Errorf("record the run: %w", err)
	}
	stop := s.follow(target, r, report, progressEvery)
	err = s.backup(ctx, t, m, r, run.ID)
	stop()
	took := s.clock.Now().Sub(r.started)
	run.RawBytes, run.StoredBytes = m.RawBytes, m.StoredBytes
	s.record(ctx, run, err, took)
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("target", t.Name).Str("trigger", trigger).Msg("Backup failed")
		return nil, err
	}
	if s.observer != nil {
		s.observer.ObserveLastGoodBackup(t.Name, m.Ended, took, m.StoredBytes)
	}
	zerolog.Ctx(ctx).Info().Str("target", t.Name).Str("id", m.ID).Int64("raw_bytes", m.RawBytes).Int64("stored_bytes", m.StoredBytes).
		Stringer("took", took.Round(time.Millisecond)).Msg("Backup stored")
	return m, nil
}

// uniqueStart keeps backup IDs unique: two backups of a target never
// start within the same second.
func (s *Service) uniqueStart(target string, at time.Time) time.Time {
	at = at.UTC().Truncate(time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for backupID(target, at) == s.lastID[target] {
		at = at.Add(time.Second)
	}
	s.lastID[target] = backupID(target, at)
	return at
}

func (s *Service) backup(ctx context.Context, t *Target, m *Manifest, r *activeRun, runID int64) (err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	dir, err := s.runDir(t.Name, ActionBackup)
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	src := s.source(t, dir)
	s.setStage(r, "contacting the source")
	parts, err := src.parts(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil { // objects of earlier streams would be orphans
			s.removeObjects(context.WithoutCancel(ctx), m.Objects)
		}
	}()
	for _, p := range parts {
		key := s.layout.object(m, p.ext)
		if err := s.store.SetBackupUpload(ctx, runID, key); err != nil {
			return fmt.Errorf("record the upload: %w", err)
		}
		stage := "dumping " + p.database
		if p.kind != partDump {
			stage = "saving the " + p.kind
		}
		s.setStage(r, stage)
		obj, err := s.streamPart(ctx, p, key, r.transfer)
		if err != nil {
			return err
		}
		m.Objects = append(m.Objects, obj)
		m.RawBytes += obj.RawBytes
		m.StoredBytes += obj.StoredBytes
	}
	m.Ended = s.clock.Now().UTC()
	if m.Ended.Before(m.Started) { // a start moved to the next second to keep IDs unique
		m.Ended = m.Started
	}
	m.Source = src.facts()
	s.setStage(r, "writing the manifest")
	return s.cfg.Storage.PutJSON(ctx, s.layout.manifest(m), m)
}

func (s *Service) streamPart(ctx context.Context, p part, key string, tr *transfer) (Object, error) {
	rc, err := p.open(ctx)
	if err != nil {
		return Object{}, err
	}
	res, err := stream(ctx, s.cfg.Storage, key, rc, tr)
	cerr := rc.Close()
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Object{}, err
	}
	return Object{Key: key, Part: p.kind, Database: p.database, RawBytes: res.raw, StoredBytes: res.stored, SHA256: res.sha256}, nil
}

// removeObjects deletes what a failed run stored, best effort.
func (s *Service) removeObjects(ctx context.Context, objects []Object) {
	for _, o := range objects {
		if err := s.cfg.Storage.Remove(ctx, o.Key); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("key", o.Key).Msg("Cannot delete an object of a failed backup; pruning will")
		}
	}
}

// source builds the source of one run.
func (s *Service) source(t *Target, dir string) source {
	switch t.Kind {
	case KindPostgres:
		return &postgresSource{srv: t.Postgres, tools: t.Tools, databases: t.Databases, workDir: dir}
	default:
		return &snapshotSource{c: t.Cluster}
	}
}

// errNoVerifyServer says a postgres target can only be checksummed.
var errNoVerifyServer = errors.New("no verify server: checksums only")
