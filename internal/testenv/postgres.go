package testenv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// postgresReadyTimeout bounds how long PostgreSQL may take to accept a
// connection after it is launched. It normally needs well under a second.
const postgresReadyTimeout = 30 * time.Second

// postgresStopTimeout bounds a fast shutdown before Stop falls back to
// SIGKILL.
const postgresStopTimeout = 30 * time.Second

// Postgres is a running PostgreSQL server, private to one test, listening
// on a free loopback port. Over TCP every role authenticates with
// scram-sha-256; the data directory and the Unix socket live in
// t.TempDir().
type Postgres struct {
	Host     string // 127.0.0.1
	Port     int
	User     string // the superuser, "postgres"
	Password string // User's password
	BinDir   string // initdb, postgres, pg_dump, pg_restore, psql, pgbench
	Major    int    // the server's major version, e.g. 15

	// ReplicationSlot is, for a standby from StartStandby, the name of
	// its physical replication slot on the primary; empty otherwise.
	ReplicationSlot string

	dir     string
	dataDir string
	sockDir string
	cred    *syscall.Credential // the unprivileged user running PostgreSQL when the tests run as root; nil otherwise

	process
}

// StartPostgres creates a fresh cluster with initdb in t.TempDir(), starts
// it on a free loopback port and stops it at cleanup. Binaries come from
// $VIGIE_PG_BIN, else from the newest /usr/lib/postgresql/*/bin (the
// Debian layout). PostgreSQL refuses to run as root, so when the tests do,
// initdb and the server run as the user nobody. Without the binaries it
// skips loudly, or fails with VIGIE_INTEGRATION=require.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING integration test in -short mode")
	}
	binDir, major, err := postgresBinDir()
	if err != nil {
		unavailable(t, "PostgreSQL", err.Error())
	}
	cred, err := postgresCredential()
	if err != nil {
		unavailable(t, "PostgreSQL", err.Error())
	}

	dir := t.TempDir()
	p := &Postgres{
		Host:     "127.0.0.1",
		User:     "postgres",
		Password: rand.Text(),
		BinDir:   binDir,
		Major:    major,
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		sockDir:  filepath.Join(dir, "run"),
		cred:     cred,
		process:  process{name: "PostgreSQL", logPath: filepath.Join(dir, "postgres.log")},
	}
	start := time.Now()
	if err := p.initdb(); err != nil {
		t.Fatalf("initdb: %v", err)
	}
	initdbTook := time.Since(start)
	// Not stopAtCleanup: that would SIGKILL, and a killed postmaster
	// leaves its SysV interlock segment behind.
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("last lines of %s:\n%s", p.logPath, p.LogTail(60))
		}
	})
	p.startRetrying(t, func() error {
		_, port, err := net.SplitHostPort(FreeLoopbackAddr(t))
		if err != nil {
			return err
		}
		if p.Port, err = strconv.Atoi(port); err != nil {
			return err
		}
		return p.launch()
	})
	t.Logf("PostgreSQL %d ready at %s:%d in %s (initdb %s)", p.Major, p.Host, p.Port,
		time.Since(start).Round(time.Millisecond), initdbTook.Round(time.Millisecond))
	return p
}

