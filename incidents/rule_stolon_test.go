package incidents

import (
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// stolonAt is when the test cluster's state is observed.
var stolonAt = time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)

// stolonHealthy is cluster main running well: keeper0 the master, keeper1
// its synchronous standby, keeper2 an asynchronous one, two sentinels and
// two proxies.
func stolonHealthy() *watchers.Stolon {
	return &watchers.Stolon{
		Cluster: "main", Phase: "normal", MasterKeeper: "keeper0", MasterDB: "d51919e0", Timeline: 2,
		Keepers: []watchers.StolonKeeper{
			{UID: "keeper0", Healthy: true, DB: "d51919e0", Role: "master", Address: "10.0.0.10:5432", PGHealthy: true, Timeline: 2},
			{UID: "keeper1", Healthy: true, DB: "0e651c76", Role: "standby", Address: "10.0.0.11:5432", PGHealthy: true, Timeline: 2, Lag: 4096},
			{UID: "keeper2", Healthy: true, DB: "7a1c0b3f", Role: "standby", Address: "10.0.0.12:5432", PGHealthy: true, Timeline: 2},
		},
		SyncWanted: 1, SyncStandbys: []string{"keeper1"},
		Sentinels: []string{"sentinel-a", "sentinel-b"}, Leader: "sentinel-a", LeaderAlive: true,
		Proxies: []watchers.StolonProxy{{UID: "proxy-a"}, {UID: "proxy-b"}},
		MaxLag:  1232896, Grace: 30 * time.Second,
	}
}

// stolonEvent is the healthy cluster altered by mutate (if not nil).
func stolonEvent(mutate func(*watchers.Stolon)) watchers.Event {
	s := stolonHealthy()
	if mutate != nil {
		mutate(s)
	}
	return watchers.Event{Source: "stolon", Topic: watchers.TopicStolon, Type: watchers.StolonState, Time: stolonAt, Stolon: s}
}

// duringFailover is mutate while Vigie fails the cluster over.
func duringFailover(mutate func(*watchers.Stolon)) func(*watchers.Stolon) {
	return func(s *watchers.Stolon) {
		s.Failover = true
		if mutate != nil {
			mutate(s)
		}
	}
}

// keeper alters keeper uid of the cluster.
func keeper(uid string, mutate func(*watchers.StolonKeeper)) func(*watchers.Stolon) {
	return func(s *watchers.Stolon) {
		for i := range s.Keepers {
			if s.Keepers[i].UID == uid {
				mutate(&s.Keepers[i])
				return
			}
		}
		panic("no keeper " + uid)
	}
}

// removeKeeper takes keeper uid out of the cluster, as the event after its
// removal tells it.
func removeKeeper(uid string) func(*watchers.Stolon) {
	return func(s *watchers.Stolon) {
		var kept []watchers.StolonKeeper
		for _, k := range s.Keepers {
			if k.UID != uid {
				kept = append(kept, k)
			}
		}
		s.Keepers, s.GoneKeepers = kept, []string{uid}
	}
}

// stolonSig is a signal about cluster main: key and title without their
// "stolon/main/" and "stolon main: " prefixes.
func stolonSig(rule string, sev Severity, status Status, key, title, reason string) Signal {
	return Signal{Rule: rule, Key: "stolon/main/" + key, Severity: sev, Status: status, Title: "stolon main: " + title, Reason: reason}
}

// held marks the firing signals held for Vigie's failover of main.
func held(sigs ...Signal) []Signal {
	for i := range sigs {
		if sigs[i].Status == Firing {
			sigs[i].Hold = "failover of main by Vigie"
		}
	}
	return sigs
}

type stolonCase struct {
	name   string
	mutate func(*watchers.Stolon)
	want   []Signal // At is not compared
}

// runStolonCases evaluates each case on the altered healthy cluster, and
// checks that the rule ignores other events.
func runStolonCases(t *testing.T, r Rule, cases []stolonCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := stolonEvent(c.mutate)
			got := r.Evaluate(&ev)
			for _, s := range got {
				if !s.At.Equal(stolonAt) {
					t.Errorf("%s: At %v, want the event's time", s.Key, s.At)
				}
			}
			assertSignals(t, got, c.want)
		})
	}
	other := watchers.Event{Source: "nomad", Node: &watchers.Node{ID: "n1", Name: "n1", Status: "down"}}
	if got := r.Evaluate(&other); got != nil {
		t.Errorf("on a Node event: %s", dumpSignals(got))
	}
}

