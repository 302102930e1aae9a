package stolon

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigie/vigie/clock"
)

// probeInterval is how often a failover asks the proxy whether a client
// could write.
const probeInterval = 200 * time.Millisecond

// writeProbe asks through the proxy, every probeInterval, whether a
// client could write now: a session whose server is not in recovery and
// whose transactions are not read-only. It writes nothing: the fence's
// read-only default and a standby both show in those two answers.
type writeProbe struct {
	c   *Cluster
	clk clock.Clock

	mu       sync.Mutex
	probes   int
	failures int
	last     probeSample
	downFrom time.Time // first failure of the current outage, zero while writable
	outages  []Outage
}

// probeSample is one answer.
type probeSample struct {
	At       time.Time
	Writable bool
	Addr     string
	Port     int
	Err      string
}

// Outage is a time writes were unavailable through the proxy: from the
// first probe that could not write to the first that could again.
type Outage struct {
	From, To time.Time
}

// Duration is how long it lasted.
func (o Outage) Duration() time.Duration { return o.To.Sub(o.From) }

// run probes until ctx is done.
func (p *writeProbe) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		s := probeSample{}
		conn, s = p.once(ctx, conn)
		if ctx.Err() != nil {
			return
		}
		p.record(s)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// once asks once, reconnecting as needed; a session that could not write
// is closed, since the settings of a new one may differ.
func (p *writeProbe) once(ctx context.Context, conn *pgx.Conn) (*pgx.Conn, probeSample) {
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var err error
	if conn == nil {
		if conn, err = p.c.Postgres.Connect(qctx, p.c.Database); err != nil {
			return nil, probeSample{At: p.clk.Now(), Err: err.Error()}
		}
	}
	s := probeSample{}
	err = conn.QueryRow(qctx, `SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off',
		coalesce(host(inet_server_addr()), ''), coalesce(inet_server_port(), 0)`).Scan(&s.Writable, &s.Addr, &s.Port)
	s.At = p.clk.Now()
	if err != nil {
		s.Err = err.Error()
	}
	if err != nil || !s.Writable {
		conn.Close(context.WithoutCancel(ctx))
		conn = nil
	}
	return conn, s
}

func (p *writeProbe) record(s probeSample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	p.last = s
	switch {
	case !s.Writable:
		p.failures++
		if p.downFrom.IsZero() {
			p.downFrom = s.At
		}
	case !p.downFrom.IsZero():
		p.outages = append(p.outages, Outage{From: p.downFrom, To: s.At})
		p.downFrom = time.Time{}
	}
}

// probeReport is the probe's findings so far.
type probeReport struct {
	Probes, Failures int
	Last             probeSample
	Outages          []Outage  // ended
	DownSince        time.Time // an outage under way, zero if none
}

func (p *writeProbe) report() probeReport {
	p.mu.Lock()
	defer p.mu.Unlock()
	return probeReport{Probes: p.probes, Failures: p.failures, Last: p.last, Outages: append([]Outage(nil), p.outages...), DownSince: p.downFrom}
}