// postgresBinDir returns $VIGIE_PG_BIN, or the newest Debian
// /usr/lib/postgresql/<major>/bin that has a server, and its major version.
func postgresBinDir() (string, int, error) {
	hasServer := func(dir string) bool {
		for _, name := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("VIGIE_PG_BIN"); dir != "" {
		if !hasServer(dir) {
			return "", 0, fmt.Errorf("VIGIE_PG_BIN=%s has no initdb and postgres", dir)
		}
		major, err := postgresMajor(filepath.Join(dir, "postgres"))
		return dir, major, err
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestMajor := "", 0
	for _, dir := range dirs {
		// Debian names the directory after the major version.
		major, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err == nil && major > bestMajor && hasServer(dir) {
			best, bestMajor = dir, major
		}
	}
	if best == "" {
		return "", 0, errors.New("no /usr/lib/postgresql/*/bin with initdb and postgres (apt-get install postgresql, or set VIGIE_PG_BIN)")
	}
	return best, bestMajor, nil
}

// postgresMajor parses `postgres --version`: "postgres (PostgreSQL) 15.14
// (Debian 15.14-0+deb12u1)".
func postgresMajor(postgres string) (int, error) {
	out, err := exec.Command(postgres, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %v", postgres, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) >= 3 {
		major, _, _ := strings.Cut(fields[2], ".")
		if n, err := strconv.Atoi(major); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s --version: unexpected output %q", postgres, out)
}

// postgresCredential returns nil when the tests do not run as root, else
// the user nobody, whom PostgreSQL accepts to run as.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("running as root and PostgreSQL refuses to: cannot find the user nobody to run it as: %v", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of nobody: %v", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of nobody: %v", err)
	}
	// An empty Groups drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// initdb creates the cluster in p.dataDir, with the superuser's password
// checked over TCP and trust on the Unix socket, which only p.cred can
// reach.
func (p *Postgres) initdb() error {
	pwFile := filepath.Join(p.dir, "superuser.pw")
	if err := os.WriteFile(pwFile, []byte(p.Password+"\n"), 0o600); err != nil {
		return err
	}
	for _, d := range []string{p.dataDir, p.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	if p.cred != nil {
		if err := p.shareWithServerUser(pwFile); err != nil {
			return err
		}
	}
	cmd := exec.Command(filepath.Join(p.BinDir, "initdb"),
		"--pgdata", p.dataDir,
		"--username", p.User,
		"--pwfile", pwFile,
		"--auth-host", "scram-sha-256",
		"--auth-local", "trust",
		// C locale: fast, and the same on every machine whatever its
		// installed locales.
		"--encoding", "UTF8", "--locale", "C",
		// Nothing is worth an fsync in a throwaway cluster.
		"--no-sync")
	p.prepare(cmd)
	out, err := cmd.CombinedOutput()
	_ = os.Remove(pwFile)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, tail(out, 30))
	}
	return nil
}

// shareWithServerUser lets p.cred reach p.dir and own the data and socket
// directories (and the password file, read by initdb). t.TempDir()'s
// parent is 0700 root: 0711 lets others through it, not list it. Files
// that nobody creates in it are still removable by root at cleanup.
func (p *Postgres) shareWithServerUser(pwFile string) error {
	if err := os.Chmod(filepath.Dir(p.dir), 0o711); err != nil {
		return err
	}
	// Above the test's own directories (os.TempDir() and up) nothing is
	// changed: say so clearly rather than let initdb fail obscurely.
	for d := filepath.Dir(filepath.Dir(p.dir)); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not traversable by others (mode %v), so PostgreSQL running as uid %d cannot reach its data directory: set TMPDIR elsewhere",
				d, fi.Mode().Perm(), p.cred.Uid)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	for _, path := range []string{pwFile, p.dataDir, p.sockDir} {
		if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return err
		}
	}
	return nil
}

// prepare sets what every PostgreSQL command the harness runs needs: the
// unprivileged user when root, a readable working directory, and no PG*
// variable from the caller's environment.
func (p *Postgres) prepare(cmd *exec.Cmd) {
	cmd.Dir = p.dir
	cmd.Env = withoutEnvPrefixes(os.Environ(), "PG")
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	}
}

// launch starts the server on p.Port, as p.cred, and waits until the
// superuser can log in over TCP.
func (p *Postgres) launch() error {
	// Quoted: the list is comma separated, and test names, hence
	// t.TempDir(), may hold commas.
	sockets := `"` + p.sockDir + `"`
	if len(p.sockDir+"/.s.PGSQL.65535") > 107 {
		// Past sun_path's limit the server would refuse to start: TCP is
		// all the harness uses anyway.
		sockets = ""
	}
	cmd := exec.Command(filepath.Join(p.BinDir, "postgres"),
		"-D", p.dataDir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(p.Port),
		"-c", "unix_socket_directories="+sockets,
		// Durability is pointless for a throwaway cluster; speed is not.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// Dynamic shared memory as files in the data directory rather than
		// in /dev/shm, so a killed server leaves nothing outside t.TempDir().
		"-c", "dynamic_shared_memory_type=mmap",
		// Logs go to stderr, i.e. to p.logPath.
		"-c", "logging_collector=off")
	p.prepare(cmd)
	return p.start(cmd, postgresReadyTimeout, p.ping)
}

