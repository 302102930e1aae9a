package stolon

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/watchers"
)

// watchWait is how long one blocking query waits at most; the sentinel
// rewrites clusterdata every few seconds, so it rarely waits that long.
const watchWait = 5 * time.Minute

// Events watches a cluster's keys with blocking queries and tells the
// incident pipeline its whole state whenever it changes, when a grace
// period runs out, and when a failover by Vigie starts or ends. It only
// reads.
type Events struct {
	svc *Service
	c   *Cluster
	// tr outlives a run: a failed read restarts the watch, but what the
	// sequence told (who was master, since when a standby lags) holds.
	tr *tracker
}

// Events is the event source of a cluster.
func (s *Service) Events(c *Cluster) *Events {
	return &Events{svc: s, c: c}
}

// Name implements watchers.Watcher.
func (e *Events) Name() string { return "stolon-" + e.c.Name }

// DisplayName names the source for people.
func (e *Events) DisplayName() string { return "Stolon " + e.c.Name }

// Address implements watchers.Watcher.
func (e *Events) Address() string { return e.c.KV.Address + "/v1/kv/" + e.c.Prefix() }

// tracker remembers what the state alone does not say: since when a
// standby lags or a proxy strays, who was master, what was there before.
type tracker struct {
	master      string // DB UID
	masterK     string
	lagSince    map[string]time.Time
	strays      map[string]time.Time
	noProxy     time.Time
	keepers     []string
	proxies     []string
	delivered   *watchers.Stolon // the last event, for change detection
	deliveredAt time.Time
}

// Watch implements watchers.Watcher. It follows Consul's rules for
// blocking queries: a plain read first (each run, so after any error),
// then block on the last index; an index going backwards starts again
// from the answer; never block on 0. A failed read ends the run: the
// supervisor retries with backoff and tells the room if it lasts.
func (e *Events) Watch(ctx context.Context, sink watchers.Sink, lookout watchers.Lookout) error {
	log := zerolog.Ctx(ctx)
	if e.tr == nil {
		e.tr = &tracker{lagSince: map[string]time.Time{}, strays: map[string]time.Time{}}
	}
	tr := e.tr
	tr.delivered = nil // the first state of a run is delivered: the pipeline reconciles a restart against it
	var index uint64
	for {
		st, failing, err := e.next(ctx, index, tr)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stolon %s: %w", e.c.Name, err)
		}
		lookout.Seen()
		if st == nil { // woken by a failover starting or ending: read again
			index = 0
			continue
		}
		if index > 0 && st.Index < index {
			log.Info().Uint64("from", index).Uint64("to", st.Index).Str("stolon_cluster", e.c.Name).Msg("Consul KV index went backwards; starting again from this state")
		}
		index = max(st.Index, 1)
		now := e.svc.clk.Now()
		ev := e.event(ctx, st, tr, failing, now)
		if tr.delivered != nil && sameState(tr.delivered, ev) && !graceEnded(ev, tr.deliveredAt, now) {
			continue
		}
		b := watchers.Batch{Events: []watchers.Event{{Source: e.Name(), Topic: watchers.TopicStolon, Type: watchers.StolonState,
			Index: st.Index, Time: now, Stolon: ev}}}
		if err := sink.Consume(ctx, b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stolon %s: deliver the state at index %d: %w", e.c.Name, st.Index, err)
		}
		tr.delivered, tr.deliveredAt = ev, now
	}
}

