package testenv

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestPostgresKeepsDataAcrossRestart(t *testing.T) {
	pg := StartPostgres(t)
	if os.Geteuid() == 0 {
		checkRunsAsNobody(t, pg)
	}

	pg.Exec(t, "postgres", "CREATE DATABASE app")
	pg.Exec(t, "app", `CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
		INSERT INTO notes VALUES (1, 'before restart'), (2, 'é ✓')`)
	if got := readNotes(t, pg); got != "before restart|é ✓" {
		t.Fatalf("notes = %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var versionNum int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&versionNum); err != nil {
		t.Fatal(err)
	}
	if versionNum/10000 != pg.Major {
		t.Errorf("server_version_num = %d, Major = %d", versionNum, pg.Major)
	}
	// scram-sha-256 over TCP: the password is really checked.
	badURL := strings.Replace(pg.URL("app"), ":"+pg.Password+"@", ":wrong@", 1)
	c, err := pgx.Connect(ctx, badURL)
	if err == nil {
		c.Close(ctx)
		t.Fatal("connected with a wrong password")
	}
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %v, want SQLSTATE 28P01 (invalid_password)", err)
	}

	pg.Stop()
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port)), time.Second); err == nil {
		c.Close()
		t.Fatal("PostgreSQL still accepts connections after Stop")
	}
	// A fast shutdown disconnects sessions.
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a session survived Stop")
	}
	pg.Stop() // idempotent

	pg.Restart(t)
	pg.Exec(t, "app", "INSERT INTO notes VALUES (3, 'after restart')")
	if got := readNotes(t, pg); got != "before restart|é ✓|after restart" {
		t.Fatalf("notes after restart = %q", got)
	}

	// The client tools the backups use are next to the server.
	for _, tool := range []string{"pg_dump", "pg_restore", "psql", "pgbench"} {
		if _, err := os.Stat(filepath.Join(pg.BinDir, tool)); err != nil {
			t.Errorf("%s: %v", tool, err)
		}
	}
	out, err := exec.Command(filepath.Join(pg.BinDir, "psql"), "--no-psqlrc", "--tuples-only", "--no-align",
		"--dbname", pg.URL("app"), "--command", "SELECT count(*) FROM notes").CombinedOutput()
	if err != nil || string(out) != "3\n" {
		t.Errorf("psql: %v, output %q", err, out)
	}
}

func readNotes(t *testing.T, pg *Postgres) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got string
	if err := conn.QueryRow(ctx, "SELECT string_agg(body, '|' ORDER BY id) FROM notes").Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// checkRunsAsNobody checks that a root test run gave PostgreSQL, which
// refuses root, an unprivileged user.
func checkRunsAsNobody(t *testing.T, pg *Postgres) {
	t.Helper()
	fi, err := os.Stat(pg.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid == 0 || st.Uid != pg.cred.Uid {
		t.Errorf("data directory owned by uid %d, want %d (nobody)", st.Uid, pg.cred.Uid)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
	// The postmaster itself, not only its files, is unprivileged.
	pg.mu.Lock()
	pid := pg.cmd.Process.Pid
	pg.mu.Unlock()
	proc, err := os.Stat("/proc/" + strconv.Itoa(pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := proc.Sys().(*syscall.Stat_t).Uid; uid != pg.cred.Uid {
		t.Errorf("postmaster runs as uid %d, want %d", uid, pg.cred.Uid)
	}
	// The Unix socket is in the test's directory, never /var/run/postgresql.
	sock := filepath.Join(pg.sockDir, ".s.PGSQL."+strconv.Itoa(pg.Port))
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("socket: %v", err)
	}
}
