// Package fakestolon simulates the parts of a Stolon cluster that act on
// its Consul keys, over real PostgreSQL servers, for tests of what drives
// a failover: a sentinel leader and a stolon-proxy.
//
// The cluster starts from a clusterdata document captured from a real
// Stolon (fakeconsul.StolonState("normal")), its two DBs pointed at the
// test's primary and standby. The sentinel, like Stolon's (cmd/sentinel,
// v0.17 to master), every SleepInterval: reads clusterdata; refreshes each
// DB's status from its server (healthy when reachable; xLogPos the WAL
// *received* on a standby, as IDENTIFY_SYSTEM gives it); if the master's
// keeper has forceFail, treats it as failed for that cycle, clears
// forceFail and elects the best standby by Stolon's rule (keeper and DB
// healthy, canBeMaster not false, same timeline, lag within maxStandbyLag
// unless synchronous, where it must be a synchronous standby of the
// master; ascending xLogPos), setting the new master and removing the
// proxy's master in one write, as Stolon does; the new master's keeper
// promotes it for real (pg_promote) PromoteDelay later; once promoted, the
// next cycle points the proxy at it and has the old master's keeper
// resync as a standby of it (stopping its server; pg_basebackup into a
// new DB). Each cycle writes clusterdata back with check-and-set and
// libkv's flags, so that its ModifyIndex moves every cycle as it does for
// real; a write that loses the check-and-set is dropped, as the sentinel
// does.
//
// The proxy, every ProxyCheckInterval, reads clusterdata and routes to the
// DB proxy.spec.masterDbUid names, closing every connection when that
// changes and refusing when it is empty, then publishes the generation it
// applied in proxies/info/<uid>: until it looks, it keeps routing to the
// old master, which is how failkeeper loses writes.
package fakestolon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/jackc/pgx/v5"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/testenv"
)

// LibkvFlags are the flags libkv writes every key with.
const LibkvFlags = 3304740253564472344

// Prefix is where the cluster's keys are: the default store prefix and
// the captured cluster's name.
const Prefix = "stolon/cluster/main/"

// The captured cluster's keepers, DBs and proxy.
const (
	Keeper0 = "keeper0"
	Keeper1 = "keeper1"
	DB0     = "d51919e0" // keeper0's, the master
	DB1     = "0e651c76" // keeper1's, a standby
	ProxyID = "5a6b1224" // the proxy of the captured state
)

// Cluster is a simulated Stolon cluster over a primary and a standby.
type Cluster struct {
	SleepInterval      time.Duration // the sentinel's cycle (Stolon's default: 5s)
	PromoteDelay       time.Duration // from election to promotion by the keeper
	ProxyCheckInterval time.Duration // the proxy's cycle (Stolon's default: 5s)

	Consul *fakeconsul.Server
	Proxy  *testenv.TCPProxy

	kv *api.KV

	mu        sync.Mutex
	servers   map[string]*testenv.Postgres // by DB UID
	promoting string                       // elected, not yet pointed at by the proxy
	oldMaster string
	resyncs   chan resync
	elections int
	stopped   bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type resync struct {
	primary *testenv.Postgres
	done    chan *testenv.Postgres
}

// New loads the captured "normal" state into consul, with keeper0's DB
// at primary and keeper1's at standby, and a proxy routing to primary.
// Start runs the sentinel and the proxy.
func New(t testing.TB, consul *fakeconsul.Server, primary, standby *testenv.Postgres) *Cluster {
	t.Helper()
	if err := consul.LoadKV(fakeconsul.StolonState("normal")); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		SleepInterval: time.Second, PromoteDelay: 300 * time.Millisecond, ProxyCheckInterval: time.Second,
		Consul:  consul,
		servers: map[string]*testenv.Postgres{DB0: primary, DB1: standby},
		resyncs: make(chan resync),
	}
	client, err := api.NewClient(&api.Config{Address: consul.URL})
	if err != nil {
		t.Fatal(err)
	}
	c.kv = client.KV()
	doc, _ := c.read(t)
	for uid, pg := range c.servers {
		db := obj(obj(doc, "dbs"), uid)
		st := obj(db, "status")
		st["listenAddress"], st["port"] = pg.Host, strconv.Itoa(pg.Port)
	}
	c.write(t, doc)
	c.Proxy = testenv.StartTCPProxy(t, primary.Addr())
	return c
}