func TestRuleStolonMasterChanged(t *testing.T) {
	r := StolonMasterChanged{Severity: Warning}
	changed := func(s *watchers.Stolon) {
		s.PreviousMasterKeeper, s.PreviousMasterDB = "keeper0", "d51919e0"
		s.MasterKeeper, s.MasterDB, s.Timeline = "keeper1", "0e651c76", 3
	}
	notice := stolonSig("stolon-master-changed", Warning, Notice, "master",
		"master changed from keeper0 (db d51919e0) to keeper1 (db 0e651c76)", "keeper1 (db 0e651c76) is the master now, on timeline 3")
	notice.Occurrence = "master d51919e0 -> 0e651c76"
	unknown := stolonSig("stolon-master-changed", Warning, Notice, "master",
		"master changed from keeper0 (db d51919e0) to none", "none is the master now")
	unknown.Occurrence = "master d51919e0 -> "
	runStolonCases(t, r, []stolonCase{
		{name: "same master", mutate: nil},
		{name: "changed", mutate: changed, want: []Signal{notice}},
		{name: "changed by Vigie's failover", mutate: duringFailover(changed)},
		{
			name: "no master yet, timeline unknown",
			mutate: func(s *watchers.Stolon) {
				changed(s)
				s.MasterKeeper, s.MasterDB, s.Timeline = "", "", 0
			},
			want: []Signal{unknown},
		},
	})
}

func TestRuleStolonKeeperUnhealthy(t *testing.T) {
	r := StolonKeeperUnhealthy{Severity: Critical, StandbySeverity: Warning}
	sig := func(uid string, sev Severity, status Status, reason string) Signal {
		return stolonSig("stolon-keeper-unhealthy", sev, status, "keeper/"+uid, "keeper "+uid+" unhealthy", reason)
	}
	healthy := func(uid string, sev Severity) Signal { return sig(uid, sev, Resolved, "keeper "+uid+" healthy again") }
	unhealthy := func(k *watchers.StolonKeeper) { k.Healthy = false }
	masterDown := sig("keeper0", Critical, Firing, "the sentinel judges keeper keeper0 unhealthy (master db d51919e0 at 10.0.0.10:5432)")
	runStolonCases(t, r, []stolonCase{
		{name: "all healthy", want: []Signal{healthy("keeper0", Critical), healthy("keeper1", Warning), healthy("keeper2", Warning)}},
		{
			name: "the master's keeper", mutate: keeper("keeper0", unhealthy),
			want: []Signal{masterDown, healthy("keeper1", Warning), healthy("keeper2", Warning)},
		},
		{
			name: "a standby's keeper", mutate: keeper("keeper2", unhealthy),
			want: []Signal{
				healthy("keeper0", Critical), healthy("keeper1", Warning),
				sig("keeper2", Warning, Firing, "the sentinel judges keeper keeper2 unhealthy (standby db 7a1c0b3f at 10.0.0.12:5432)"),
			},
		},
		{
			name: "a keeper without a database", mutate: keeper("keeper2", func(k *watchers.StolonKeeper) { k.Healthy, k.DB, k.Role = false, "", "" }),
			want: []Signal{
				healthy("keeper0", Critical), healthy("keeper1", Warning),
				sig("keeper2", Warning, Firing, "the sentinel judges keeper keeper2 unhealthy (no database)"),
			},
		},
		{
			name: "during Vigie's failover", mutate: duringFailover(keeper("keeper0", unhealthy)),
			want: held(masterDown, healthy("keeper1", Warning), healthy("keeper2", Warning)),
		},
		{
			name: "removed", mutate: removeKeeper("keeper2"),
			want: []Signal{healthy("keeper0", Critical), healthy("keeper1", Warning), sig("keeper2", Warning, Resolved, "keeper keeper2 removed from the cluster")},
		},
	})
}

