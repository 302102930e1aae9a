package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// Tx is a store transaction: what a batch of events causes (incident
// changes, outbox messages) and the watcher's cursor commit together.
type Tx struct {
	tx         *sql.Tx
	cache      *stmtCache
	stmts      map[string]*sql.Stmt // this transaction's, by query
	unprepared []string             // queries to prepare once it has ended
	at         time.Time            // one clock reading for the whole transaction
	now        int64                // at in unix ms
}

// InTx runs fn in a transaction, committed if fn returns nil. The clock is
// read once, as the transaction starts: Now is the time of everything it
// does.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	at := s.clock.Now()
	t := &Tx{tx: tx, cache: s.w, stmts: map[string]*sql.Stmt{}, at: at, now: at.UnixMilli()}
	if err = fn(t); err != nil {
		err = errors.Join(err, tx.Rollback())
	} else {
		err = tx.Commit()
	}
	for _, q := range t.unprepared {
		s.w.stmt(ctx, q) // on failure, a later transaction tries again
	}
	return err
}

// Now is the transaction's time.
func (t *Tx) Now() time.Time { return t.at }

// Enqueue persists messages in the transaction and returns their IDs.
func (t *Tx) Enqueue(ctx context.Context, msgs ...OutMessage) ([]int64, error) {
	return t.enqueue(ctx, msgs)
}
