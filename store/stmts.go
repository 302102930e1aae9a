package store

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// Every query of the store runs as a prepared statement, parsed once per
// connection and reused: parsing SQL was a fifth of the CPU of an event
// replay. Query texts must be constants (or built only from constants), so
// that the caches stay as small as the code.

// stmtCache holds the prepared statements of one *sql.DB by query text.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt // nil once closed
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

var errClosed = errors.New("store is closed")

func (c *stmtCache) cached(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// stmt returns the statement of q, preparing it on first use. Preparing
// takes a connection of the pool: never call it while holding the writer's
// only one, in a transaction (see Tx.stmt).
func (c *stmtCache) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := c.cached(q); st != nil {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	old, raced := c.m[q]
	closed := c.m == nil
	if !raced && !closed {
		c.m[q] = st
	}
	c.mu.Unlock()
	switch {
	case closed:
		return nil, errors.Join(errClosed, st.Close())
	case raced: // another goroutine prepared it meanwhile
		st.Close()
		return old, nil
	}
	return st, nil
}

// close closes the statements; later calls fail.
func (c *stmtCache) close() error {
	c.mu.Lock()
	m := c.m
	c.m = nil
	c.mu.Unlock()
	var errs []error
	for _, st := range m {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// stmt returns the transaction's statement of q: the cached one, bound to
// the transaction. A query not cached yet is prepared for this
// transaction only, and for the database once the transaction has ended:
// the transaction holds the writer's only connection, so preparing on the
// database now would wait for it forever.
func (t *Tx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := t.stmts[q]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if shared := t.cache.cached(q); shared != nil {
		st = t.tx.StmtContext(ctx, shared)
	} else {
		var err error
		if st, err = t.tx.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
		t.unprepared = append(t.unprepared, q)
	}
	t.stmts[q] = st // closed with the transaction
	return st, nil
}

// stmter gives the prepared statement of a query: a *stmtCache outside
// transactions, a *Tx within one.
type stmter interface {
	stmt(ctx context.Context, q string) (*sql.Stmt, error)
}

func exec(ctx context.Context, on stmter, q string, args ...any) (sql.Result, error) {
	st, err := on.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func query(ctx context.Context, on stmter, q string, args ...any) (*sql.Rows, error) {
	st, err := on.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func queryRow(ctx context.Context, on stmter, q string, args ...any) scanner {
	st, err := on.stmt(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// errRow is a row that could not be queried.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// queryAll runs a query and scans each of its rows with scan.
func queryAll[T any](ctx context.Context, on stmter, q string, scan func(scanner) (T, error), args ...any) ([]T, error) {
	rows, err := query(ctx, on, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