// ping logs in as the superuser over TCP: it proves the listener, the end
// of crash recovery and the password.
func (p *Postgres) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// URL returns a connection URL to database as the superuser, over TCP
// without TLS.
func (p *Postgres) URL(database string) string {
	return p.URLVia(p.Addr(), database)
}

// Addr returns the server's "host:port", e.g. a TCPProxy target.
func (p *Postgres) Addr() string {
	return net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
}

// URLVia is URL with another "host:port" to connect to, such as a
// TCPProxy's Addr in front of the server.
func (p *Postgres) URLVia(addr, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(p.User, p.Password),
		Host:     addr,
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Exec runs sql in database as the superuser and fails the test on error.
// Several statements separated by semicolons run as one implicit
// transaction, so statements that refuse one (CREATE DATABASE, VACUUM)
// need an Exec of their own.
func (p *Postgres) Exec(t testing.TB, database, sql string) {
	t.Helper()
	// Not t.Context(): it is already canceled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL(database))
	if err != nil {
		t.Fatalf("connect to PostgreSQL database %q: %v", database, err)
	}
	defer conn.Close(ctx)
	// Without arguments pgx uses the simple query protocol, which accepts
	// several statements.
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("PostgreSQL database %q: %v\nSQL: %s", database, err, sql)
	}
}

// QueryValue runs sql in database as the superuser and returns the first
// column of its first row as PostgreSQL prints it ("t" for true, "0/3000148"
// for an LSN), "" for NULL. It fails the test on error or when there is no
// row. Of several statements separated by semicolons, the last one's
// result counts.
func (p *Postgres) QueryValue(t testing.TB, database, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := p.queryValue(ctx, database, sql)
	if err != nil {
		t.Fatalf("PostgreSQL database %q: %v\nSQL: %s", database, err, sql)
	}
	return v
}

// queryValue is QueryValue returning its error, for polling.
func (p *Postgres) queryValue(ctx context.Context, database, sql string) (string, error) {
	conn, err := pgx.Connect(ctx, p.URL(database))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// The simple query protocol: every value comes back as text.
	results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(results) == 0 {
		return "", errors.New("no statement")
	}
	last := results[len(results)-1]
	if len(last.Rows) == 0 || len(last.Rows[0]) == 0 {
		return "", errors.New("the query returned no row")
	}
	return string(last.Rows[0][0]), nil
}

// Stop shuts the server down (fast shutdown: sessions are disconnected,
// the data is kept and checkpointed) and waits for it to exit. Safe to
// call more than once; also called at cleanup.
func (p *Postgres) Stop() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd != nil {
		// SIGINT is the postmaster's fast shutdown.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(postgresStopTimeout):
		}
	}
	// Reaps, and kills the process group if the shutdown hung.
	p.process.Stop()
}

// Restart starts the server again after Stop, on the same port and with
// the same data.
func (p *Postgres) Restart(t testing.TB) {
	t.Helper()
	p.Stop()
	if err := p.launch(); err != nil {
		p.process.Stop()
		t.Fatalf("PostgreSQL did not restart: %v\n%s", err, p.LogTail(40))
	}
}

// withoutEnvPrefixes returns env minus the variables whose names start
// with one of prefixes.
func withoutEnvPrefixes(env []string, prefixes ...string) []string {
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, prefix := range prefixes {
			drop = drop || strings.HasPrefix(name, prefix)
		}
		if !drop {
			kept = append(kept, kv)
		}
	}
	return kept
}