// Server is the PostgreSQL of a DB, nil while it resyncs.
func (c *Cluster) Server(db string) *testenv.Postgres {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[db]
}

// Elections counts the masters the sentinel elected.
func (c *Cluster) Elections() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.elections
}

// Edit changes clusterdata as an operator's stolonctl would (a spec
// patch, a keeper flag), with check-and-set.
func (c *Cluster) Edit(t testing.TB, fn func(doc map[string]any)) {
	t.Helper()
	if err := c.edit(fn); err != nil {
		t.Fatal(err)
	}
}

// edit is Edit for the simulation's goroutines.
func (c *Cluster) edit(fn func(doc map[string]any)) error {
	for {
		doc, idx, err := c.get()
		if err != nil {
			return err
		}
		fn(doc)
		if c.cas(doc, idx) {
			return nil
		}
	}
}

// Start runs the sentinel and the proxy until the test ends. Resyncs
// need the test's goroutine: run what drives the failover with Drive.
func (c *Cluster) Start(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Go(func() { c.every(ctx, c.SleepInterval, c.sentinelCycle) })
	c.wg.Go(func() { c.every(ctx, c.ProxyCheckInterval, c.proxyCycle) })
	t.Cleanup(c.Stop)
}

// Stop stops the sentinel and the proxy's routing.
func (c *Cluster) Stop() {
	c.mu.Lock()
	stopped := c.stopped
	c.stopped = true
	c.mu.Unlock()
	if !stopped && c.cancel != nil {
		c.cancel()
		c.wg.Wait()
	}
}

// Drive runs fn in another goroutine and serves, on the test's, the
// resyncs the sentinel asks for (a standby is started with the test's
// helpers) until fn returns.
func (c *Cluster) Drive(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	for {
		select {
		case <-done:
			return
		case r := <-c.resyncs:
			r.done <- testenv.StartStandby(t, r.primary)
		}
	}
}

func (c *Cluster) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// sentinelCycle is one check of the sentinel leader.
func (c *Cluster) sentinelCycle(ctx context.Context) {
	doc, idx, err := c.get()
	if err != nil {
		return
	}
	c.refresh(ctx, doc)
	cluster := obj(doc, "cluster")
	status := obj(cluster, "status")
	masterUID, _ := status["master"].(string)
	dbs := obj(doc, "dbs")
	master := obj(dbs, masterUID)
	masterKeeper := str(obj(master, "spec"), "keeperUID")
	kst := obj(obj(obj(doc, "keepers"), masterKeeper), "status")

	c.mu.Lock()
	promoting, oldMaster := c.promoting, c.oldMaster
	c.mu.Unlock()
	switch {
	case kst["forceFail"] == true:
		delete(kst, "forceFail")
		delete(kst, "healthy") // failed for this cycle
		if best := elect(doc, masterUID); best != "" {
			status["master"] = best
			nspec := obj(obj(dbs, best), "spec")
			nspec["role"] = "master"
			delete(nspec, "followConfig")
			obj(master, "spec")["followers"] = []any{}
			proxy := obj(doc, "proxy")
			delete(obj(proxy, "spec"), "masterDbUid")
			proxy["generation"] = num(proxy["generation"]) + 1
			if !c.cas(doc, idx) {
				return
			}
			c.mu.Lock()
			c.promoting, c.oldMaster = best, masterUID
			c.elections++
			c.mu.Unlock()
			c.wg.Go(func() { c.promote(ctx, best) })
			return
		}
	case promoting != "" && c.promoted(ctx, promoting):
		proxy := obj(doc, "proxy")
		obj(proxy, "spec")["masterDbUid"] = promoting
		proxy["generation"] = num(proxy["generation"]) + 1
		// The old master's keeper resyncs it as a standby of the new one,
		// in a new DB.
		old := obj(dbs, oldMaster)
		keeper := str(obj(old, "spec"), "keeperUID")
		delete(dbs, oldMaster)
		newUID := fmt.Sprintf("r%07d", idx)
		dbs[newUID] = map[string]any{"uid": newUID, "generation": json.Number("1"), "changeTime": time.Now().UTC().Format(time.RFC3339Nano),
			"spec":   map[string]any{"keeperUID": keeper, "role": "standby", "followConfig": map[string]any{"type": "internal", "dbuid": promoting}, "followers": []any{}, "synchronousStandbys": nil},
			"status": map[string]any{"listenAddress": str(obj(old, "status"), "listenAddress"), "port": str(obj(old, "status"), "port"), "synchronousStandbys": nil}}
		obj(obj(dbs, promoting), "spec")["followers"] = []any{newUID}
		if !c.cas(doc, idx) {
			return
		}
		c.mu.Lock()
		c.promoting, c.oldMaster = "", ""
		oldServer, newServer := c.servers[oldMaster], c.servers[promoting]
		delete(c.servers, oldMaster)
		c.mu.Unlock()
		c.wg.Go(func() { c.resync(ctx, oldServer, newServer, newUID) })
		return
	}
	c.cas(doc, idx)
}

