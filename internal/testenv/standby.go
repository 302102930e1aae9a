package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// standbyReadyTimeout bounds how long a started standby may take to
// stream from its primary, and WaitReplayed and Promote to see their
// effect. All normally take well under a second.
const standbyReadyTimeout = 30 * time.Second

// standbySeq numbers the replication slots of the standbys the test
// binary starts: a primary is private to one test, so this is unique
// enough.
var standbySeq atomic.Int64

// StartStandby makes a streaming replica of primary: a base backup taken
// with pg_basebackup over TCP as the superuser (who has the replication
// privilege) into t.TempDir(), with a physical replication slot of its own
// on the primary, so that the primary keeps the WAL the standby has not
// received, even while it is stopped. It starts on its own free loopback
// port, is a hot standby (read-only queries), and is stopped at cleanup,
// before the primary. It returns once it streams from the primary.
//
// Any primary from StartPostgres allows this with initdb's defaults:
// wal_level=replica, max_wal_senders=10, max_replication_slots=10 (so at
// most 10 standbys per primary), and in pg_hba.conf
// "host replication all 127.0.0.1/32 scram-sha-256".
//
// The standby has the primary's superuser and password. Stop, Restart,
// Exec, QueryValue work as on the primary; Promote makes it a primary.
// The password it connects to the primary with is in a password file in
// its directory, for the primary's current host and port.
func StartStandby(t testing.TB, primary *Postgres) *Postgres {
	t.Helper()
	dir := t.TempDir()
	s := &Postgres{
		Host:            "127.0.0.1",
		User:            primary.User,
		Password:        primary.Password,
		BinDir:          primary.BinDir,
		Major:           primary.Major,
		ReplicationSlot: fmt.Sprintf("vigie_standby_%d", standbySeq.Add(1)),
		dir:             dir,
		dataDir:         filepath.Join(dir, "data"),
		sockDir:         filepath.Join(dir, "run"),
		cred:            primary.cred,
		process:         process{name: "PostgreSQL standby", logPath: filepath.Join(dir, "postgres.log")},
	}
	start := time.Now()
	if err := s.baseBackup(primary); err != nil {
		t.Fatalf("pg_basebackup of PostgreSQL at %s: %v", primary.Addr(), err)
	}
	backupTook := time.Since(start)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", s.logPath, s.LogTail(60))
		}
	})
	s.startRetrying(t, func() error {
		_, port, err := net.SplitHostPort(FreeLoopbackAddr(t))
		if err != nil {
			return err
		}
		if s.Port, err = strconv.Atoi(port); err != nil {
			return err
		}
		return s.launch()
	})
	s.waitFor(t, "streaming from the primary",
		`SELECT pg_is_in_recovery() AND coalesce((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false)`)
	t.Logf("PostgreSQL %d standby of %s ready at %s, streaming, slot %s, in %s (pg_basebackup %s)",
		s.Major, primary.Addr(), s.Addr(), s.ReplicationSlot,
		time.Since(start).Round(time.Millisecond), backupTook.Round(time.Millisecond))
	return s
}

// baseBackup fills p.dataDir with a base backup of primary, with
// standby.signal and primary_conninfo (-R) and a new slot (-C -S).
func (p *Postgres) baseBackup(primary *Postgres) error {
	// The password goes in a password file, not the command line: -R
	// copies the connection options into primary_conninfo, passfile
	// included, so the standby's WAL receiver uses the same file.
	passFile := filepath.Join(p.dir, "pgpass")
	entry := strings.Join([]string{
		pgpassEscape(primary.Host), strconv.Itoa(primary.Port), "*",
		pgpassEscape(primary.User), pgpassEscape(primary.Password),
	}, ":")
	if err := os.WriteFile(passFile, []byte(entry+"\n"), 0o600); err != nil {
		return err
	}
	// pg_basebackup accepts an existing empty data directory, which lets
	// it be created 0700 and handed to the server's user here.
	for _, d := range []string{p.dataDir, p.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if p.cred != nil {
		// The password file must belong to the user reading it: libpq
		// ignores one others can read, and nobody cannot read root's.
		if err := p.shareWithServerUser(passFile); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(p.BinDir, "pg_basebackup"),
		"--pgdata", p.dataDir,
		"--host", primary.Host,
		"--port", strconv.Itoa(primary.Port),
		"--username", primary.User,
		"--no-password",
		"--write-recovery-conf",
		"--create-slot", "--slot", p.ReplicationSlot,
		"--wal-method", "stream",
		// Do not wait for a spread checkpoint on the primary.
		"--checkpoint", "fast",
		"--no-sync")
	p.prepare(cmd)
	cmd.Env = append(cmd.Env, "PGPASSFILE="+passFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, tail(out, 30))
	}
	return nil
}

