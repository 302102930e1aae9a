package backups

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vigie/vigie/internal/pgserver"
)

// Tools are the PostgreSQL client programs, found beside pg_dump.
type Tools struct{ PgDump string }

func (t Tools) beside(name string) string {
	if dir := filepath.Dir(t.PgDump); strings.Contains(t.PgDump, "/") {
		return filepath.Join(dir, name)
	}
	return name // looked up in PATH, like pg_dump
}

func (t Tools) pgDumpall() string { return t.beside("pg_dumpall") }
func (t Tools) pgRestore() string { return t.beside("pg_restore") }

var toolVersion = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// Version runs "<tool> --version": its major version and the whole line.
func (t Tools) Version(ctx context.Context, tool string) (int, string, error) {
	path := t.PgDump
	if tool != "pg_dump" {
		path = t.beside(tool)
	}
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return 0, "", fmt.Errorf("%s not found: install PostgreSQL's client tools, or set pg_dump_path", path)
		}
		return 0, "", fmt.Errorf("%s --version: %w", path, err)
	}
	m := toolVersion.FindStringSubmatch(string(out))
	if m == nil {
		return 0, "", fmt.Errorf("%s --version said %q, not a PostgreSQL version", path, strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	return major, strings.TrimSpace(string(out)), nil
}

// serverVersion returns the server's major version and its version string.
func serverVersion(ctx context.Context, conn *pgx.Conn) (int, string, error) {
	var num, full string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), current_setting('server_version')").Scan(&num, &full); err != nil {
		return 0, "", err
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, "", fmt.Errorf("server_version_num %q: %w", num, err)
	}
	return n / 10000, full, nil
}

// CheckPgDump compares pg_dump's major version with the server's: an
// older pg_dump cannot dump a newer server.
func CheckPgDump(ctx context.Context, tools Tools, srv pgserver.Server, database string) error {
	dumpMajor, dumpLine, err := tools.Version(ctx, "pg_dump")
	if err != nil {
		return err
	}
	conn, err := srv.Connect(ctx, database)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	major, full, err := serverVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("PostgreSQL %s: server version: %w", srv, err)
	}
	if dumpMajor < major {
		return &PgDumpTooOldError{PgDump: dumpLine, Server: full, Major: major}
	}
	return nil
}

// PgDumpTooOldError is a pg_dump older than the server it should dump.
type PgDumpTooOldError struct {
	PgDump string // its --version line
	Server string // the server's version
	Major  int
}

func (e *PgDumpTooOldError) Error() string {
	return fmt.Sprintf("%s is older than the server (PostgreSQL %s): it cannot dump it; set pg_dump_path to a pg_dump %d or newer", e.PgDump, e.Server, e.Major)
}

// postgresSource dumps databases with pg_dump -Fc through the Stolon
// proxy, counting each table's rows in the very snapshot pg_dump reads.
type postgresSource struct {
	srv       pgserver.Server
	tools     Tools
	databases []string // names, or ["*"]
	workDir   string   // for the password file; removed by the run

	mu     sync.Mutex
	result PostgresFacts
}

func (p *postgresSource) facts() Facts {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.result
	slices.SortFunc(f.Databases, func(a, b DatabaseFacts) int { return strings.Compare(a.Name, b.Name) })
	return Facts{Postgres: &f}
}