func TestRuleStolonPostgresUnhealthy(t *testing.T) {
	r := StolonPostgresUnhealthy{Severity: Critical, StandbySeverity: Warning}
	sig := func(uid string, sev Severity, status Status, reason string) Signal {
		return stolonSig("stolon-postgres-unhealthy", sev, status, "postgres/"+uid, "PostgreSQL of keeper "+uid+" unhealthy", reason)
	}
	healthy := func(uid string, sev Severity) Signal {
		return sig(uid, sev, Resolved, "PostgreSQL of keeper "+uid+" healthy again")
	}
	pgDown := func(k *watchers.StolonKeeper) { k.PGHealthy = false }
	masterPG := sig("keeper0", Critical, Firing, "keeper keeper0 is healthy but its PostgreSQL (master db d51919e0 at 10.0.0.10:5432) is not")
	runStolonCases(t, r, []stolonCase{
		{name: "all healthy", want: []Signal{healthy("keeper0", Critical), healthy("keeper1", Warning), healthy("keeper2", Warning)}},
		{name: "the master's", mutate: keeper("keeper0", pgDown), want: []Signal{masterPG, healthy("keeper1", Warning), healthy("keeper2", Warning)}},
		{
			name: "a standby's", mutate: keeper("keeper1", pgDown),
			want: []Signal{
				healthy("keeper0", Critical),
				sig("keeper1", Warning, Firing, "keeper keeper1 is healthy but its PostgreSQL (standby db 0e651c76 at 10.0.0.11:5432) is not"),
				healthy("keeper2", Warning),
			},
		},
		{
			name:   "its keeper unhealthy: the keeper rule tells it",
			mutate: keeper("keeper0", func(k *watchers.StolonKeeper) { k.Healthy, k.PGHealthy = false, false }),
			want: []Signal{
				sig("keeper0", Critical, Resolved, "keeper keeper0 itself is unhealthy"), healthy("keeper1", Warning), healthy("keeper2", Warning),
			},
		},
		{
			name: "a keeper without a database", mutate: keeper("keeper2", func(k *watchers.StolonKeeper) { k.DB, k.Role, k.PGHealthy = "", "", false }),
			want: []Signal{healthy("keeper0", Critical), healthy("keeper1", Warning), sig("keeper2", Warning, Resolved, "keeper keeper2 has no database")},
		},
		{
			name: "during Vigie's failover", mutate: duringFailover(keeper("keeper0", pgDown)),
			want: held(masterPG, healthy("keeper1", Warning), healthy("keeper2", Warning)),
		},
		{
			name: "removed", mutate: removeKeeper("keeper1"),
			want: []Signal{healthy("keeper0", Critical), healthy("keeper2", Warning), sig("keeper1", Warning, Resolved, "keeper keeper1 removed from the cluster")},
		},
	})
}

func TestRuleStolonStandbyLag(t *testing.T) {
	r := StolonStandbyLag{Severity: Warning}
	sig := func(uid string, status Status, reason string) Signal {
		return stolonSig("stolon-standby-lag", Warning, status, "lag/"+uid, "standby "+uid+" lagging", reason)
	}
	master := sig("keeper0", Resolved, "keeper keeper0 is not a standby: master db d51919e0 at 10.0.0.10:5432")
	keeper1 := sig("keeper1", Resolved, "within max_lag again: 4096 bytes (4.00 KiB) behind")
	lagging := func(since time.Duration) func(*watchers.Stolon) {
		return keeper("keeper2", func(k *watchers.StolonKeeper) { k.Lag, k.LagSince = 5<<20, stolonAt.Add(-since) })
	}
	behind := sig("keeper2", Firing, "received WAL 5242880 bytes (5.00 MiB) behind the master for more than 30s, max_lag 1232896 bytes (1.18 MiB)")
	runStolonCases(t, r, []stolonCase{
		{name: "within max_lag", want: []Signal{master, keeper1, sig("keeper2", Resolved, "within max_lag again: 0 bytes behind")}},
		{name: "beyond max_lag for the grace period", mutate: lagging(30 * time.Second), want: []Signal{master, keeper1, behind}},
		{name: "beyond max_lag within the grace period", mutate: lagging(29 * time.Second), want: []Signal{master, keeper1}},
		{name: "during Vigie's failover", mutate: duringFailover(lagging(time.Minute)), want: held(master, keeper1, behind)},
		{
			name: "promoted", mutate: keeper("keeper2", func(k *watchers.StolonKeeper) { k.Role = "master" }),
			want: []Signal{master, keeper1, sig("keeper2", Resolved, "keeper keeper2 is not a standby: master db 7a1c0b3f at 10.0.0.12:5432")},
		},
		{
			name: "removed", mutate: removeKeeper("keeper2"),
			want: []Signal{master, keeper1, sig("keeper2", Resolved, "keeper keeper2 removed from the cluster")},
		},
	})
}