// next reads the keys: at once when index is 0, else blocking until they
// change, a grace period runs out, or a failover starts or ends (then it
// returns a nil state). failing reports whether a failover runs.
func (e *Events) next(ctx context.Context, index uint64, tr *tracker) (*State, bool, error) {
	running := e.svc.Running(e.c.Name)
	if index == 0 {
		st, err := e.c.Read(ctx, false)
		return st, running, err
	}
	wait := watchWait
	if d, ok := tr.nextDeadline(e.c.Grace, e.svc.clk.Now()); ok {
		wait = min(wait, max(d, time.Second))
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	woken := make(chan struct{})
	changed := e.svc.Changed()
	woke := false // read once woken is closed
	go func() {
		defer close(woken)
		select {
		case <-changed:
			woke = true
			cancel()
		case <-qctx.Done():
		}
	}()
	st, err := e.c.Wait(qctx, index, wait)
	cancel()
	<-woken
	if err != nil && ctx.Err() == nil && woke {
		return nil, running, nil
	}
	return st, running, err
}

// nextDeadline is how long until the earliest grace period runs out.
func (tr *tracker) nextDeadline(grace time.Duration, now time.Time) (time.Duration, bool) {
	starts := append(slices.Collect(maps.Values(tr.lagSince)), tr.noProxy)
	starts = append(starts, slices.Collect(maps.Values(tr.strays))...)
	var first time.Time
	for _, t := range starts {
		if end := t.Add(grace); !t.IsZero() && end.After(now) && (first.IsZero() || end.Before(first)) {
			first = end
		}
	}
	return first.Sub(now), !first.IsZero()
}

// event builds the pipeline's view of a state, updating the tracker.
func (e *Events) event(ctx context.Context, st *State, tr *tracker, failing bool, now time.Time) *watchers.Stolon {
	cd := st.Data
	ev := &watchers.Stolon{Cluster: e.c.Name, Phase: cd.Cluster.Status.Phase, MaxLag: st.MaxLag, Grace: e.c.Grace, Failover: failing,
		Sentinels: st.Sentinels, Leader: st.Leader, LeaderAlive: st.LeaderAlive(), SyncWanted: cd.Cluster.Spec.MinSync()}
	master := cd.MasterDB()
	if master != nil {
		ev.MasterKeeper, ev.MasterDB, ev.Timeline = master.Spec.KeeperUID, master.UID, master.Status.TimelineID
		for _, uid := range common(master.Spec.SynchronousStandbys, master.Status.SynchronousStandbys) {
			if db := cd.DBs[uid]; db != nil {
				ev.SyncStandbys = append(ev.SyncStandbys, db.Spec.KeeperUID)
			}
		}
	}
	if tr.master != "" && master != nil && tr.master != master.UID {
		ev.PreviousMasterKeeper, ev.PreviousMasterDB = tr.masterK, tr.master
	}
	if master != nil {
		tr.master, tr.masterK = master.UID, master.Spec.KeeperUID
	}

	keepers := cd.KeeperUIDs()
	for _, uid := range keepers {
		k := watchers.StolonKeeper{UID: uid, Healthy: cd.Keepers[uid].Status.Healthy}
		if db := cd.DBOf(uid); db != nil {
			k.DB, k.Role, k.Address, k.PGHealthy, k.Timeline = db.UID, db.Spec.Role, db.Address(), db.Status.Healthy, db.Status.TimelineID
			if db.Spec.Role == "standby" {
				k.Lag, _ = st.Lag(db) // unknown: 0, the PostgreSQL health tells
			}
		}
		k.LagSince = since(tr.lagSince, uid, k.Role == "standby" && k.Lag > st.MaxLag, now)
		ev.Keepers = append(ev.Keepers, k)
	}
	ev.GoneKeepers = gone(tr.keepers, keepers)
	tr.keepers = keepers

	proxies := sortedKeys(st.Proxies)
	for _, uid := range proxies {
		ev.Proxies = append(ev.Proxies, watchers.StolonProxy{UID: uid, BehindSince: since(tr.strays, uid, !st.ProxyFollows(uid), now)})
	}
	for uid := range tr.strays {
		if !slices.Contains(proxies, uid) {
			delete(tr.strays, uid)
		}
	}
	ev.GoneProxies = gone(tr.proxies, proxies)
	tr.proxies = proxies
	switch {
	case len(proxies) > 0:
		tr.noProxy = time.Time{}
	case tr.noProxy.IsZero():
		tr.noProxy = now
	}
	ev.NoProxySince = tr.noProxy

	if f, err := e.svc.FenceLeft(ctx, e.c.Name); err != nil {
		ev.FenceLeft = err.Error()
	} else if f != nil {
		ev.FenceLeft = "Vigie's fence is still set: " + f.String() + "; Vigie retries lifting it every " + recoverInterval.String()
	}
	return ev
}

// since keeps the time a condition started, zero while it does not hold.
func since(m map[string]time.Time, key string, holds bool, now time.Time) time.Time {
	if !holds {
		delete(m, key)
		return time.Time{}
	}
	if _, ok := m[key]; !ok {
		m[key] = now
	}
	return m[key]
}

func gone(before, now []string) []string {
	var out []string
	for _, k := range before {
		if !slices.Contains(now, k) {
			out = append(out, k)
		}
	}
	return out
}

// sameState: nothing the rules judge changed (lag figures alone are not
// news: the rules tell them with the next change).
func sameState(a, b *watchers.Stolon) bool {
	if len(b.GoneKeepers) > 0 || len(b.GoneProxies) > 0 || b.PreviousMasterDB != "" {
		return false
	}
	strip := func(s *watchers.Stolon) watchers.Stolon {
		c := *s
		c.Keepers = slices.Clone(s.Keepers)
		for i := range c.Keepers {
			c.Keepers[i].Lag = 0
		}
		return c
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

// graceEnded: a grace period ran out between the last delivery and now.
func graceEnded(ev *watchers.Stolon, last, now time.Time) bool {
	ended := func(t time.Time) bool {
		end := t.Add(ev.Grace)
		return !t.IsZero() && end.After(last) && !end.After(now)
	}
	for _, k := range ev.Keepers {
		if ended(k.LagSince) {
			return true
		}
	}
	for _, p := range ev.Proxies {
		if ended(p.BehindSince) {
			return true
		}
	}
	return ended(ev.NoProxySince)
}