func (p *postgresSource) parts(ctx context.Context) ([]part, error) {
	all := slices.Equal(p.databases, []string{"*"})
	first := "postgres"
	if !all {
		first = p.databases[0]
	}
	conn, err := p.srv.Connect(ctx, first)
	if err != nil {
		if pgErrorCode(err) == "3D000" { // invalid_catalog_name
			return nil, fmt.Errorf("PostgreSQL %s has no database %q", p.srv, first)
		}
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	major, full, err := serverVersion(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL %s: server version: %w", p.srv, err)
	}
	dumpMajor, dumpLine, err := p.tools.Version(ctx, "pg_dump")
	if err != nil {
		return nil, err
	}
	if dumpMajor < major {
		return nil, &PgDumpTooOldError{PgDump: dumpLine, Server: full, Major: major}
	}
	p.result = PostgresFacts{ServerVersion: full, PgDumpVersion: dumpLine}

	databases := p.databases
	if all {
		rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn ORDER BY datname")
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL %s: list the databases: %w", p.srv, err)
		}
		databases, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL %s: list the databases: %w", p.srv, err)
		}
	} else {
		var missing []string
		for _, db := range databases {
			var ok bool
			if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&ok); err != nil {
				return nil, fmt.Errorf("PostgreSQL %s: %w", p.srv, err)
			}
			if !ok {
				missing = append(missing, strconv.Quote(db))
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("PostgreSQL %s has no database %s", p.srv, strings.Join(missing, ", "))
		}
	}
	env, err := p.srv.ToolEnv(p.workDir)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	var parts []part
	if all {
		parts = append(parts, part{ext: "globals.sql", kind: partGlobals, open: func(ctx context.Context) (io.ReadCloser, error) {
			return startTool(ctx, p.tools.pgDumpall(), append(p.connArgs(), "--globals-only", "--no-password"), toolEnv(env))
		}})
	}
	for _, db := range databases {
		ext := "dump"
		if all || len(databases) > 1 {
			ext = db + ".dump"
		}
		parts = append(parts, part{ext: ext, kind: partDump, database: db, open: func(ctx context.Context) (io.ReadCloser, error) {
			return p.dump(ctx, db, env)
		}})
	}
	return parts, nil
}

func (p *postgresSource) connArgs() []string {
	return []string{"--host", p.srv.Host, "--port", strconv.Itoa(p.srv.Port), "--username", p.srv.User}
}

// dump starts pg_dump on one database and counts each table's rows in
// the archive as it streams by: what verification compares a restore with
// is exactly what the dump holds, at no cost to the server.
func (p *postgresSource) dump(ctx context.Context, db string, env map[string]string) (io.ReadCloser, error) {
	args := append(p.connArgs(), "--dbname", db, "--format", "custom", "--compress", "0", "--no-password")
	out, err := startTool(ctx, p.tools.PgDump, args, toolEnv(env))
	if err != nil {
		return nil, err
	}
	return &dumpStream{toolOutput: out, rows: newArchiveRows(), src: p, db: db}, nil
}

// dumpStream is pg_dump's output, counted as it passes.
type dumpStream struct {
	*toolOutput
	rows *archiveRows
	src  *postgresSource
	db   string
	done bool
}

func (d *dumpStream) Read(p []byte) (int, error) {
	n, err := d.toolOutput.Read(p)
	_, _ = d.rows.Write(p[:n])
	if errors.Is(err, io.EOF) && !d.done { // pg_dump succeeded: its archive is whole
		d.done = true
		tables, cerr := d.rows.result()
		facts := DatabaseFacts{Name: d.db, Tables: tables}
		if cerr != nil {
			facts = DatabaseFacts{Name: d.db, CountError: cerr.Error()}
		}
		d.src.mu.Lock()
		d.src.result.Databases = append(d.src.result.Databases, facts)
		d.src.mu.Unlock()
	}
	return n, err
}

func (d *dumpStream) Close() error {
	err := d.toolOutput.Close()
	if !d.done {
		d.done = true
		_, _ = d.rows.result()
	}
	return err
}

// countRows counts the rows of every table a dump holds rows of, in the
// transaction's snapshot: ONLY each table's own, as pg_dump dumps them.
func countRows(ctx context.Context, tx pgx.Tx) ([]TableCount, error) {
	tables, err := userTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	for i, t := range tables {
		q := "SELECT count(*) FROM ONLY " + pgx.Identifier{t.Schema, t.Name}.Sanitize()
		if err := tx.QueryRow(ctx, q).Scan(&tables[i].Rows); err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t.Schema, t.Name, err)
		}
	}
	return tables, nil
}

// querier is what userTables needs of a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// userTables lists the tables a dump holds rows of: ordinary tables and
// partitions (a partitioned table holds none itself), not the system's.
func userTables(ctx context.Context, q querier) ([]TableCount, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r'
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableCount, error) {
		var t TableCount
		err := r.Scan(&t.Schema, &t.Name)
		return t, err
	})
}

// pgErrorCode is the SQLSTATE of a server error, "" for anything else.
func pgErrorCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
