// Package pgserver is how Vigie reaches a PostgreSQL server: one
// connection setting for pgx and for the libpq tools, the password never
// in a string that could be logged.
package pgserver

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Server is how Vigie reaches a PostgreSQL server.
type Server struct {
	Host     string
	Port     int
	User     string
	Password string
	SSLMode  string // libpq's sslmode
	CAFile   string // sslrootcert, for verify-ca and verify-full
}

func (s Server) String() string { return fmt.Sprintf("%s@%s:%d", s.User, s.Host, s.Port) }

// connString is a libpq keyword/value string without the password (given
// apart, so it is never in a string that could be logged).
func (s Server) connString(database string) string {
	kv := []string{
		"host=" + quoteConn(s.Host), "port=" + strconv.Itoa(s.Port), "user=" + quoteConn(s.User),
		"dbname=" + quoteConn(database), "sslmode=" + quoteConn(s.SSLMode),
		"connect_timeout=15", "application_name=vigie",
	}
	if s.CAFile != "" {
		kv = append(kv, "sslrootcert="+quoteConn(s.CAFile))
	}
	return strings.Join(kv, " ")
}

func quoteConn(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// Connect opens a connection to one database.
func (s Server) Connect(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.connString(database))
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL %s: %w", s, err)
	}
	cfg.Password = s.Password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL %s, database %q: %w", s, database, err)
	}
	return conn, nil
}

// ToolEnv writes a libpq password file for s in dir (0600), so that the
// tools get the password without a command line or an environment
// variable another process could read; it returns the tools' environment.
func (s Server) ToolEnv(dir string) (map[string]string, error) {
	env := map[string]string{"PGSSLMODE": s.SSLMode, "PGCONNECT_TIMEOUT": "15", "PGAPPNAME": "vigie"}
	if s.CAFile != "" {
		env["PGSSLROOTCERT"] = s.CAFile
	}
	if s.Password == "" {
		return env, nil
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	line := strings.Join([]string{esc.Replace(s.Host), strconv.Itoa(s.Port), "*", esc.Replace(s.User), esc.Replace(s.Password)}, ":") + "\n"
	f, err := os.CreateTemp(dir, "pgpass-")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return nil, err
	}
	if _, err := f.WriteString(line); err != nil {
		return nil, err
	}
	env["PGPASSFILE"] = f.Name()
	return env, nil
}
