package store

import (
	"context"
	"database/sql"
	"errors"
)

// Value returns a stored setting; ok is false when it was never set.
func (s *Store) Value(ctx context.Context, key string) (value string, ok bool, err error) {
	err = queryRow(ctx, s.r, "SELECT value FROM kv WHERE key = ?", key).Scan(&value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return value, err == nil, err
}

// SetValue stores a setting, replacing any earlier value.
func (s *Store) SetValue(ctx context.Context, key, value string) error {
	_, err := exec(ctx, s.w,
		`INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)
		 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		key, value, s.nowMS())
	return err
}

// DeleteValue removes a setting; removing one never set is no error.
func (s *Store) DeleteValue(ctx context.Context, key string) error {
	_, err := exec(ctx, s.w, "DELETE FROM kv WHERE key = ?", key)
	return err
}
