package stolon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/ctxutil"
)

// Step is one step of a failover, as it ended.
type Step struct {
	Name   string // "fenced", "caught up", ...
	At     time.Time
	Took   time.Duration // since the previous step
	Detail string
	Failed bool
}

// Progress is a failover so far.
type Progress struct {
	Cluster string
	Started time.Time
	Steps   []Step
	Waiting string // what it waits for now; "" once over
}

// Result is a failover's outcome, or how far a failed one went.
type Result struct {
	Progress
	OldKeeper, OldDB string
	NewKeeper, NewDB string
	Timeline         uint64 // the new master's
	// Outages are the times writes were unavailable through the proxy;
	// Probes and ProbeFailures count the probes.
	Outages               []Outage
	Probes, ProbeFailures int
	PostCheck             error // nil: the proxy reaches the new master and it takes writes
	Rejoined              bool  // the old master is back as a standby
	Warnings              []string
	FenceLeft             *Fence // a fence Vigie could not lift, nil if none
}

// WritesDown is how long writes were unavailable through the proxy, in
// all, as a client saw it.
func (r *Result) WritesDown() time.Duration {
	var d time.Duration
	for _, o := range r.Outages {
		d += o.Duration()
	}
	return d
}

// FailoverError is a failover that did not happen, or did not end well;
// Result says how far it went.
type FailoverError struct {
	Result *Result
	Err    error
	Hint   string // what to look at
}

func (e *FailoverError) Error() string {
	if e.Hint == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + " " + e.Hint
}

func (e *FailoverError) Unwrap() error { return e.Err }

// casAttempts bounds the check-and-set of forceFail: the sentinel
// rewrites clusterdata every few seconds.
const casAttempts = 5

// pollInterval is how often a failover asks a server what it waits for.
const pollInterval = 50 * time.Millisecond

// run is one failover under way.
type run struct {
	s      *Service
	c      *Cluster
	plan   *Plan
	report func(Progress)
	log    *zerolog.Logger

	mu  sync.Mutex // res.Progress, read by report
	res *Result

	master   *pgx.Conn            // a session on the old master, for the fence
	standbys map[string]*pgx.Conn // on each standby Stolon may elect, by DB UID
	newConn  *pgx.Conn            // on the new master once elected
	fence    *Fence               // set once recorded
	liftedAt map[string]bool      // where the fence is gone: "old", "new"
	probe    *writeProbe
}

func (r *run) now() time.Time { return r.s.clk.Now() }

// step records a step that ended and tells the progress.
func (r *run) step(name, detail string, failed bool) {
	r.mu.Lock()
	at := r.now()
	prev := r.res.Started
	if n := len(r.res.Steps); n > 0 {
		prev = r.res.Steps[n-1].At
	}
	r.res.Steps = append(r.res.Steps, Step{Name: name, At: at, Took: at.Sub(prev), Detail: detail, Failed: failed})
	p := r.progressLocked()
	r.mu.Unlock()
	r.log.Info().Str("step", name).Str("detail", detail).Bool("failed", failed).Msg("Stolon failover")
	r.report(p)
}

func (r *run) waiting(what string) {
	r.mu.Lock()
	r.res.Waiting = what
	p := r.progressLocked()
	r.mu.Unlock()
	r.report(p)
}

func (r *run) progressLocked() Progress {
	p := r.res.Progress
	p.Steps = slices.Clone(p.Steps)
	return p
}

// Failover runs a failover the preflight planned: re-check, fence the
// master, wait for the standbys Stolon may elect to replay everything,
// set forceFail, watch the sentinel elect and the proxies follow while
// probing writes through the proxy, check the result through the proxy,
// and wait for the old master to come back as a standby. The fence never
// outlives it. The error, if any, is a *FailoverError, a *RefusedError
// (the cluster no longer passes the preflight), or a failure to read
// the cluster.
func (s *Service) Failover(ctx context.Context, plan *Plan, report func(Progress)) (*Result, error) {
	c, err := s.Cluster(plan.Cluster)
	if err != nil {
		return nil, err
	}
	if !s.begin(c.Name) {
		return nil, fmt.Errorf("a failover of %s is already running", c.Name)
	}
	defer s.end(c.Name)
	log := zerolog.Ctx(ctx).With().Str("stolon_cluster", c.Name).Logger()
	r := &run{s: s, c: c, plan: plan, report: report, log: &log, liftedAt: map[string]bool{},
		res:   &Result{Progress: Progress{Cluster: c.Name, Started: s.clk.Now()}, OldKeeper: plan.MasterKeeper, OldDB: plan.MasterDB},
		probe: &writeProbe{c: c, clk: s.clk}}
	pctx, stopProbe := context.WithCancel(ctx)
	var probing sync.WaitGroup
	probing.Go(func() { r.probe.run(pctx) })

	err = r.do(ctx)

	stopProbe()
	probing.Wait()
	r.finish(ctx)
	if err != nil {
		var fe *FailoverError
		var refused *RefusedError
		if !errors.As(err, &fe) && !errors.As(err, &refused) {
			err = &FailoverError{Result: r.res, Err: err}
		}
		if errors.As(err, &fe) {
			fe.Result = r.res
		}
		return r.res, err
	}
	return r.res, nil
}

