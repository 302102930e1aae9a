package store

import (
	"context"
	"database/sql"
	"errors"
)

// Cursor returns a watcher's last processed position; ok is false on first start.
func (s *Store) Cursor(ctx context.Context, name string) (position uint64, ok bool, err error) {
	var p int64
	err = s.db.QueryRowContext(ctx, "SELECT position FROM cursors WHERE name = ?", name).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return uint64(p), err == nil, err
}

// SetCursor records a watcher's position.
func (s *Store) SetCursor(ctx context.Context, name string, position uint64) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO cursors (name, position, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`,
		name, int64(position), s.nowMS())
	return err
}