// pgpassEscape escapes a field of a password file.
func pgpassEscape(field string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(field)
}

// WaitReplayed waits until the standby p has replayed everything
// committed on primary so far, so that it is visible on p. It fails the
// test after 30s, e.g. while replay is paused. To know how far to wait,
// it commits on primary, with synchronous_commit=on, a transaction that
// only writes a logical decoding message: that flushes at once the WAL of
// the earlier commits, asynchronous in this harness.
func (p *Postgres) WaitReplayed(t testing.TB, primary *Postgres) {
	t.Helper()
	lsn := primary.flushWAL(t)
	p.waitFor(t, "replay up to "+lsn, fmt.Sprintf("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn", lsn))
}

// flushWAL has the primary p flush, hence send to its standbys, all the
// WAL inserted so far, and returns the flush position: the end of a
// record, which a standby's replay LSN reaches exactly. Neither
// pg_current_wal_insert_lsn() would do (after a WAL switch or at a page
// boundary it points past a page header, which replay only passes once
// another record comes, up to 15s later on an idle server), nor waiting
// for the WAL writer (it flushes asynchronous commits only every 200ms).
func (p *Postgres) flushWAL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s: %v", p.Addr(), err)
	}
	defer conn.Close(ctx)
	var lsn string
	for _, sql := range []string{
		"SET synchronous_commit = on",
		// A transaction that wrote WAL commits synchronously, flushing
		// all WAL before its commit record. A logical decoding message
		// is WAL that changes nothing (an xid alone is not: a commit
		// without other WAL is never synchronous).
		"SELECT pg_logical_emit_message(true, 'vigie-testenv', 'flush')",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("PostgreSQL at %s: %v\nSQL: %s", p.Addr(), err, sql)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		t.Fatalf("PostgreSQL at %s: pg_current_wal_flush_lsn(): %v", p.Addr(), err)
	}
	return lsn
}

// Promote makes the standby p a primary (pg_promote) and waits until it
// accepts writes. Its slot on the old primary stays: drop it there if the
// old primary lives on.
func (p *Postgres) Promote(t testing.TB) {
	t.Helper()
	// pg_promote waits (up to 60s) for the promotion to end.
	if got := p.QueryValue(t, "postgres", "SELECT pg_promote(true, 60)"); got != "t" {
		t.Fatalf("pg_promote() = %q, want t", got)
	}
	p.waitFor(t, "the end of recovery", "SELECT NOT pg_is_in_recovery()")
}

// waitFor polls sql, a query returning a boolean, every 25ms until it is
// true, failing the test after standbyReadyTimeout.
func (p *Postgres) waitFor(t testing.TB, what, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), standbyReadyTimeout)
	defer cancel()
	var last string
	var err error
	for {
		last, err = p.queryValue(ctx, "postgres", sql)
		if err == nil && last == "t" {
			return
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%s returned %q", sql, last)
			}
			t.Fatalf("PostgreSQL at %s: no %s after %s: %v\n%s", p.Addr(), what, standbyReadyTimeout, err, p.LogTail(20))
		case <-time.After(25 * time.Millisecond):
		}
	}
}
