package store

import (
	"context"
	"time"
)

// MarkSeen records that an incoming event was handled. It reports false when
// the event was seen before, so a redelivered command never runs twice.
func (s *Store) MarkSeen(ctx context.Context, eventID string) (first bool, err error) {
	res, err := exec(ctx, s.w,
		`INSERT INTO seen_events (event_id, seen_at) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING`,
		eventID, s.nowMS())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ForgetSeenBefore drops seen-event records older than t; events that old are
// refused by the transports' age check anyway.
func (s *Store) ForgetSeenBefore(ctx context.Context, t time.Time) (int64, error) {
	res, err := exec(ctx, s.w, `DELETE FROM seen_events WHERE seen_at < ?`, t.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// AuditRecord is one line of the audit log.
type AuditRecord struct {
	At        time.Time
	Actor     string
	Room      string
	EventID   string
	Command   string
	Args      string
	Access    string // "read" or "change"
	Outcome   string // "ok", "error", "denied", "unknown", "invalid", ...
	Detail    string
	Principal string        // the actor's directory entry (LDAP DN), if known
	Duration  time.Duration // from receiving the command to its outcome
}

// Audit appends a record to the audit log.
func (s *Store) Audit(ctx context.Context, r AuditRecord) error {
	if r.At.IsZero() {
		r.At = s.clock.Now()
	}
	_, err := exec(ctx, s.w,
		`INSERT INTO audit (at, actor, room, event_id, command, args, access, outcome, detail, principal, duration_ms)
		 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.At.UnixMilli(), r.Actor, r.Room, r.EventID, r.Command, r.Args, r.Access, r.Outcome, r.Detail, r.Principal, r.Duration.Milliseconds())
	return err
}

// AuditFilter selects audit records; empty fields match anything.
type AuditFilter struct {
	Limit   int
	Actor   string
	Command string
}

// AuditLog returns the most recent records matching f, newest first.
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	return queryAll(ctx, s.r,
		`SELECT at, actor, room, event_id, command, args, access, outcome, detail, principal, duration_ms FROM audit
		 WHERE (? = '' OR actor = ?) AND (? = '' OR command = ?) ORDER BY id DESC LIMIT ?`,
		scanAuditRecord, f.Actor, f.Actor, f.Command, f.Command, f.Limit)
}

func scanAuditRecord(row scanner) (AuditRecord, error) {
	var r AuditRecord
	var at, dur int64
	err := row.Scan(&at, &r.Actor, &r.Room, &r.EventID, &r.Command, &r.Args, &r.Access, &r.Outcome, &r.Detail, &r.Principal, &dur)
	r.At, r.Duration = time.UnixMilli(at), time.Duration(dur)*time.Millisecond
	return r, err
}