// elect applies Stolon's rule; "" when no standby qualifies.
func elect(doc map[string]any, masterUID string) string {
	dbs := obj(doc, "dbs")
	master := obj(dbs, masterUID)
	spec := obj(obj(doc, "cluster"), "spec")
	maxLag := uint64(1024 * 1204)
	if v, ok := spec["maxStandbyLag"]; ok {
		maxLag = uint64(num(v))
	}
	syncRepl := spec["synchronousReplication"] == true
	mst := obj(master, "status")
	type cand struct {
		uid string
		pos uint64
	}
	var cands []cand
	for uid, v := range dbs {
		db := v.(map[string]any)
		dspec, dst := obj(db, "spec"), obj(db, "status")
		k := obj(obj(doc, "keepers"), str(dspec, "keeperUID"))
		kst := obj(k, "status")
		pos := uint64(num(dst["xLogPos"]))
		switch {
		case uid == masterUID, str(dspec, "role") != "standby",
			kst["healthy"] != true, dst["healthy"] != true, kst["canBeMaster"] == false,
			num(dst["timelineID"]) != num(mst["timelineID"]),
			num(db["generation"]) != num(dst["currentGeneration"]):
			continue
		case !syncRepl && uint64(num(mst["xLogPos"])) > pos && uint64(num(mst["xLogPos"]))-pos > maxLag:
			continue
		}
		cands = append(cands, cand{uid, pos})
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].pos < cands[j].pos })
	for _, cd := range cands {
		if !syncRepl || slices.Contains(strs(obj(master, "spec")["synchronousStandbys"]), cd.uid) && slices.Contains(strs(mst["synchronousStandbys"]), cd.uid) {
			return cd.uid
		}
	}
	return ""
}

