package stolon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A fence makes the master refuse writes for the time of a failover, so
// that nothing commits there that the new master would not have.
//
// Stolon makes postgresql.auto.conf a link to /dev/null, so ALTER SYSTEM
// fails on its keepers: the fence is a per-database setting instead,
// default_transaction_read_only, which every new session reads, and the
// sessions open when it is set are ended. The setting is a catalog write
// and replicates: the candidate replays it, and it is lifted there as soon
// as it is promoted.

// Fence is what Vigie fenced, recorded before it fences so that a crash
// midway is recovered at start-up.
type Fence struct {
	Cluster   string    `json:"cluster"`
	Keeper    string    `json:"keeper"`
	DB        string    `json:"db"`
	Address   string    `json:"address"`   // host:port of the fenced master
	Databases []string  `json:"databases"` // set read-only by Vigie (not those already so)
	At        time.Time `json:"at"`
}

func (f *Fence) String() string {
	return fmt.Sprintf("master %s (db %s, %s) fenced since %s", f.Keeper, f.DB, f.Address, f.At.UTC().Format("2006-01-02 15:04:05 UTC"))
}

// FenceStore keeps the fences Vigie has set and not yet lifted.
type FenceStore interface {
	Value(ctx context.Context, key string) (string, bool, error)
	SetValue(ctx context.Context, key, value string) error
	DeleteValue(ctx context.Context, key string) error
}

func fenceKey(cluster string) string { return "stolon.fence." + cluster }

// LoadFence reads the fence recorded for cluster, nil if none.
func LoadFence(ctx context.Context, st FenceStore, cluster string) (*Fence, error) {
	v, ok, err := st.Value(ctx, fenceKey(cluster))
	if err != nil || !ok {
		return nil, err
	}
	var f Fence
	if err := json.Unmarshal([]byte(v), &f); err != nil {
		return nil, fmt.Errorf("the fence recorded for %s is unreadable: %w", cluster, err)
	}
	return &f, nil
}

func saveFence(ctx context.Context, st FenceStore, f *Fence) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return st.SetValue(ctx, fenceKey(f.Cluster), string(b))
}

// fenceable lists the databases a fence covers: every one clients may
// connect to, and whether each already defaults to read-only (then it is
// not Vigie's to lift).
func fenceable(ctx context.Context, conn *pgx.Conn) (map[string]bool, error) {
	rows, err := conn.Query(ctx, `SELECT d.datname, EXISTS (
			SELECT 1 FROM pg_db_role_setting s
			WHERE s.setdatabase = d.oid AND s.setrole = 0
			  AND 'default_transaction_read_only=on' = ANY (s.setconfig))
		FROM pg_database d WHERE d.datallowconn AND NOT d.datistemplate`)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for rows.Next() {
		var name string
		var readOnly bool
		if err := rows.Scan(&name, &readOnly); err != nil {
			return nil, err
		}
		out[name] = readOnly
	}
	return out, rows.Err()
}

// fence makes every database of the master default to read-only, ends
// every other client session, and returns where the master's WAL ends
// once the last of them is gone: what the candidate must replay. The
// position is that of a message Vigie writes and flushes after the
// sessions ended, so that commits made without synchronous_commit are
// flushed, and streamed, before it.
func fence(ctx context.Context, conn *pgx.Conn, dbs []string) (ended int, lsn string, err error) {
	for _, db := range dbs {
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_read_only = on"); err != nil {
			return 0, "", fmt.Errorf("make database %s read-only: %w", db, err)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&ended); err != nil {
		return 0, "", fmt.Errorf("end the open sessions: %w", err)
	}
	if _, err := conn.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		return ended, "", err
	}
	err = conn.QueryRow(ctx, "SELECT pg_logical_emit_message(true, 'vigie', 'stolon failover fence')::text").Scan(&lsn)
	if err != nil {
		return ended, "", fmt.Errorf("mark the end of the master's writes: %w", err)
	}
	return ended, lsn, nil
}

// errInRecovery: the server is a standby now; a fence there is gone (or
// goes) with the data it replays from its master.
var errInRecovery = errors.New("in recovery")

// lift removes the fence from the databases Vigie set read-only, where
// the setting is still there (it replicates: on a promoted candidate it
// is, on a resynced old master it is not).
func lift(ctx context.Context, conn *pgx.Conn, dbs []string) (int, error) {
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return 0, err
	}
	if inRecovery {
		return 0, errInRecovery
	}
	set, err := fenceable(ctx, conn)
	if err != nil {
		return 0, err
	}
	lifted := 0
	for _, db := range dbs {
		if !set[db] {
			continue
		}
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" RESET default_transaction_read_only"); err != nil {
			return lifted, fmt.Errorf("lift the fence of database %s: %w", db, err)
		}
		lifted++
	}
	return lifted, nil
}