// failed builds the error of a step that failed.
func (r *run) failed(step string, err error, hint string) error {
	r.step(step, err.Error(), true)
	return &FailoverError{Err: err, Hint: hint}
}

func (r *run) do(ctx context.Context) error {
	c := r.c
	r.waiting("re-reading the cluster (consistent read)")
	st, err := c.Read(ctx, true)
	if err != nil {
		return err
	}
	if err := r.unchanged(st); err != nil {
		return err
	}
	r.step("checked", "nothing changed since the preview", false)

	r.waiting("connecting to the master and the standbys")
	if r.master, err = c.connectDB(ctx, st.Data.MasterDB()); err != nil {
		return r.failed("connect", err, "Nothing was changed.")
	}
	if r.standbys, err = c.standbyConns(ctx, st, r.plan); err != nil {
		return r.failed("connect", err, "Nothing was changed.")
	}

	r.waiting("fencing the master")
	lsn, err := r.fenceMaster(ctx, st)
	if err != nil {
		return err
	}

	r.waiting("waiting for the standbys to replay " + lsn)
	if err := r.catchUp(ctx, lsn); err != nil {
		return err
	}

	r.waiting("setting forceFail on " + r.plan.MasterKeeper)
	deadline := r.now().Add(c.FailoverTimeout)
	idx, err := r.setForceFail(ctx)
	if err != nil {
		return err
	}

	r.waiting("waiting for the sentinel to elect a new master")
	st, err = r.waitElected(ctx, idx, deadline)
	if err != nil {
		return err
	}
	newDB := st.Data.MasterDB()
	r.res.NewKeeper, r.res.NewDB = newDB.Spec.KeeperUID, newDB.UID

	r.waiting("waiting for " + r.res.NewKeeper + " to be promoted")
	if err := r.waitPromoted(ctx, newDB, deadline); err != nil {
		return err
	}

	r.waiting("waiting for the proxies to follow " + r.res.NewKeeper)
	if st, err = r.waitProxies(ctx, st, deadline); err != nil {
		return err
	}

	r.waiting("waiting for writes through the proxy")
	r.waitWritable(ctx, st.Data.MasterDB(), deadline)
	r.postCheck(ctx, st)

	r.waiting("waiting for " + r.plan.MasterKeeper + " to come back as a standby")
	r.waitRejoined(ctx, st)
	return nil
}

// unchanged compares the cluster now with the preview.
func (r *run) unchanged(st *State) error {
	now, _ := r.c.planFrom(st)
	if !now.Ready() {
		return &RefusedError{Plan: now}
	}
	var changes []string
	if now.MasterDB != r.plan.MasterDB {
		changes = append(changes, fmt.Sprintf("the master is %s (db %s), it was %s (db %s)", now.MasterKeeper, now.MasterDB, r.plan.MasterKeeper, r.plan.MasterDB))
	}
	if a, b := dbUIDs(now.Eligible), dbUIDs(r.plan.Eligible); !slices.Equal(a, b) {
		changes = append(changes, fmt.Sprintf("the standbys Stolon may elect are %s, they were %s", strings.Join(a, ", "), strings.Join(b, ", ")))
	}
	if len(changes) > 0 {
		return fmt.Errorf("%s: %s", strings.Join(changes, "; "), errChanged)
	}
	return nil
}

func dbUIDs(cs []Candidate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.DB.UID
	}
	slices.Sort(out)
	return out
}

