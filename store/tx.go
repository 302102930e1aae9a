package store

import (
	"context"
	"database/sql"
	"time"
)

// Tx is a store transaction: what a batch of events causes (incident
// changes, outbox messages) and the watcher's cursor commit together.
type Tx struct {
	tx  *sql.Tx
	at  time.Time // one clock reading for the whole transaction
	now int64     // at in unix ms
}

// InTx runs fn in a transaction, committed if fn returns nil. The clock is
// read once, as the transaction starts: Now is the time of everything it
// does.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		at := s.clock.Now()
		return fn(&Tx{tx: tx, at: at, now: at.UnixMilli()})
	})
}

// Now is the transaction's time.
func (t *Tx) Now() time.Time { return t.at }

// Enqueue persists messages in the transaction and returns their IDs.
func (t *Tx) Enqueue(ctx context.Context, msgs ...OutMessage) ([]int64, error) {
	return enqueue(ctx, t.tx, t.now, msgs)
}
