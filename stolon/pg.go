package stolon

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigie/vigie/internal/pgserver"
)

// connectTimeout bounds one connection attempt to a keeper or the proxy.
const connectTimeout = 5 * time.Second

// connect opens a session on srv, bounded by connectTimeout, in which
// this session may write whatever default a fence set.
func (c *Cluster) connect(ctx context.Context, srv pgserver.Server) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := srv.Connect(cctx, c.Database)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SET default_transaction_read_only = off"); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("PostgreSQL %s: %w", srv, err)
	}
	return conn, nil
}

// connectDB opens a session on a keeper's PostgreSQL, at the address
// clusterdata gives.
func (c *Cluster) connectDB(ctx context.Context, db *DB) (*pgx.Conn, error) {
	srv, err := c.keeperServer(db)
	if err != nil {
		return nil, err
	}
	return c.connect(ctx, srv)
}

// Replay is a standby's replication as PostgreSQL itself tells it: Stolon
// sees only the WAL received.
type Replay struct {
	InRecovery bool
	Paused     bool  // replay paused (pg_wal_replay_pause)
	Behind     int64 // bytes of WAL replayed behind the position asked about
}

// replayOf asks a standby how far its replay is behind lsn.
func replayOf(ctx context.Context, conn *pgx.Conn, lsn string) (Replay, error) {
	var r Replay
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END,
		CASE WHEN pg_is_in_recovery() THEN coalesce(pg_wal_lsn_diff($1::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint ELSE 0 END`,
		lsn).Scan(&r.InRecovery, &r.Paused, &r.Behind)
	return r, err
}

// masterPosition is where a master's WAL ends now.
func masterPosition(ctx context.Context, conn *pgx.Conn) (string, error) {
	var inRecovery bool
	var lsn string
	err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN '0/0' ELSE pg_current_wal_lsn()::text END").Scan(&inRecovery, &lsn)
	if err == nil && inRecovery {
		err = fmt.Errorf("it is in recovery: not a master")
	}
	return lsn, err
}

// timelineOf is the timeline a master writes on, from its WAL file name.
func timelineOf(ctx context.Context, conn *pgx.Conn) (uint64, error) {
	var hex string
	if err := conn.QueryRow(ctx, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)").Scan(&hex); err != nil {
		return 0, err
	}
	return strconv.ParseUint(hex, 16, 64)
}

// sameServer says whether a session's server address and port are the
// DB's: by port, and by address when both are IP addresses (a proxy may
// reach a server by another name).
func sameServer(db *DB, addr string, port int) bool {
	if db == nil || strconv.Itoa(port) != db.Status.Port {
		return false
	}
	want, got := net.ParseIP(db.Status.ListenAddress), net.ParseIP(addr)
	return want == nil || got == nil || want.IsUnspecified() || want.Equal(got)
}
