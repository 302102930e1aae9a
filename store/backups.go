package store

import (
	"context"
	"time"
)

// BackupRun is one backup, verification, restore or prune, as recorded.
type BackupRun struct {
	ID          int64
	Target      string
	Action      string // backup, verify, restore, prune
	Trigger     string // schedule, catch-up, or who asked
	Started     time.Time
	Ended       time.Time // zero while running
	Outcome     string    // running, ok, failed, interrupted
	BackupID    string
	UploadKey   string
	RawBytes    int64
	StoredBytes int64
	Error       string
	Detail      string
	FinishedSeq int64 // its place among finished runs; 0 while running
}

// Backup run outcomes.
const (
	RunRunning     = "running"
	RunOK          = "ok"
	RunFailed      = "failed"
	RunInterrupted = "interrupted"
)

const backupRunColumns = `id, target, action, trigger, started_at, COALESCE(ended_at, 0), outcome, backup_id, upload_key,
	raw_bytes, stored_bytes, error, detail, COALESCE(finished_seq, 0)`

func scanBackupRun(row scanner) (BackupRun, error) {
	var r BackupRun
	var started, ended int64
	err := row.Scan(&r.ID, &r.Target, &r.Action, &r.Trigger, &started, &ended, &r.Outcome, &r.BackupID, &r.UploadKey,
		&r.RawBytes, &r.StoredBytes, &r.Error, &r.Detail, &r.FinishedSeq)
	r.Started = time.UnixMilli(started).UTC()
	if ended != 0 {
		r.Ended = time.UnixMilli(ended).UTC()
	}
	return r, err
}

// StartBackupRun records a run that starts now and returns its ID.
func (s *Store) StartBackupRun(ctx context.Context, target, action, trigger, backupID string) (int64, error) {
	res, err := exec(ctx, s.w,
		`INSERT INTO backup_runs (target, action, trigger, started_at, outcome, backup_id) VALUES (?, ?, ?, ?, ?, ?)`,
		target, action, trigger, s.nowMS(), RunRunning, backupID)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// SetBackupUpload records the object a run is uploading, so that the
// upload can be aborted if the process dies.
func (s *Store) SetBackupUpload(ctx context.Context, id int64, key string) error {
	_, err := exec(ctx, s.w, `UPDATE backup_runs SET upload_key = ? WHERE id = ?`, key, id)
	return err
}

// FinishBackupRun records how a run ended, and gives it the next place
// among finished runs. r.UploadKey is an upload still to abort, if any.
func (s *Store) FinishBackupRun(ctx context.Context, r BackupRun) error {
	return s.InTx(ctx, func(tx *Tx) error {
		return tx.finishRun(ctx, r.ID, r.Outcome, r.RawBytes, r.StoredBytes, r.Error, r.Detail, r.UploadKey)
	})
}

// finishRun ends a run; uploadKey is an upload still to abort ("" when
// none is left).
func (t *Tx) finishRun(ctx context.Context, id int64, outcome string, raw, stored int64, errText, detail, uploadKey string) error {
	_, err := exec(ctx, t,
		`UPDATE backup_runs SET ended_at = ?, outcome = ?, raw_bytes = ?, stored_bytes = ?, error = ?, detail = ?, upload_key = ?,
		 finished_seq = (SELECT COALESCE(MAX(finished_seq), 0) + 1 FROM backup_runs)
		 WHERE id = ? AND finished_seq IS NULL`,
		t.now, outcome, raw, stored, errText, detail, uploadKey, id)
	return err
}

// UploadsToAbort returns the ended runs whose upload is still to abort.
func (s *Store) UploadsToAbort(ctx context.Context) ([]BackupRun, error) {
	return backupRuns(ctx, s.r, `WHERE finished_seq IS NOT NULL AND upload_key != '' ORDER BY id`)
}

// UploadAborted records that a run's upload is aborted.
func (s *Store) UploadAborted(ctx context.Context, id int64) error {
	_, err := exec(ctx, s.w, `UPDATE backup_runs SET upload_key = '' WHERE id = ?`, id)
	return err
}

// InterruptRunning ends the runs a previous process left running (it was
// killed) as interrupted, keeping the uploads they had under way to abort
// (UploadsToAbort), and returns them.
func (s *Store) InterruptRunning(ctx context.Context) ([]BackupRun, error) {
	var out []BackupRun
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = backupRuns(ctx, tx, `WHERE outcome = ? ORDER BY id`, RunRunning)
		if err != nil {
			return err
		}
		for _, r := range out {
			if err := tx.finishRun(ctx, r.ID, RunInterrupted, 0, 0, "interrupted: Vigie stopped during the run", "", r.UploadKey); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// FinishedBackupRuns returns the runs that ended after the place seq, in
// the order they ended.
func (s *Store) FinishedBackupRuns(ctx context.Context, seq int64, limit int) ([]BackupRun, error) {
	return backupRuns(ctx, s.r, `WHERE finished_seq > ? ORDER BY finished_seq LIMIT ?`, seq, limit)
}

// LastBackupRuns returns a target's latest runs of an action ("" for any),
// newest first.
func (s *Store) LastBackupRuns(ctx context.Context, target, action string, limit int) ([]BackupRun, error) {
	return backupRuns(ctx, s.r, `WHERE target = ? AND (? = '' OR action = ?) ORDER BY started_at DESC, id DESC LIMIT ?`, target, action, action, limit)
}

func backupRuns(ctx context.Context, on stmter, where string, args ...any) ([]BackupRun, error) {
	return queryAll(ctx, on, `SELECT `+backupRunColumns+` FROM backup_runs `+where, scanBackupRun, args...)
}
