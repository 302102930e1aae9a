package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestStandbyReplaysPausesRestartsAndPromotes(t *testing.T) {
	primary := StartPostgres(t)
	primary.Exec(t, "postgres", "CREATE DATABASE app")
	primary.Exec(t, "app", `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
		INSERT INTO notes VALUES (1, 'before the backup')`)

	standby := StartStandby(t, primary)
	if os.Geteuid() == 0 {
		checkRunsAsNobody(t, standby)
	}
	if standby.Port == primary.Port || standby.dir == primary.dir {
		t.Fatalf("standby shares the primary's port or directory")
	}
	if got := standby.QueryValue(t, "postgres", "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("standby pg_is_in_recovery() = %q", got)
	}
	if got := primary.QueryValue(t, "postgres",
		"SELECT active FROM pg_replication_slots WHERE slot_name = '"+standby.ReplicationSlot+"' AND slot_type = 'physical'"); got != "t" {
		t.Fatalf("slot %s active = %q", standby.ReplicationSlot, got)
	}
	if got := standby.QueryValue(t, "postgres", "SELECT slot_name FROM pg_stat_wal_receiver"); got != standby.ReplicationSlot {
		t.Errorf("WAL receiver slot %q, want %q", got, standby.ReplicationSlot)
	}
	// The password stays in the password file, out of the configuration.
	if conninfo := standby.QueryValue(t, "postgres", "SHOW primary_conninfo"); !strings.Contains(conninfo, "passfile=") ||
		strings.Contains(conninfo, standby.Password) {
		t.Errorf("primary_conninfo = %q, want a passfile and no password", conninfo)
	}
	// The base backup has what the primary had, and later writes stream.
	if got := readNotes(t, standby); got != "before the backup" {
		t.Fatalf("standby notes = %q", got)
	}
	primary.Exec(t, "app", "INSERT INTO notes VALUES (2, 'streamed')")
	standby.WaitReplayed(t, primary)
	if got := readNotes(t, standby); got != "before the backup|streamed" {
		t.Fatalf("standby notes = %q", got)
	}
	// Read-only.
	if err := execErr(standby, "app", "INSERT INTO notes VALUES (9, 'on the standby')"); err == nil {
		t.Fatal("the standby accepted a write")
	} else if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("write on the standby: %v, want SQLSTATE 25006 (read_only_sql_transaction)", err)
	}

	// Paused replay: the WAL arrives but is not applied.
	standby.Exec(t, "postgres", "SELECT pg_wal_replay_pause()")
	standby.waitFor(t, "paused replay", "SELECT pg_get_wal_replay_pause_state() = 'paused'")
	primary.Exec(t, "app", "INSERT INTO notes VALUES (3, 'while paused')")
	written := primary.flushWAL(t)
	standby.waitFor(t, "WAL received up to "+written, "SELECT pg_last_wal_receive_lsn() >= '"+written+"'::pg_lsn")
	replayed := standby.QueryValue(t, "postgres", "SELECT pg_last_wal_replay_lsn()")
	if got := standby.QueryValue(t, "postgres", "SELECT '"+replayed+"'::pg_lsn < '"+written+"'::pg_lsn"); got != "t" {
		t.Fatalf("paused standby replayed up to %s, received up to %s", replayed, written)
	}
	if got := primary.QueryValue(t, "postgres", "SELECT pg_current_wal_lsn() > '"+replayed+"'::pg_lsn"); got != "t" {
		t.Fatalf("paused standby replayed up to %s, primary at %s", replayed,
			primary.QueryValue(t, "postgres", "SELECT pg_current_wal_lsn()"))
	}
	if got := readNotes(t, standby); got != "before the backup|streamed" {
		t.Fatalf("paused standby notes = %q", got)
	}
	t.Logf("paused: standby received up to %s, replayed up to %s", written, replayed)
	standby.Exec(t, "postgres", "SELECT pg_wal_replay_resume()")
	standby.WaitReplayed(t, primary)
	if got := readNotes(t, standby); got != "before the backup|streamed|while paused" {
		t.Fatalf("resumed standby notes = %q", got)
	}

	// Stopped, it misses nothing: the slot keeps the WAL for it.
	standby.Stop()
	primary.Exec(t, "app", "INSERT INTO notes VALUES (4, 'while stopped')")
	primary.Exec(t, "postgres", "SELECT pg_switch_wal()")
	standby.Restart(t)
	standby.WaitReplayed(t, primary)
	if got := readNotes(t, standby); got != "before the backup|streamed|while paused|while stopped" {
		t.Fatalf("restarted standby notes = %q", got)
	}

	// Failover: the old primary goes away, the standby takes over.
	primary.Stop()
	start := time.Now()
	standby.Promote(t)
	t.Logf("promoted in %s", time.Since(start).Round(time.Millisecond))
	standby.Exec(t, "app", "INSERT INTO notes VALUES (5, 'on the new primary')")
	if got := readNotes(t, standby); got != "before the backup|streamed|while paused|while stopped|on the new primary" {
		t.Fatalf("promoted notes = %q", got)
	}
	// Promoted for good: a restart does not go back to recovery.
	standby.Restart(t)
	if got := standby.QueryValue(t, "postgres", "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("after restart pg_is_in_recovery() = %q", got)
	}
}

func TestQueryValue(t *testing.T) {
	pg := StartPostgres(t)
	for sql, want := range map[string]string{
		"SELECT 42":   "42",
		"SELECT true": "t",
		"SELECT NULL": "",
		"SELECT 'a', 'b' UNION ALL SELECT 'c', 'd'":                            "a",
		"CREATE TABLE x (v text); INSERT INTO x VALUES ('é'); SELECT v FROM x": "é",
	} {
		if got := pg.QueryValue(t, "postgres", sql); got != want {
			t.Errorf("QueryValue(%q) = %q, want %q", sql, got, want)
		}
	}
	if _, err := pg.queryValue(context.Background(), "postgres", "SELECT 1 WHERE false"); err == nil {
		t.Error("no error without a row")
	}
}

// execErr runs sql in database as the superuser and returns its error.
func execErr(pg *Postgres, database, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL(database))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