func TestRuleStolonSyncStandbys(t *testing.T) {
	r := StolonSyncStandbys{Severity: Warning}
	sig := func(status Status, reason string) []Signal {
		return []Signal{stolonSig("stolon-sync-standbys", Warning, status, "sync", "synchronous standbys missing", reason)}
	}
	none := func(s *watchers.Stolon) { s.SyncStandbys = nil }
	runStolonCases(t, r, []stolonCase{
		{name: "enough", want: sig(Resolved, "1 synchronous standby wanted, 1 reported: keeper1")},
		{name: "none reported", mutate: none, want: sig(Firing, "1 synchronous standby wanted, 0 reported")},
		{name: "one of two", mutate: func(s *watchers.Stolon) { s.SyncWanted = 2 }, want: sig(Firing, "2 synchronous standbys wanted, 1 reported: keeper1")},
		{name: "asynchronous replication", mutate: func(s *watchers.Stolon) { s.SyncWanted, s.SyncStandbys = 0, nil }, want: sig(Resolved, "synchronous replication off")},
		{name: "during Vigie's failover", mutate: duringFailover(none), want: held(sig(Firing, "1 synchronous standby wanted, 0 reported")...)},
	})
}

func TestRuleStolonNoSentinelLeader(t *testing.T) {
	r := StolonNoSentinelLeader{Severity: Critical}
	sig := func(status Status, reason string) []Signal {
		return []Signal{stolonSig("stolon-no-sentinel-leader", Critical, status, "sentinel-leader", "no sentinel leader", reason)}
	}
	const noElection = "; no master would be elected if the master failed"
	leaderless := func(sentinels []string, leader string) func(*watchers.Stolon) {
		return func(s *watchers.Stolon) { s.Sentinels, s.Leader, s.LeaderAlive = sentinels, leader, false }
	}
	runStolonCases(t, r, []stolonCase{
		{name: "a live leader", want: sig(Resolved, "sentinel sentinel-a leads")},
		{
			name: "no sentinel alive, the key left", mutate: leaderless(nil, "sentinel-a"),
			want: sig(Firing, "the sentinel-leader key still names sentinel-a but no sentinel is alive"+noElection),
		},
		{name: "no sentinel alive, no key", mutate: leaderless(nil, ""), want: sig(Firing, "no sentinel is alive"+noElection)},
		{
			name: "the key names a dead sentinel", mutate: leaderless([]string{"sentinel-b"}, "sentinel-a"),
			want: sig(Firing, "the sentinel-leader key names sentinel-a, which is not alive (1 alive: sentinel-b)"+noElection),
		},
		{
			name: "the key is not held", mutate: leaderless([]string{"sentinel-a", "sentinel-b"}, "sentinel-a"),
			want: sig(Firing, "the sentinel-leader key names sentinel-a, but no session holds it (2 alive: sentinel-a, sentinel-b)"+noElection),
		},
		{
			name: "no leader key", mutate: leaderless([]string{"sentinel-a", "sentinel-b"}, ""),
			want: sig(Firing, "no sentinel holds the sentinel-leader key (2 alive: sentinel-a, sentinel-b)"+noElection),
		},
		{
			name: "during Vigie's failover", mutate: duringFailover(leaderless(nil, "")),
			want: held(sig(Firing, "no sentinel is alive"+noElection)...),
		},
	})
}

func TestRuleStolonProxyBehind(t *testing.T) {
	r := StolonProxyBehind{Severity: Warning, NoProxySeverity: Critical}
	sig := func(uid string, status Status, reason string) Signal {
		return stolonSig("stolon-proxy-behind", Warning, status, "proxy/"+uid, "proxy "+uid+" not routing to the master", reason)
	}
	follows := func(uid string) Signal { return sig(uid, Resolved, "proxy "+uid+" routes to the master again") }
	proxies := func(status Status, reason string) Signal {
		return stolonSig("stolon-proxy-behind", Critical, status, "proxies", "no stolon-proxy alive", reason)
	}
	alive := proxies(Resolved, "stolon-proxies alive: proxy-a, proxy-b")
	behindFor := func(d time.Duration) func(*watchers.Stolon) {
		return func(s *watchers.Stolon) { s.Proxies[1].BehindSince = stolonAt.Add(-d) }
	}
	behind := sig("proxy-b", Firing, "proxy proxy-b has not routed to the master, keeper0 (db d51919e0), for more than 30s")
	noneFor := func(d time.Duration) func(*watchers.Stolon) {
		return func(s *watchers.Stolon) {
			s.Proxies, s.GoneProxies, s.NoProxySince = nil, []string{"proxy-a", "proxy-b"}, stolonAt.Add(-d)
		}
	}
	gone := []Signal{sig("proxy-a", Resolved, "proxy proxy-a gone"), sig("proxy-b", Resolved, "proxy proxy-b gone")}
	noProxy := proxies(Firing, "no stolon-proxy alive for more than 30s, clients cannot reach the master")
	runStolonCases(t, r, []stolonCase{
		{name: "following", want: []Signal{follows("proxy-a"), follows("proxy-b"), alive}},
		{name: "behind for the grace period", mutate: behindFor(time.Minute), want: []Signal{follows("proxy-a"), behind, alive}},
		{name: "behind within the grace period", mutate: behindFor(10 * time.Second), want: []Signal{follows("proxy-a"), alive}},
		{name: "behind during Vigie's failover", mutate: duringFailover(behindFor(time.Minute)), want: held(follows("proxy-a"), behind, alive)},
		{name: "all gone, within the grace period", mutate: noneFor(10 * time.Second), want: gone},
		{name: "none for the grace period", mutate: noneFor(30 * time.Second), want: append(gone, noProxy)},
		{name: "none during Vigie's failover", mutate: duringFailover(noneFor(time.Minute)), want: held(append(gone, noProxy)...)},
	})
}

