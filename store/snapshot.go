package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// SnapshotTo writes a consistent copy of the whole database to path with
// VACUUM INTO: a compact, self-contained SQLite file (no -wal beside it)
// holding everything committed when the copy started, schema version
// included. path must not exist; the copy is private to the owner, like
// the database (it holds the Matrix access token).
//
// The copy runs on one of the read-only connections, in a read
// transaction: in WAL mode the writer goes on committing meanwhile (only
// checkpoints cannot pass the copy's snapshot until it ends), so taking a
// snapshot of a large state does not hold up event ingestion.
func (s *Store) SnapshotTo(ctx context.Context, path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		if err == nil {
			err = fs.ErrExist
		}
		return fmt.Errorf("snapshot to %s: %w", path, err)
	}
	// Not a cached statement: one a minute is nothing to parse, and the
	// target differs each time.
	if _, err := s.r.db.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		os.Remove(path) // what a failed copy may have left
		return fmt.Errorf("snapshot to %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		os.Remove(path)
		return fmt.Errorf("snapshot to %s: %w", path, err)
	}
	return nil
}

// DataVersion identifies what the database holds, cheaply: two readings
// that are equal mean nothing was written in between, so a replica taken
// at the first one is still current. Readings differ after any write, and
// may also differ without one (a rolled-back transaction, the writer's
// connection replaced): an unneeded snapshot, never a missed one. The zero
// DataVersion equals no reading.
//
// It is the writer connection's total_changes() (rows inserted, updated or
// deleted through it since it opened) with that connection's identity.
// Every write of the store goes through that one connection, so the count
// moves with each of them, our own included. The alternatives do not:
// PRAGMA data_version only changes for commits by other connections
// (never on the writer, and per connection on the read pool, where two
// readings may come from different connections); the WAL file's size and
// time stay the same when a checkpointed WAL is rewritten from its start
// within the file system's time resolution; the database header's change
// counter is not kept up in WAL mode. A counter kept by the store in Go
// would need every write path to bump it.
type DataVersion struct {
	conn    any   // the writer's driver connection: a new one counts from zero
	changes int64 // its total_changes()
}

// DataVersion reads the database's current DataVersion. It waits for a
// transaction in progress, which holds the writer's only connection.
func (s *Store) DataVersion(ctx context.Context) (DataVersion, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return DataVersion{}, err
	}
	defer conn.Close()
	var v DataVersion
	// Only the connection's identity is kept, never used: holding it also
	// keeps a closed connection's address from being reused by a new one.
	if err := conn.Raw(func(dc any) error { v.conn = dc; return nil }); err != nil {
		return DataVersion{}, err
	}
	if err := conn.QueryRowContext(ctx, "SELECT total_changes()").Scan(&v.changes); err != nil {
		return DataVersion{}, fmt.Errorf("read total_changes(): %w", err)
	}
	return v, nil
}

// LatestSchemaVersion is the schema version this binary migrates a
// database to: a database (or a replica of one) of a higher version was
// written by a newer Vigie, and Open refuses it.
func LatestSchemaVersion() (int, error) {
	all, err := loadMigrations()
	return len(all), err
}
