package stolon

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/vigie/vigie/render"
)

// Check is one preflight check and what it found.
type Check struct {
	OK   bool
	Text string
}

// Plan is a failover's preflight: what Vigie checked, and whom Stolon
// would elect.
type Plan struct {
	Cluster      string
	MasterKeeper string
	MasterDB     string
	MasterAddr   string
	Leader       string      // the leading sentinel
	Eligible     []Candidate // the standbys Stolon may elect, the one it elects first
	Others       []Candidate // those it would not, with the reason
	Checks       []Check
}

// Elected is the standby Stolon would elect.
func (p *Plan) Elected() *Candidate {
	if len(p.Eligible) == 0 {
		return nil
	}
	return &p.Eligible[0]
}

// Ready: every check passed.
func (p *Plan) Ready() bool {
	for _, c := range p.Checks {
		if !c.OK {
			return false
		}
	}
	return len(p.Checks) > 0
}

func (p *Plan) check(ok bool, format string, args ...any) bool {
	p.Checks = append(p.Checks, Check{OK: ok, Text: fmt.Sprintf(format, args...)})
	return ok
}

// RefusedError is a failover refused by its preflight.
type RefusedError struct{ Plan *Plan }

func (e *RefusedError) Error() string {
	var failed []string
	for _, c := range e.Plan.Checks {
		if !c.OK {
			failed = append(failed, c.Text)
		}
	}
	return "failover of " + e.Plan.Cluster + " refused: " + strings.Join(failed, "; ")
}

// Preflight checks that a failover can lose nothing and will elect a
// standby: the cluster in phase normal, a sentinel leading, the master
// known, healthy and reachable (to fence it), at least one standby that
// Stolon's own rule elects, and each such standby reachable and replaying
// within maxStandbyLag of the master (Stolon only sees the WAL received:
// a paused replay looks current to it). A refusal is a *RefusedError
// holding the plan.
func (c *Cluster) Preflight(ctx context.Context) (*Plan, error) {
	st, err := c.Read(ctx, true)
	if err != nil {
		return nil, err
	}
	plan, master := c.planFrom(st)
	if plan.Ready() {
		c.checkServers(ctx, st, plan, master)
	}
	if !plan.Ready() {
		return plan, &RefusedError{Plan: plan}
	}
	return plan, nil
}

// planFrom checks what the keys show.
func (c *Cluster) planFrom(st *State) (*Plan, *DB) {
	cd := st.Data
	plan := &Plan{Cluster: c.Name, Leader: st.Leader}
	plan.check(cd.Cluster.Status.Phase == "normal", "cluster phase %q", cd.Cluster.Status.Phase)
	plan.check(st.LeaderAlive(), "%s", leaderText(st))
	master := cd.MasterDB()
	if master == nil {
		plan.check(false, "no master known (cluster.status.master %q has no db)", cd.Cluster.Status.Master)
		return plan, nil
	}
	plan.MasterKeeper, plan.MasterDB, plan.MasterAddr = master.Spec.KeeperUID, master.UID, master.Address()
	k := cd.Keepers[master.Spec.KeeperUID]
	healthy := k != nil && k.Status.Healthy && master.Status.Healthy
	plan.check(healthy, "master %s (db %s, %s) %s", plan.MasterKeeper, master.UID, plan.MasterAddr, map[bool]string{true: "healthy", false: "unhealthy: Stolon is already replacing it"}[healthy])
	if k != nil && k.Status.ForceFail {
		plan.check(false, "keeper %s already has forceFail set: a failover is under way", k.UID)
	}
	for _, cand := range st.Candidates() {
		if cand.Reason == "" {
			plan.Eligible = append(plan.Eligible, cand)
		} else {
			plan.Others = append(plan.Others, cand)
		}
	}
	if len(plan.Eligible) == 0 {
		var why []string
		for _, o := range plan.Others {
			why = append(why, fmt.Sprintf("%s: %s", o.DB.Spec.KeeperUID, o.Reason))
		}
		if len(why) == 0 {
			why = append(why, "there is no standby")
		}
		plan.check(false, "no standby Stolon would elect (%s): it would fail the master for nothing and elect it again", strings.Join(why, "; "))
	} else {
		e := plan.Eligible[0]
		plan.check(true, "Stolon would elect %s (db %s), %s behind in WAL received", e.DB.Spec.KeeperUID, e.DB.UID, render.Bytes(int64(e.Lag)))
	}
	return plan, master
}