// fenceMaster records, then sets, the fence.
func (r *run) fenceMaster(ctx context.Context, st *State) (string, error) {
	dbs, err := fenceable(ctx, r.master)
	if err != nil {
		return "", r.failed("fence", fmt.Errorf("list the master's databases: %w", err), "Nothing was changed.")
	}
	var ours []string
	for db, readOnly := range dbs {
		if !readOnly {
			ours = append(ours, db)
		}
	}
	slices.Sort(ours)
	f := &Fence{Cluster: r.c.Name, Keeper: r.plan.MasterKeeper, DB: r.plan.MasterDB, Address: r.plan.MasterAddr, Databases: ours, At: r.now()}
	if err := saveFence(ctx, r.s.fences, f); err != nil {
		return "", r.failed("fence", fmt.Errorf("record the fence before setting it: %w", err), "Nothing was changed.")
	}
	r.fence = f
	ended, lsn, err := fence(ctx, r.master, ours)
	if err != nil {
		return "", r.failed("fence", err, "The fence was lifted: the master takes writes.")
	}
	r.step("fenced", fmt.Sprintf("%s refuses writes: %d database(s) read-only, %d session(s) ended; its WAL ends at %s", r.plan.MasterKeeper, len(ours), ended, lsn), false)
	return lsn, nil
}

