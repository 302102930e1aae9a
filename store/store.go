// Package store owns all of Vigie's persistent state: one SQLite database
// (pure-Go modernc.org/sqlite) in the data directory, upgraded by numbered
// migrations. Consumers declare the small interfaces they need; this concrete
// type is the edge, so a shared backend (Consul KV, for HA) can replace it.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/vigie/vigie/clock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// FileName is the database file inside the data directory.
const FileName = "vigie.db"

// Store is the SQLite-backed state store.
type Store struct {
	db    *sql.DB     // the writer: one connection, every write and transaction
	w     *stmtCache  // its statements
	r     *stmtCache  // statements of a read-only pool, for reads outside transactions
	clock clock.Clock // the process's clock: every timestamp the store writes comes from it
}

// Open creates the data directory if needed (private to the owner: it holds
// the Matrix access token), opens the database and applies pending
// migrations. clk stamps what the store writes; nil is the wall clock.
func Open(ctx context.Context, dataDir string, clk clock.Clock) (*Store, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, FileName)
	// immediate transactions take the write lock up front, so two writers
	// wait on busy_timeout instead of failing with SQLITE_BUSY mid-transaction.
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite serialises writers anyway, and a single
	// connection rules out lock waits between our own goroutines.
	db.SetMaxOpenConns(1)
	s := &Store{db: db, w: newStmtCache(db), clock: clock.OrSystem(clk)}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	// Reads outside transactions (the outbox sender's polling, metrics,
	// commands) run on their own read-only connections, beside the writer
	// rather than queued behind ingestion: in WAL mode readers never block
	// the writer nor wait for it. A read sees what was committed when it
	// started, so everything whose write has returned, by any goroutine.
	rdb, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	s.r = newStmtCache(rdb)
	return s, nil
}

// readers is the number of read-only connections.
const readers = 2

// Close closes the statements and the database.
func (s *Store) Close() error {
	return errors.Join(s.r.close(), s.w.close(), s.r.db.Close(), s.db.Close())
}

// Ping reports whether the database answers; used by /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// SchemaVersion is the number of the last applied migration.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := queryRow(ctx, s.w, "PRAGMA user_version").Scan(&v)
	return v, err
}

type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %q: name must start with its number", e.Name())
		}
		body, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected number %d", m.name, i+1)
		}
	}
	return out, nil
}

func (s *Store) migrate(ctx context.Context) error {
	all, err := loadMigrations()
	if err != nil {
		return err
	}
	current, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if current > len(all) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d): refusing to run an older Vigie on it", current, len(all))
	}
	for _, m := range all[current:] {
		// Scripts run once: not worth a prepared statement.
		err := s.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

func (s *Store) nowMS() int64 { return s.clock.Now().UnixMilli() }