func TestRuleStolonPhase(t *testing.T) {
	r := StolonPhase{Severity: Warning}
	sig := func(status Status, reason string) []Signal {
		return []Signal{stolonSig("stolon-phase", Warning, status, "phase", "cluster not in its normal phase", reason)}
	}
	phase := func(p string) func(*watchers.Stolon) { return func(s *watchers.Stolon) { s.Phase = p } }
	runStolonCases(t, r, []stolonCase{
		{name: "normal", want: sig(Resolved, "cluster phase normal")},
		{name: "initializing", mutate: phase("initializing"), want: sig(Firing, "cluster phase initializing")},
		{name: "unknown", mutate: phase(""), want: sig(Firing, "cluster phase unknown")},
		{name: "during Vigie's failover", mutate: duringFailover(phase("initializing")), want: held(sig(Firing, "cluster phase initializing")...)},
	})
}

func TestRuleStolonFenceLeft(t *testing.T) {
	r := StolonFenceLeft{Severity: Critical}
	sig := func(status Status, reason string) []Signal {
		return []Signal{stolonSig("stolon-fence-left", Critical, status, "fence", "fence left by Vigie", reason)}
	}
	const fence = "keeper0 (10.0.0.10) still rejects connections: Vigie fenced it at 14:58 UTC and could not reach it since"
	left := func(s *watchers.Stolon) { s.FenceLeft = fence }
	runStolonCases(t, r, []stolonCase{
		{name: "none", want: sig(Resolved, "the fence is lifted")},
		{name: "left", mutate: left, want: sig(Firing, fence)},
		// About a failover itself: never held.
		{name: "during Vigie's failover", mutate: duringFailover(left), want: sig(Firing, fence)},
	})
}

// Cluster names are key segments, escaped.
func TestStolonKeysAreEscaped(t *testing.T) {
	ev := stolonEvent(func(s *watchers.Stolon) { s.Cluster, s.Phase = "pg/main", "initializing" })
	got := StolonPhase{Severity: Warning}.Evaluate(&ev)
	if len(got) != 1 || got[0].Key != "stolon/pg%2Fmain/phase" || got[0].Title != "stolon pg/main: cluster not in its normal phase" {
		t.Fatalf("signals %s", dumpSignals(got))
	}
}

func TestStolonBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0:         "0 bytes",
		1023:      "1023 bytes",
		1024:      "1024 bytes (1.00 KiB)",
		1232896:   "1232896 bytes (1.18 MiB)",
		5 << 30:   "5368709120 bytes (5.00 GiB)",
		1<<63 + 1: "9223372036854775809 bytes (8192 PiB)",
	} {
		if got := stolonBytes(n); got != want {
			t.Errorf("stolonBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// What a cluster shows while Vigie fails it over is held; once an event
// shows the failover over, what still fails is posted, what recovered
// meanwhile (or in that very event) never is.
func TestStolonFailoverHoldsItsIncidents(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	keeper0Down := keeper("keeper0", func(k *watchers.StolonKeeper) { k.Healthy = false })
	at := func(mutate func(*watchers.Stolon)) watchers.Event {
		ev := stolonEvent(mutate)
		ev.Time = f.clock.Now()
		return ev
	}
	f.consume(at(nil))
	f.consume(at(duringFailover(keeper0Down)))
	if roots, _, _ := f.messages("!ops"); len(roots) != 0 {
		t.Fatalf("posted during the failover: %v", roots)
	}
	if in := f.incident("stolon/main/keeper/keeper0"); in.State != store.IncidentHeld || in.HoldReason != "failover of main by Vigie" {
		t.Fatalf("during the failover: %+v", in)
	}
	f.clock.Advance(time.Minute)
	f.consume(at(duringFailover(keeper0Down)))
	f.consume(at(keeper0Down))
	roots, _, _ := f.messages("!ops")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "CRITICAL · stolon main: keeper keeper0 unhealthy") ||
		!strings.Contains(roots[0].Plain, "the sentinel judges keeper keeper0 unhealthy (master db d51919e0 at 10.0.0.10:5432) (still failing after the failover of main by Vigie ended)") {
		t.Fatalf("after the failover: %v", roots)
	}
	f.consume(at(keeper0Down))
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("posted again: %v", roots)
	}

	// Another failover, where a standby recovers before its end.
	keeper2Down := keeper("keeper2", func(k *watchers.StolonKeeper) { k.Healthy = false })
	f.consume(at(duringFailover(keeper2Down)))
	if in := f.incident("stolon/main/keeper/keeper2"); in.State != store.IncidentHeld {
		t.Fatalf("during the second failover: %+v", in)
	}
	f.consume(at(duringFailover(nil)))
	f.consume(at(nil))
	if in := f.incident("stolon/main/keeper/keeper2"); in.State != store.IncidentResolved {
		t.Fatalf("after the second failover: %+v", in)
	}
	// A third, where the event ending it is the first to show the standby
	// healthy (its incident resolved unposted moments ago is held anew).
	f.consume(at(duringFailover(keeper2Down)))
	if in := f.incident("stolon/main/keeper/keeper2"); in.State != store.IncidentHeld {
		t.Fatalf("during the third failover: %+v", in)
	}
	f.consume(at(nil))
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("what recovered by the end of a failover was posted: %v", roots)
	}
	if in := f.incident("stolon/main/keeper/keeper0"); in.State != store.IncidentResolved {
		t.Fatalf("keeper0 healthy again: %+v", in)
	}
	// A fourth, where the standby fails, recovers and fails again before
	// its end: posted once it ended.
	f.consume(at(duringFailover(keeper2Down)), at(duringFailover(nil)), at(duringFailover(keeper2Down)))
	f.consume(at(keeper2Down))
	roots, _, _ = f.messages("!ops")
	if len(roots) != 2 || !strings.Contains(roots[1].Plain, "WARNING · stolon main: keeper keeper2 unhealthy") ||
		!strings.Contains(roots[1].Plain, "(still failing after the failover of main by Vigie ended)") {
		t.Fatalf("after the fourth failover: %v", roots)
	}
}

// A master change is told once, even when its event is told again after
// the notices' one-minute window; Vigie's own failover is not told.
func TestStolonMasterChangeIsToldOnce(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	changed := func(s *watchers.Stolon) {
		s.PreviousMasterKeeper, s.PreviousMasterDB = "keeper0", "d51919e0"
		s.MasterKeeper, s.MasterDB, s.Timeline = "keeper1", "0e651c76", 3
		s.Keepers[0].Role, s.Keepers[1].Role = "standby", "master"
	}
	f.consume(stolonEvent(changed))
	roots, _, _ := f.messages("!ops")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "stolon main: master changed from keeper0 (db d51919e0) to keeper1 (db 0e651c76)") ||
		!strings.Contains(roots[0].Plain, "on timeline 3") {
		t.Fatalf("notice: %v", roots)
	}
	f.clock.Advance(5 * time.Minute)
	f.consume(stolonEvent(changed))
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("the same change told twice: %v", roots)
	}
	if in := f.incident("stolon/main/master"); in.Events != 2 {
		t.Fatalf("the repeat was not counted: %+v", in)
	}
	f.consume(stolonEvent(duringFailover(func(s *watchers.Stolon) {
		s.PreviousMasterKeeper, s.PreviousMasterDB = "keeper1", "0e651c76"
		s.MasterKeeper, s.MasterDB, s.Timeline = "keeper2", "7a1c0b3f", 4
	})))
	if roots, _, _ := f.messages("!ops"); len(roots) != 1 {
		t.Fatalf("Vigie's own failover was told: %v", roots)
	}
}
