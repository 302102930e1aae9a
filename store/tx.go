package store

import (
	"context"
	"database/sql"
)

// Tx is a store transaction: what a batch of events causes (incident
// changes, outbox messages) and the watcher's cursor commit together.
type Tx struct {
	tx  *sql.Tx
	now int64 // unix ms, one clock reading for the whole transaction
}

// InTx runs fn in a transaction, committed if fn returns nil.
func (s *Store) InTx(ctx context.Context, fn func(*Tx) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return fn(&Tx{tx: tx, now: s.nowMS()})
	})
}

// Enqueue persists messages in the transaction and returns their IDs.
func (t *Tx) Enqueue(ctx context.Context, msgs ...OutMessage) ([]int64, error) {
	return enqueue(ctx, t.tx, t.now, msgs)
}