func leaderText(st *State) string {
	switch {
	case st.LeaderAlive():
		return "sentinel " + st.Leader + " leads"
	case len(st.Sentinels) == 0:
		return "no sentinel alive: nobody would act on forceFail"
	case st.Leader == "":
		return "no sentinel leads"
	}
	return "the sentinel-leader key names " + st.Leader + ", which is not alive: nobody would act on forceFail"
}

// checkServers asks the master and every standby Stolon may elect
// directly: the master must be reachable to be fenced, each standby must
// be replaying, not paused, within maxStandbyLag.
func (c *Cluster) checkServers(ctx context.Context, st *State, plan *Plan, master *DB) {
	mconn, err := c.connectDB(ctx, master)
	if !plan.check(err == nil, "master %s reachable at %s to be fenced%s", plan.MasterKeeper, plan.MasterAddr, errText(err)) {
		return
	}
	defer mconn.Close(context.WithoutCancel(ctx))
	lsn, err := masterPosition(ctx, mconn)
	if !plan.check(err == nil, "master %s writes at %s%s", plan.MasterKeeper, lsn, errText(err)) {
		return
	}
	for _, cand := range plan.Eligible {
		c.checkStandby(ctx, st, plan, cand.DB, lsn)
	}
}

func (c *Cluster) checkStandby(ctx context.Context, st *State, plan *Plan, db *DB, lsn string) {
	who := fmt.Sprintf("standby %s (db %s, %s)", db.Spec.KeeperUID, db.UID, db.Address())
	conn, err := c.connectDB(ctx, db)
	if !plan.check(err == nil, "%s reachable, to wait for its replay%s", who, errText(err)) {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	r, err := replayOf(ctx, conn, lsn)
	switch {
	case err != nil:
		plan.check(false, "%s: replay position unreadable: %v", who, err)
	case !r.InRecovery:
		plan.check(false, "%s is not in recovery: it is no standby", who)
	case r.Paused:
		plan.check(false, "%s has its replay paused, %s behind: resume it (SELECT pg_wal_replay_resume()) first", who, render.Bytes(max(r.Behind, 0)))
	case uint64(max(r.Behind, 0)) > st.Data.Cluster.Spec.MaxLag():
		plan.check(false, "%s has replayed %s less than the master wrote, beyond maxStandbyLag (%s), which Stolon does not see (it counts WAL received)",
			who, render.Bytes(r.Behind), render.Bytes(int64(st.Data.Cluster.Spec.MaxLag())))
	default:
		plan.check(true, "%s replays %s behind the master", who, render.Bytes(max(r.Behind, 0)))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// standbyConns opens a session on each standby the plan may elect.
func (c *Cluster) standbyConns(ctx context.Context, st *State, plan *Plan) (map[string]*pgx.Conn, error) {
	conns := map[string]*pgx.Conn{}
	for _, cand := range plan.Eligible {
		db := st.Data.DBs[cand.DB.UID]
		if db == nil {
			closeAll(ctx, conns)
			return nil, fmt.Errorf("standby db %s is gone: %w", cand.DB.UID, errChanged)
		}
		conn, err := c.connectDB(ctx, db)
		if err != nil {
			closeAll(ctx, conns)
			return nil, err
		}
		conns[db.UID] = conn
	}
	return conns, nil
}

func closeAll(ctx context.Context, conns map[string]*pgx.Conn) {
	for _, conn := range conns {
		conn.Close(context.WithoutCancel(ctx))
	}
}
