package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Message states in the outbox.
const (
	StatePending = "pending"
	StateSent    = "sent"
	StateFailed  = "failed"
)

// OutMessage is one outgoing message as persisted in the outbox.
type OutMessage struct {
	ID        int64
	Transport string // "matrix", "console"
	Room      string
	TxnID     string // assigned by Enqueue; reused on every retry
	// Key says what the message is, alike on every instance (see
	// migration 9); "" for none.
	Key         string
	Plain       string
	HTML        string
	ReplyTo     string // remote event this message answers, if any
	EditOf      int64  // earlier outbox message this one edits, 0 if none
	ThreadRoot  int64  // earlier outbox message whose thread this joins, 0 if none
	State       string
	RemoteID    string // event ID given by the transport once sent
	Attempts    int
	AttemptedAt time.Time // when the last attempt started; zero if never tried
	LastError   string
	CreatedAt   time.Time
}

// ErrNotFound is returned for an outbox ID that does not exist.
var ErrNotFound = errors.New("not found")

// Enqueue persists messages (all or none) and returns their IDs in order.
func (s *Store) Enqueue(ctx context.Context, msgs ...OutMessage) ([]int64, error) {
	var ids []int64
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		ids, err = tx.enqueue(ctx, msgs)
		return err
	})
	return ids, err
}

// enqueue inserts messages. Transaction IDs are random so they never
// collide with those of an earlier database, which the homeserver may still
// remember.
func (t *Tx) enqueue(ctx context.Context, msgs []OutMessage) ([]int64, error) {
	ids := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		txn, err := newTxnID()
		if err != nil {
			return nil, err
		}
		res, err := exec(ctx, t,
			`INSERT INTO outbox (transport, room, txn_id, message_key, plain, html, reply_to, edit_of, thread_root, created_at)
			 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.Transport, m.Room, txn, m.Key, m.Plain, m.HTML, m.ReplyTo, nullID(m.EditOf), nullID(m.ThreadRoot), t.now)
		if err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Pending returns up to limit pending messages of a transport, oldest first.
func (s *Store) Pending(ctx context.Context, transport string, limit int) ([]OutMessage, error) {
	return s.outMessages(ctx, selectOutbox+` WHERE transport = ? AND state = 'pending' ORDER BY id LIMIT ?`, transport, limit)
}

// PendingHeads returns the oldest pending message of each room of a
// transport, oldest first: delivery is in order within a room, so only a
// room's head may be sent, and one blocked room never hides the others.
func (s *Store) PendingHeads(ctx context.Context, transport string) ([]OutMessage, error) {
	return s.outMessages(ctx, pendingHeads, transport)
}

// pendingHeads reads the index outbox_pending_heads alone, then the heads.
const pendingHeads = selectOutbox + ` WHERE id IN (
	SELECT MIN(id) FROM outbox WHERE transport = ? AND state = 'pending' GROUP BY room) ORDER BY id`

func (s *Store) outMessages(ctx context.Context, q string, args ...any) ([]OutMessage, error) {
	return queryAll(ctx, s.r, q, scanOutMessage, args...)
}

// Message returns one outbox message by ID.
func (s *Store) Message(ctx context.Context, id int64) (OutMessage, error) {
	m, err := scanOutMessage(queryRow(ctx, s.r, selectOutbox+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("outbox message %d: %w", id, ErrNotFound)
	}
	return m, err
}

// MarkSent records the remote event ID of a delivered message. Its echo
// may have marked it already, with the same ID: that is fine.
func (s *Store) MarkSent(ctx context.Context, id int64, remoteID string) error {
	err := s.finish(ctx, id, StateSent, remoteID, "")
	if errors.Is(err, ErrNotFound) {
		if m, merr := s.Message(ctx, id); merr == nil && m.State == StateSent && m.RemoteID == remoteID {
			return nil
		}
	}
	return err
}

// MarkFailed gives up on a message; it is kept for inspection.
func (s *Store) MarkFailed(ctx context.Context, id int64, reason string) error {
	return s.finish(ctx, id, StateFailed, "", reason)
}

// StartAttempt records, before a delivery attempt, that it is starting: if
// the process dies during it, the next sender knows the outcome is unknown.
func (s *Store) StartAttempt(ctx context.Context, id int64) error {
	_, err := exec(ctx, s.w, `UPDATE outbox SET attempts = attempts + 1, attempted_at = ? WHERE id = ?`, s.nowMS(), id)
	return err
}

// RecordFailure notes why the last attempt failed; it will be retried.
// refused: the server answered that it did not take the message, so the
// attempt's outcome is known and needs no reconciliation.
func (s *Store) RecordFailure(ctx context.Context, id int64, reason string, refused bool) error {
	_, err := exec(ctx, s.w, `UPDATE outbox SET last_error = ?, attempted_at = CASE WHEN ? THEN 0 ELSE attempted_at END
		WHERE id = ?`, reason, refused, id)
	return err
}

// MarkSentByTxn marks the pending message with this transaction ID as
// delivered: the transport saw its echo. It reports whether one was.
func (s *Store) MarkSentByTxn(ctx context.Context, transport, txnID, remoteID string) (bool, error) {
	res, err := exec(ctx, s.w, `UPDATE outbox SET state = 'sent', remote_id = ?, last_error = '', done_at = ?
		WHERE transport = ? AND txn_id = ? AND state = 'pending'`, remoteID, s.nowMS(), transport, txnID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (s *Store) finish(ctx context.Context, id int64, state, remoteID, reason string) error {
	res, err := exec(ctx, s.w,
		`UPDATE outbox SET state = ?, remote_id = ?, last_error = ?, done_at = ? WHERE id = ? AND state = 'pending'`,
		state, remoteID, reason, s.nowMS(), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("outbox message %d is not pending: %w", id, ErrNotFound)
	}
	return nil
}

const selectOutbox = `SELECT id, transport, room, txn_id, message_key, plain, html, reply_to, COALESCE(edit_of, 0), COALESCE(thread_root, 0),
	state, remote_id, attempts, attempted_at, last_error, created_at FROM outbox`

type scanner interface{ Scan(dest ...any) error }

func scanOutMessage(row scanner) (OutMessage, error) {
	var m OutMessage
	var created, attempted int64
	err := row.Scan(&m.ID, &m.Transport, &m.Room, &m.TxnID, &m.Key, &m.Plain, &m.HTML, &m.ReplyTo, &m.EditOf, &m.ThreadRoot,
		&m.State, &m.RemoteID, &m.Attempts, &attempted, &m.LastError, &created)
	m.CreatedAt, m.AttemptedAt = time.UnixMilli(created), ms(attempted)
	return m, err
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func newTxnID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "vigie." + hex.EncodeToString(b), nil
}

// OutboxCounts counts a transport's messages by state.
func (s *Store) OutboxCounts(ctx context.Context, transport string) (map[string]int, error) {
	rows, err := query(ctx, s.r, `SELECT state, COUNT(*) FROM outbox WHERE transport = ? GROUP BY state`, transport)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{StatePending: 0, StateSent: 0, StateFailed: 0}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			return nil, err
		}
		counts[state] = n
	}
	return counts, rows.Err()
}

// OutboxIDByRemote finds the outbox message delivered as a remote event
// (a reaction's target).
func (s *Store) OutboxIDByRemote(ctx context.Context, transport, remoteID string) (int64, bool, error) {
	var id int64
	err := queryRow(ctx, s.r, `SELECT id FROM outbox WHERE transport = ? AND remote_id = ? AND state = 'sent'`, transport, remoteID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}
