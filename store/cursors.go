package store

import (
	"context"
	"database/sql"
	"errors"
)

// Cursor returns a watcher's position: the last index it consumed events
// at, and how many events at that index were consumed. ok is false on the
// watcher's first start.
func (s *Store) Cursor(ctx context.Context, name string) (index uint64, skip int, ok bool, err error) {
	var i int64
	err = queryRow(ctx, s.r, "SELECT position, skip FROM cursors WHERE name = ?", name).Scan(&i, &skip)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	return uint64(i), skip, err == nil, err
}

// SetCursor records a watcher's position, within the transaction that
// records what the consumed events caused.
func (t *Tx) SetCursor(ctx context.Context, name string, index uint64, skip int) error {
	_, err := exec(ctx, t,
		`INSERT INTO cursors (name, position, skip, updated_at) VALUES (?, ?, ?, ?)
		 ON CONFLICT (name) DO UPDATE SET position = excluded.position, skip = excluded.skip, updated_at = excluded.updated_at`,
		name, int64(index), skip, t.now)
	return err
}
