package incidents

import (
	"fmt"
	"math"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/watchers"
)

// The Stolon rules judge a cluster's whole state, which every Stolon event
// carries (watchers.Stolon): on each event each rule says, for every key it
// owns, whether it fires or resolves, and the engine ignores what it heard
// already. Their keys are stolon/<cluster>/..., their titles
// "stolon <cluster>: ...".

// stolonHold is the hold reason of the incidents a Stolon cluster shows
// while Vigie fails it over: the failover's own message tells that story.
// The engine posts those still firing once an event shows the failover
// over.
func stolonHold(cluster string) string {
	return "failover of " + cluster + " by Vigie"
}

// stolonSignals collects one Stolon rule's verdicts on one event.
type stolonSignals struct {
	rule string
	ev   *watchers.Event
	s    *watchers.Stolon
	// hold: firing signals wait out Vigie's failover (all but a fence
	// left, which is about the failover itself).
	hold bool
	out  []Signal
}

// stolonEvaluate runs judge on a Stolon event; nil for any other event.
func stolonEvaluate(rule string, ev *watchers.Event, hold bool, judge func(v *stolonSignals, s *watchers.Stolon)) []Signal {
	if ev.Stolon == nil {
		return nil
	}
	v := &stolonSignals{rule: rule, ev: ev, s: ev.Stolon, hold: hold}
	judge(v, ev.Stolon)
	return v.out
}

// key is the key stolon/<cluster>/<segments...>.
func (v *stolonSignals) key(segments ...string) string {
	return signalKey(append([]string{"stolon", v.s.Cluster}, segments...)...)
}

// add appends a signal; title is what follows "stolon <cluster>: ".
func (v *stolonSignals) add(status Status, sev Severity, key, title, reason string) *Signal {
	sig := Signal{
		Rule: v.rule, Key: key, Severity: sev, Status: status,
		Title: "stolon " + v.s.Cluster + ": " + title, Reason: reason, At: v.ev.Time,
	}
	if status == Firing && v.hold && v.s.Failover {
		sig.Hold = stolonHold(v.s.Cluster)
	}
	v.out = append(v.out, sig)
	return &v.out[len(v.out)-1]
}

// goneKeepers resolves the per-keeper key of each keeper removed from the
// cluster: nothing else will.
func (v *stolonSignals) goneKeepers(sev Severity, segment string, title func(uid string) string) {
	for _, uid := range v.s.GoneKeepers {
		v.add(Resolved, sev, v.key(segment, uid), title(uid), "keeper "+uid+" removed from the cluster")
	}
}

// keeperSeverity is master for the master's keeper, standby for any other.
func (v *stolonSignals) keeperSeverity(k *watchers.StolonKeeper, master, standby Severity) Severity {
	if k.UID == v.s.MasterKeeper {
		return master
	}
	return standby
}

// pastGrace reports whether a condition that began at since (zero: it is
// absent) has lasted the cluster's grace period by the event's time.
func (v *stolonSignals) pastGrace(since time.Time) bool {
	return !since.IsZero() && v.ev.Time.Sub(since) >= v.s.Grace
}

// stolonKeeperDB describes a keeper's database for a reason, e.g. "master
// db d51919e0 at 10.0.0.10:5432".
func stolonKeeperDB(k *watchers.StolonKeeper) string {
	if k.DB == "" {
		return "no database"
	}
	d := "db " + k.DB
	if k.Role != "" {
		d = k.Role + " " + d
	}
	if k.Address != "" {
		d += " at " + k.Address
	}
	return d
}

// stolonMember names a keeper and its database: "keeper1 (db 0e651c76)".
func stolonMember(keeper, db string) string {
	switch {
	case keeper == "" && db == "":
		return "none"
	case keeper == "":
		return "db " + db
	case db == "":
		return keeper
	}
	return keeper + " (db " + db + ")"
}

// stolonBytes prints a byte count and its size in binary units, e.g.
// "5242880 bytes (5.00 MiB)".
func stolonBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d bytes (%s)", n, render.Bytes(int64(min(n, math.MaxInt64))))
}
