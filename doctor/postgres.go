package doctor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/internal/pgserver"
)

// pgVersion is a server's version.
type pgVersion struct {
	major int
	full  string // server_version, e.g. "17.2 (Debian 17.2-1.pgdg120+1)"
}

// serverVersion connects to database and asks the version.
func serverVersion(ctx context.Context, srv pgserver.Server, database string) (pgVersion, error) {
	conn, err := srv.Connect(ctx, database)
	if err != nil {
		return pgVersion{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var num, full string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num'), current_setting('server_version')").Scan(&num, &full); err != nil {
		return pgVersion{}, fmt.Errorf("PostgreSQL %s: server version: %w", srv, err)
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return pgVersion{}, fmt.Errorf("PostgreSQL %s: server_version_num %q: %w", srv, num, err)
	}
	return pgVersion{major: n / 10000, full: full}, nil
}

// pgError adds what to check to a connection failure.
func pgError(err error) string {
	var pe *pgconn.PgError
	msg := err.Error()
	switch {
	case errors.As(err, &pe) && pe.Code == "28P01":
		return msg + " (check the password_file or the VIGIE_*_PASSWORD variable)"
	case errors.As(err, &pe) && pe.Code == "3D000":
		return msg + " (the database does not exist: check databases or database)"
	case errors.As(err, &pe) && pe.Code == "28000":
		return msg + " (pg_hba.conf does not let this user in from here, or sslmode does not match)"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"), strings.Contains(msg, "i/o timeout"):
		return msg + " (check host and port: the Stolon proxy's)"
	case errors.Is(err, context.DeadlineExceeded):
		return msg + " (no answer in time: check host, port and firewalls)"
	}
	return msg
}

// targetDatabase is the database a target's checks connect to.
func targetDatabase(t config.BackupTarget) string {
	if len(t.Databases) > 0 && t.Databases[0] != "*" {
		return t.Databases[0]
	}
	return "postgres"
}

func pgServer(s config.PGServer) pgserver.Server {
	return pgserver.Server{Host: s.Host, Port: s.Port, User: s.User, Password: s.Password.Reveal(), SSLMode: s.SSLMode, CAFile: s.CAFile}
}

// postgresChecks are the checks of each postgres backup target: its
// server (through the Stolon proxy), the verification server, pg_dump.
func postgresChecks(p *Plan, cfg *config.Config) {
	const comp = "postgres"
	found := false
	for _, t := range cfg.Backups.Targets {
		if t.Kind != config.BackupPostgres {
			continue
		}
		found = true
		srv, db := pgServer(t.Postgres), targetDatabase(t)
		server := NewLazy(func(ctx context.Context) (pgVersion, error) { return serverVersion(ctx, srv, db) })
		p.Add(Check{Component: comp, Name: t.Name + " server", Run: func(ctx context.Context) Result {
			v, err := server.Get(ctx)
			if err != nil {
				return Fail("%s", pgError(err))
			}
			return OK("PostgreSQL %s (major %d) at %s, database %s", v.full, v.major, srv, db)
		}})
		if t.Verify.Host != "" {
			vsrv := pgServer(t.Verify)
			p.Add(Check{Component: comp, Name: t.Name + " verify server", Run: func(ctx context.Context) Result {
				v, err := serverVersion(ctx, vsrv, "postgres")
				if err != nil {
					return Fail("the scratch server restores are verified on: %s", pgError(err))
				}
				main, err := server.Get(ctx)
				if err == nil && v.major < main.major {
					return Fail("PostgreSQL %s at %s is older than the server backed up (%s): a restore there can fail; use a scratch server of major %d or newer",
						v.full, vsrv, main.full, main.major)
				}
				return OK("PostgreSQL %s (major %d) at %s", v.full, v.major, vsrv)
			}})
		}
		tools := backups.Tools{PgDump: t.PgDumpPath}
		p.Add(Check{Component: comp, Name: t.Name + " pg_dump", Run: func(ctx context.Context) Result {
			return pgDumpCheck(ctx, t, tools, server)
		}})
	}
	if !found {
		p.Add(Check{Component: comp, Name: "backups", Run: func(context.Context) Result {
			return Skip("no backup target of kind postgres")
		}})
	}
}

// pgDumpCheck runs pg_dump --version and compares it with the server; a
// pg_dump older than the server cannot dump it. pg_restore (restores,
// verification) and pg_dumpall (databases = ["*"]) are looked for beside it.
func pgDumpCheck(ctx context.Context, t config.BackupTarget, tools backups.Tools, server *Lazy[pgVersion]) Result {
	major, line, err := tools.Version(ctx, "pg_dump")
	if err != nil {
		return Fail("%v", err)
	}
	if len(t.Databases) == 1 && t.Databases[0] == "*" {
		if _, _, err := tools.Version(ctx, "pg_dumpall"); err != nil {
			return Fail("%v (databases = [\"*\"] dumps the roles with pg_dumpall, beside pg_dump)", err)
		}
	}
	v, err := server.Get(ctx)
	if err != nil {
		return Warn("%s; the server is out of reach, so it cannot be compared with it", line)
	}
	if major < v.major {
		return Fail("%v", &backups.PgDumpTooOldError{PgDump: line, Server: v.full, Major: v.major})
	}
	detail := fmt.Sprintf("%s, can dump PostgreSQL %d", line, v.major)
	if _, _, err := tools.Version(ctx, "pg_restore"); err != nil {
		return Warn("%s; but %v: restores and verifications need it", detail, err)
	}
	return OK("%s", detail)
}