// refresh writes each DB's status as its keeper reports it.
func (c *Cluster) refresh(ctx context.Context, doc map[string]any) {
	for uid, v := range obj(doc, "dbs") {
		db := v.(map[string]any)
		st := obj(db, "status")
		k := obj(obj(obj(doc, "keepers"), str(obj(db, "spec"), "keeperUID")), "status")
		pg := c.Server(uid)
		pos, err := received(ctx, pg)
		if err != nil {
			delete(st, "healthy")
			delete(k, "healthy")
			continue
		}
		st["healthy"], k["healthy"] = true, true
		st["xLogPos"] = json.Number(strconv.FormatUint(pos, 10))
		st["currentGeneration"] = db["generation"]
		if _, ok := st["timelineID"]; !ok {
			st["timelineID"] = obj(obj(doc, "dbs"), str(obj(obj(doc, "cluster"), "status"), "master"))["status"].(map[string]any)["timelineID"]
		}
		k["lastHealthyTime"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	doc["changeTime"] = time.Now().UTC().Format(time.RFC3339Nano)
}

// received is a server's WAL position as a keeper reports it: written on
// a master, received on a standby.
func received(ctx context.Context, pg *testenv.Postgres) (uint64, error) {
	if pg == nil {
		return 0, fmt.Errorf("resyncing")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var pos int64
	err = conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, '0/0')::bigint`).Scan(&pos)
	return uint64(pos), err
}

func (c *Cluster) promote(ctx context.Context, db string) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(c.PromoteDelay):
	}
	pg := c.Server(db)
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	conn.Exec(ctx, "SELECT pg_promote(true, 60)") //nolint:errcheck // the next cycle sees whether it worked
	// The keeper writes its new timeline in the DB's status.
	c.edit(func(doc map[string]any) {
		st := obj(obj(obj(doc, "dbs"), db), "status")
		st["timelineID"] = json.Number(strconv.FormatInt(num(st["timelineID"])+1, 10))
	})
}

func (c *Cluster) promoted(ctx context.Context, db string) bool {
	pg := c.Server(db)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		return false
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	return conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery) == nil && !inRecovery
}

// resync stops the old master and starts a standby of the new one for
// the new DB, through the test's goroutine (Drive).
func (c *Cluster) resync(ctx context.Context, old, primary *testenv.Postgres, newUID string) {
	old.Stop()
	r := resync{primary: primary, done: make(chan *testenv.Postgres, 1)}
	select {
	case c.resyncs <- r:
	case <-ctx.Done():
		return
	}
	var pg *testenv.Postgres
	select {
	case pg = <-r.done:
	case <-ctx.Done():
		return
	}
	c.mu.Lock()
	c.servers[newUID] = pg
	c.mu.Unlock()
	c.edit(func(doc map[string]any) {
		st := obj(obj(obj(doc, "dbs"), newUID), "status")
		st["listenAddress"], st["port"] = pg.Host, strconv.Itoa(pg.Port)
		st["timelineID"] = obj(obj(obj(doc, "dbs"), str(obj(obj(doc, "cluster"), "status"), "master")), "status")["timelineID"]
	})
}

// proxyCycle is one check of the proxy.
func (c *Cluster) proxyCycle(context.Context) {
	doc, _, err := c.get()
	if err != nil {
		return
	}
	proxy := obj(doc, "proxy")
	target := ""
	if uid := str(obj(proxy, "spec"), "masterDbUid"); uid != "" {
		st := obj(obj(obj(doc, "dbs"), uid), "status")
		target = str(st, "listenAddress") + ":" + str(st, "port")
	}
	c.Proxy.SetTarget(target)
	info, _ := json.Marshal(map[string]any{"infoUID": "fake", "UID": ProxyID, "Generation": num(proxy["generation"]), "ProxyTimeout": 15000000000})
	c.kv.Put(&api.KVPair{Key: Prefix + "proxies/info/" + ProxyID, Value: info, Flags: LibkvFlags}, nil) //nolint:errcheck // the next cycle writes it again
}

// get reads clusterdata, decoded with numbers kept.
func (c *Cluster) get() (map[string]any, uint64, error) {
	p, _, err := c.kv.Get(Prefix+"clusterdata", &api.QueryOptions{RequireConsistent: true})
	if err != nil || p == nil {
		return nil, 0, fmt.Errorf("clusterdata: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(p.Value))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, err
	}
	return doc, p.ModifyIndex, nil
}

func (c *Cluster) read(t testing.TB) (map[string]any, uint64) {
	doc, idx, err := c.get()
	if err != nil {
		t.Fatal(err)
	}
	return doc, idx
}

func (c *Cluster) write(t testing.TB, doc map[string]any) {
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	c.Consul.SetKV(Prefix+"clusterdata", b, LibkvFlags)
}

// cas writes clusterdata if it is still at idx, as libkv's AtomicPut.
func (c *Cluster) cas(doc map[string]any, idx uint64) bool {
	b, err := json.Marshal(doc)
	if err != nil {
		return false
	}
	ok, _, err := c.kv.CAS(&api.KVPair{Key: Prefix + "clusterdata", Value: b, Flags: LibkvFlags, ModifyIndex: idx}, nil)
	return err == nil && ok
}

// ClusterData returns the clusterdata document now, decoded.
func (c *Cluster) ClusterData(t testing.TB) map[string]any {
	doc, _ := c.read(t)
	return doc
}

func obj(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	if v == nil {
		v = map[string]any{}
		if m != nil {
			m[key] = v
		}
	}
	return v
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func num(v any) int64 {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return i
	case float64:
		return int64(n)
	case int64:
		return n
	}
	return 0
}