// catchUp waits for every standby Stolon may elect to replay lsn.
func (r *run) catchUp(ctx context.Context, lsn string) error {
	deadline := r.now().Add(r.c.CatchUpTimeout)
	behind := map[string]Replay{}
	for {
		for uid, conn := range r.standbys {
			rep, err := replayOf(ctx, conn, lsn)
			if err != nil {
				return r.failed("catch-up", fmt.Errorf("read the replay of db %s: %w", uid, err), "The fence was lifted: the master takes writes; nothing else changed.")
			}
			if rep.Behind <= 0 {
				delete(behind, uid)
				continue
			}
			behind[uid] = rep
		}
		if len(r.standbys) > 0 && len(behind) == 0 && r.caughtUpAll(ctx, lsn) {
			r.step("caught up", fmt.Sprintf("%s replayed everything the master wrote (up to %s)", strings.Join(r.keepersOf(r.standbys), ", "), lsn), false)
			return nil
		}
		if r.now().After(deadline) {
			var lagging []string
			for uid, rep := range behind {
				lagging = append(lagging, fmt.Sprintf("db %s %d bytes behind%s", uid, rep.Behind, map[bool]string{true: " (replay paused)"}[rep.Paused]))
			}
			slices.Sort(lagging)
			return r.failed("catch-up", fmt.Errorf("the standbys did not replay the master's last writes within %s: %s", r.c.CatchUpTimeout, strings.Join(lagging, ", ")),
				"The fence was lifted: the master takes writes; nothing else changed. Look at the standbys' replication (pg_stat_wal_receiver, replay paused?).")
		}
		if err := ctxutil.Sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
}

// caughtUpAll: every standby was seen caught up (a map emptied in one
// pass may hide one that was never asked after an error).
func (r *run) caughtUpAll(ctx context.Context, lsn string) bool {
	for _, conn := range r.standbys {
		if rep, err := replayOf(ctx, conn, lsn); err != nil || rep.Behind > 0 {
			return false
		}
	}
	return true
}

func (r *run) keepersOf(conns map[string]*pgx.Conn) []string {
	var out []string
	for _, cand := range r.plan.Eligible {
		if _, ok := conns[cand.DB.UID]; ok {
			out = append(out, cand.DB.Spec.KeeperUID)
		}
	}
	return out
}

// setForceFail sets forceFail on the master's keeper with check-and-set,
// keeping the key's flags, re-reading on conflict. It returns the KV
// index of its write.
func (r *run) setForceFail(ctx context.Context) (uint64, error) {
	key := r.c.ClusterDataKey()
	const hint = "The fence was lifted: the master takes writes; nothing else changed."
	for attempt := 1; attempt <= casAttempts; attempt++ {
		st, err := r.c.Read(ctx, true)
		if err != nil {
			return 0, r.failed("forceFail", err, hint)
		}
		if st.Data.Cluster.Status.Master != r.plan.MasterDB {
			return 0, r.failed("forceFail", fmt.Errorf("the master changed to db %s before forceFail was set: %w", st.Data.Cluster.Status.Master, errChanged), hint)
		}
		value, err := setForceFail(st.Entry.Value, r.plan.MasterKeeper)
		if err != nil {
			return 0, r.failed("forceFail", err, hint)
		}
		ok, err := r.c.KV.cas(ctx, key, value, st.Entry.Flags, st.Entry.ModifyIndex)
		if err != nil {
			return 0, r.failed("forceFail", err, hint)
		}
		if ok {
			detail := "on keeper " + r.plan.MasterKeeper
			if attempt > 1 {
				detail += fmt.Sprintf(" (attempt %d: the key had changed)", attempt)
			}
			r.step("forceFail set", detail, false)
			return st.Entry.ModifyIndex, nil
		}
		r.log.Debug().Int("attempt", attempt).Msg("clusterdata changed under the check-and-set; re-reading")
	}
	return 0, r.failed("forceFail", fmt.Errorf("%s changed under each of %d check-and-set attempts", key, casAttempts), hint)
}

// waitElected blocks on the keys until the master changes. If the
// sentinel clears forceFail and keeps the master, or nothing happens by
// the deadline, forceFail is cleared (if still set) and it fails.
func (r *run) waitElected(ctx context.Context, index uint64, deadline time.Time) (*State, error) {
	for {
		wait := deadline.Sub(r.now())
		if wait <= 0 {
			cleared := r.clearForceFail(ctx)
			return nil, r.failed("election", fmt.Errorf("no sentinel acted on forceFail within %s%s", r.c.FailoverTimeout, cleared),
				"The fence was lifted: the master takes writes. Look at the leading sentinel (stolonctl status, its log).")
		}
		st, err := r.c.Wait(ctx, index, min(wait, 10*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.log.Warn().Err(err).Msg("Reading the cluster while waiting for the election")
			if err := ctxutil.Sleep(ctx, time.Second); err != nil {
				return nil, err
			}
			continue
		}
		index = max(st.Index, 1)
		if st.Data.Cluster.Status.Master != r.plan.MasterDB {
			db := st.Data.MasterDB()
			if db == nil {
				continue // the sentinel names a db it has not written yet
			}
			r.step("elected", fmt.Sprintf("the sentinel elected %s (db %s)", db.Spec.KeeperUID, db.UID), false)
			return st, nil
		}
		if k := st.Data.Keepers[r.plan.MasterKeeper]; k != nil && !k.Status.ForceFail {
			return nil, r.failed("election", fmt.Errorf("the sentinel cleared forceFail and kept %s as master", r.plan.MasterKeeper),
				"The fence was lifted: the master takes writes. The sentinel found no standby to elect at that moment: its log says why (\"no eligible masters\").")
		}
	}
}

// clearForceFail undoes forceFail after a timeout, so that a late
// sentinel does not fail the master over once the fence is lifted.
func (r *run) clearForceFail(ctx context.Context) string {
	for attempt := 0; attempt < casAttempts; attempt++ {
		st, err := r.c.Read(ctx, true)
		if err != nil {
			return "; clearing forceFail failed: " + err.Error()
		}
		k := st.Data.Keepers[r.plan.MasterKeeper]
		if k == nil || !k.Status.ForceFail {
			return ""
		}
		value, err := setKeeperStatus(st.Entry.Value, r.plan.MasterKeeper, "forceFail", false)
		if err != nil {
			return "; clearing forceFail failed: " + err.Error()
		}
		if ok, err := r.c.KV.cas(ctx, r.c.ClusterDataKey(), value, st.Entry.Flags, st.Entry.ModifyIndex); err != nil {
			return "; clearing forceFail failed: " + err.Error()
		} else if ok {
			return "; Vigie cleared forceFail"
		}
	}
	return "; clearing forceFail failed: the key kept changing"
}

// waitPromoted polls the new master until it leaves recovery, then lifts
// the fence it replayed.
func (r *run) waitPromoted(ctx context.Context, db *DB, deadline time.Time) error {
	conn := r.standbys[db.UID]
	if conn == nil {
		var err error
		if conn, err = r.c.connectDB(ctx, db); err != nil {
			return r.failed("promotion", fmt.Errorf("the sentinel elected %s, which Vigie cannot reach: %w", db.Spec.KeeperUID, err),
				"It had not been checked: Stolon elected a standby outside the preview. The fence on the old master was lifted.")
		}
		r.standbys[db.UID] = conn
	}
	r.newConn = conn
	for {
		var inRecovery bool
		err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		if err == nil && !inRecovery {
			break
		}
		if r.now().After(deadline) {
			return r.failed("promotion", fmt.Errorf("%s was elected but still in recovery after %s%s", db.Spec.KeeperUID, r.c.FailoverTimeout, errText(err)),
				"Look at keeper "+db.Spec.KeeperUID+"'s log.")
		}
		if err := ctxutil.Sleep(ctx, pollInterval); err != nil {
			return err
		}
	}
	tl, err := timelineOf(ctx, conn)
	if err != nil {
		r.warn("the new master's timeline is unreadable: " + err.Error())
	}
	r.res.Timeline = tl
	n, err := lift(ctx, conn, r.fence.Databases)
	if err != nil {
		r.warn(fmt.Sprintf("lifting the replayed fence on %s failed: %v", db.Spec.KeeperUID, err))
		r.step("promoted", fmt.Sprintf("%s takes writes on timeline %d", db.Spec.KeeperUID, tl), false)
		return nil
	}
	r.liftedAt["new"] = true
	r.step("promoted", fmt.Sprintf("%s takes writes on timeline %d (the fence it replayed lifted from %d database(s))", db.Spec.KeeperUID, tl, n), false)
	return nil
}

func (r *run) warn(s string) {
	r.mu.Lock()
	r.res.Warnings = append(r.res.Warnings, s)
	r.mu.Unlock()
	r.log.Warn().Msg(s)
}

// waitProxies blocks on the keys until the proxy spec names the new
// master and every proxy alive has applied it.
func (r *run) waitProxies(ctx context.Context, st *State, deadline time.Time) (*State, error) {
	for {
		var behind []string
		for _, uid := range sortedKeys(st.Proxies) {
			if !st.ProxyFollows(uid) {
				behind = append(behind, uid)
			}
		}
		follows := st.Data.Proxy.Spec.MasterDBUID == r.res.NewDB && len(behind) == 0
		if follows {
			n := len(st.Proxies)
			if n == 0 {
				r.warn("no stolon-proxy is alive: clients cannot reach the new master through a proxy")
			}
			r.step("proxies follow", fmt.Sprintf("%d proxy(ies) route to %s (proxy generation %d)", n, r.res.NewKeeper, st.Data.Proxy.Generation), false)
			return st, nil
		}
		wait := deadline.Sub(r.now())
		if wait <= 0 {
			return st, r.failed("proxies", fmt.Errorf("proxies not following %s after %s: %s", r.res.NewKeeper, r.c.FailoverTimeout, strings.Join(behind, ", ")),
				"The failover itself happened; look at the stolon-proxy logs.")
		}
		next, err := r.c.Wait(ctx, max(st.Index, 1), min(wait, 10*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			r.log.Warn().Err(err).Msg("Reading the cluster while waiting for the proxies")
			if err := ctxutil.Sleep(ctx, time.Second); err != nil {
				return st, err
			}
			continue
		}
		st = next
	}
}

// waitWritable waits for the probe to write through the proxy on the
// new master.
func (r *run) waitWritable(ctx context.Context, master *DB, deadline time.Time) {
	for {
		rep := r.probe.report()
		if rep.Last.Writable && sameServer(master, rep.Last.Addr, rep.Last.Port) {
			r.step("writes", "a client writes through the proxy again", false)
			return
		}
		if r.now().After(deadline) {
			last := rep.Last.Err
			if last == "" {
				last = fmt.Sprintf("the proxy reaches %s:%d, writable: %t", rep.Last.Addr, rep.Last.Port, rep.Last.Writable)
			}
			r.step("writes", "no write through the proxy reached "+r.res.NewKeeper+" within "+r.c.FailoverTimeout.String()+": "+last, true)
			return
		}
		if ctxutil.Sleep(ctx, pollInterval) != nil {
			return
		}
	}
}

// postCheck connects through the proxy afresh: the server must be the new
// master, out of recovery.
func (r *run) postCheck(ctx context.Context, st *State) {
	err := func() error {
		conn, err := r.c.connect(ctx, r.c.Postgres)
		if err != nil {
			return fmt.Errorf("the proxy at %s:%d is unreachable: %w", r.c.Postgres.Host, r.c.Postgres.Port, err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var inRecovery bool
		var addr string
		var port int
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), coalesce(host(inet_server_addr()), ''), coalesce(inet_server_port(), 0)").Scan(&inRecovery, &addr, &port); err != nil {
			return err
		}
		master := st.Data.MasterDB()
		switch {
		case inRecovery:
			return fmt.Errorf("the proxy reaches %s:%d, which is in recovery", addr, port)
		case !sameServer(master, addr, port):
			return fmt.Errorf("the proxy reaches %s:%d, not the new master %s (%s)", addr, port, r.res.NewKeeper, master.Address())
		}
		return nil
	}()
	r.res.PostCheck = err
	if err != nil {
		r.step("post-check", err.Error(), true)
		return
	}
	var following []string
	for _, uid := range sortedKeys(st.Data.DBs) {
		db := st.Data.DBs[uid]
		if db.Spec.Role == "standby" && db.Spec.FollowConfig != nil && db.Spec.FollowConfig.DBUID == r.res.NewDB {
			following = append(following, db.Spec.KeeperUID)
		}
	}
	detail := "through the proxy: " + r.res.NewKeeper + ", out of recovery"
	if len(following) > 0 {
		detail += "; following it: " + strings.Join(following, ", ")
	}
	r.step("post-check", detail, false)
}

// waitRejoined blocks on the keys until the old master's keeper runs a
// healthy standby of the new master (after a resync, minutes).
func (r *run) waitRejoined(ctx context.Context, st *State) {
	deadline := r.now().Add(r.c.RejoinTimeout)
	for {
		if db := st.Data.DBOf(r.plan.MasterKeeper); db != nil && db.Spec.Role == "standby" && db.Status.Healthy && db.Converged() &&
			db.Spec.FollowConfig != nil && db.Spec.FollowConfig.DBUID == r.res.NewDB {
			r.res.Rejoined = true
			r.step("rejoined", fmt.Sprintf("%s is a standby of %s again (db %s)", r.plan.MasterKeeper, r.res.NewKeeper, db.UID), false)
			return
		}
		wait := deadline.Sub(r.now())
		if wait <= 0 {
			r.step("rejoined", fmt.Sprintf("%s is not back as a standby after %s: look at its keeper's log (a resync runs pg_basebackup)", r.plan.MasterKeeper, r.c.RejoinTimeout), true)
			return
		}
		next, err := r.c.Wait(ctx, max(st.Index, 1), min(wait, 10*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if ctxutil.Sleep(ctx, time.Second) != nil {
				return
			}
			continue
		}
		st = next
	}
}

// finish closes the sessions, takes the probe's figures, and lifts what
// is left of the fence: on the old master, unless it is a standby now
// (its data then comes from the new master). A fence it cannot lift stays
// recorded, for Recover and the alert.
func (r *run) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	rep := r.probe.report()
	r.res.Probes, r.res.ProbeFailures, r.res.Outages = rep.Probes, rep.Failures, rep.Outages
	if !rep.DownSince.IsZero() {
		r.res.Outages = append(r.res.Outages, Outage{From: rep.DownSince, To: rep.Last.At})
		r.warn("writes through the proxy still fail at the end")
	}
	if r.fence != nil {
		r.liftOld(ctx)
		if r.liftedAt["old"] && (r.liftedAt["new"] || r.res.NewDB == "") {
			if err := r.s.fences.DeleteValue(ctx, fenceKey(r.c.Name)); err != nil {
				r.warn("the lifted fence is still recorded: " + err.Error())
			}
		} else {
			r.res.FenceLeft = r.fence
		}
	}
	for _, conn := range append([]*pgx.Conn{r.master}, mapValues(r.standbys)...) {
		if conn != nil {
			conn.Close(ctx)
		}
	}
	r.mu.Lock()
	r.res.Waiting = ""
	r.mu.Unlock()
}

// liftOld lifts the fence on the old master, reconnecting if its session
// was ended; a standby (resynced or rewound from the new master) has no
// fence of its own left.
func (r *run) liftOld(ctx context.Context) {
	conn := r.master
	if conn == nil || conn.IsClosed() {
		srv := r.c.Postgres
		var err error
		if srv, err = addressed(srv, r.fence.Address); err == nil {
			conn, err = r.c.connect(ctx, srv)
		}
		if err != nil {
			if r.res.Rejoined {
				r.liftedAt["old"] = true // its data came from the new master
				return
			}
			r.warn(fmt.Sprintf("the fence on %s could not be lifted: %v", r.plan.MasterKeeper, err))
			return
		}
		defer conn.Close(ctx)
	}
	n, err := lift(ctx, conn, r.fence.Databases)
	switch {
	case errors.Is(err, errInRecovery):
		r.liftedAt["old"] = true
	case err != nil:
		if r.res.Rejoined {
			r.liftedAt["old"] = true
			return
		}
		r.warn(fmt.Sprintf("the fence on %s could not be lifted: %v", r.plan.MasterKeeper, err))
	default:
		r.liftedAt["old"] = true
		if n > 0 && r.res.NewDB == "" {
			r.step("unfenced", fmt.Sprintf("%s takes writes again (%d database(s))", r.plan.MasterKeeper, n), false)
		}
	}
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
