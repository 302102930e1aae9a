package backups

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// put writes an object as another writer (or a damaged manifest) would.
func (e *env) put(t *testing.T, key, body string) {
	t.Helper()
	if _, err := e.s3.Client(t).PutObject(t.Context(), bucket, key, bytes.NewReader([]byte(body)), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A manifest that cannot be read, or that names an object S3 lacks, is
// listed as broken and never counted as good; a fresh catalog (an empty
// data directory) lists what S3 holds.
func TestCatalogListsBrokenBackups(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 5}}}
	})
	ctx := t.Context()
	good, err := e.svc.Backup(ctx, "consul", "schedule", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	lost, err := e.svc.Backup(ctx, "consul", "schedule", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.cfg.Storage.Remove(ctx, lost.Objects[0].Key); err != nil {
		t.Fatal(err)
	}
	e.put(t, "vigie/consul/2026-11-30/consul-20261130T053000Z.manifest.json", `{"format": 1, "id": "consul-2026113`)

	fresh := newCatalog(e.svc.cfg.Storage, e.svc.layout)
	backups, orphans, err := fresh.list(ctx, "consul")
	if err != nil || len(backups) != 3 || len(orphans) != 0 {
		t.Fatalf("list %+v %v %v", backups, orphans, err)
	}
	if !backups[0].Good() || backups[0].ID != good.ID {
		t.Fatalf("good backup %+v", backups[0])
	}
	if backups[1].Good() || !strings.Contains(backups[1].Broken, lost.Objects[0].Key+" is missing") {
		t.Fatalf("backup without its object %+v", backups[1])
	}
	if backups[2].Good() || !strings.Contains(backups[2].Broken, "not valid JSON") || backups[2].started().IsZero() {
		t.Fatalf("damaged manifest %+v", backups[2])
	}
	newest, err := find(backups, "")
	if err != nil || newest.ID != good.ID {
		t.Fatalf("newest good %v %v", newest, err)
	}
	if _, err := e.svc.Verify(ctx, "consul", lost.ID, "@bob", nil); err == nil || !strings.Contains(err.Error(), "is broken") {
		t.Fatalf("verify a broken backup: %v", err)
	}
	rep := e.svc.Status(ctx, nil)
	if st := rep.Targets[0]; st.Broken != 2 || st.LastGood.ID != good.ID || st.State() != "ok" {
		t.Fatalf("report %+v", st)
	}
}

// Retention deletes manifest then objects, never the newest good backup,
// and deletes leftovers older than a day; a failed listing deletes
// nothing.
func TestPrune(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 2}}}
	})
	ctx := t.Context()
	var ids []string
	for range 4 {
		m, err := e.svc.Backup(ctx, "consul", "schedule", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Verify(ctx, "consul", m.ID, "schedule", nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
		e.clock.Advance(24 * time.Hour)
	}
	e.put(t, "vigie/consul/2026-11-29/consul-20261129T000000Z.snap.zst", "left by a run that died before its manifest")
	e.clock.Advance(72 * time.Hour) // the leftover (written now, real time) is old on the service's clock

	plan, err := e.svc.PlanPrune(ctx, "consul")
	if err != nil {
		t.Fatal(err)
	}
	var drop []string
	for _, b := range plan.Drop() {
		drop = append(drop, b.ID)
	}
	if strings.Join(drop, ",") != ids[1]+","+ids[0] || len(plan.Leftovers) != 1 {
		t.Fatalf("drop %v, leftovers %v", drop, plan.Leftovers)
	}
	res, err := e.svc.Prune(ctx, plan, "@alice")
	if err != nil || len(res.Deleted) != 2 || res.Leftovers != 1 {
		t.Fatalf("prune %+v %v", res, err)
	}
	objects, _ := e.svc.cfg.Storage.List(ctx, "vigie/")
	if len(objects) != 6 { // two backups: snapshot, manifest, verification each
		t.Fatalf("left in S3: %+v", objects)
	}
	for _, o := range objects {
		if strings.Contains(o.Key, ids[0]) || strings.Contains(o.Key, ids[1]) {
			t.Fatalf("%s survived", o.Key)
		}
	}

	// A plan that would drop everything keeps the newest good backup.
	all := &PrunePlan{Target: "consul", Decisions: []Decision{}}
	list, _ := e.svc.List(ctx, "consul")
	for _, b := range list {
		all.Decisions = append(all.Decisions, Decision{Backup: b})
	}
	if res, err := e.svc.Prune(ctx, all, "@alice"); err != nil || len(res.Deleted) != 1 || res.Deleted[0] != ids[2] {
		t.Fatalf("prune everything: %+v %v", res, err)
	}
	e.s3.Stop()
	if _, err := e.svc.PlanPrune(ctx, "consul"); err == nil || !strings.Contains(err.Error(), "nothing pruned") {
		t.Fatalf("plan with S3 down: %v", err)
	}
}

// sinkLog records what the event source delivers.
type sinkLog struct {
	mu      sync.Mutex
	batches []watchers.Batch
}

func (s *sinkLog) Consume(_ context.Context, b watchers.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, b)
	return nil
}

func (s *sinkLog) events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		for _, ev := range b.Events {
			out = append(out, ev.Type+":"+ev.Backup.Target+":"+ev.Backup.Action+":"+ev.Backup.Outcome)
		}
	}
	return out
}

type lookoutLog struct {
	mu         sync.Mutex
	seen, lost int
}

func (l *lookoutLog) Seen()          { l.mu.Lock(); l.seen++; l.mu.Unlock() }
func (l *lookoutLog) Lost(error)     { l.mu.Lock(); l.lost++; l.mu.Unlock() }
func (l *lookoutLog) Partial(string) {}

// The event source tells each ended backup and verification once, in the
// order they ended, with its place as the cursor, and each target that
// turns stale or fresh.
func TestEventsTellRunsAndFreshness(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), MaxAge: 36 * time.Hour, Retention: Retention{Last: 5}}}
	})
	ctx := t.Context()
	consul.FailNextSnapshot(1, 500)
	if _, err := e.svc.Backup(ctx, "consul", "schedule", nil); err == nil {
		t.Fatal("backup with Consul failing")
	}
	if _, err := e.svc.Backup(ctx, "consul", "schedule", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Verify(ctx, "consul", "", "@bob", nil); err != nil {
		t.Fatal(err)
	}
	sink, look := &sinkLog{}, &lookoutLog{}
	ev := NewEvents(e.svc, e.st, 20*time.Millisecond)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- ev.Watch(wctx, sink, look) }()
	waitFor(t, func() bool { return len(sink.events()) >= 4 })
	want := []string{"run:consul:backup:failed", "run:consul:backup:ok", "run:consul:verify:ok", "fresh:consul::"}
	if got := sink.events(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v\nwant %v", got, want)
	}
	sink.mu.Lock()
	cursors := []uint64{sink.batches[0].Cursor.Index, sink.batches[1].Cursor.Index, sink.batches[2].Cursor.Index}
	sink.mu.Unlock()
	if cursors[0] != 1 || cursors[1] != 2 || cursors[2] != 3 {
		t.Fatalf("cursors %v", cursors)
	}
	e.clock.Advance(37 * time.Hour)
	waitFor(t, func() bool { return len(sink.events()) >= 5 })
	if got := sink.events()[4]; got != "stale:consul::" {
		t.Fatalf("after 37h: %s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A new source resumes after the cursor the pipeline committed.
	if err := e.st.InTx(ctx, func(tx *store.Tx) error { return tx.SetCursor(ctx, eventsCursor, 3, 0) }); err != nil {
		t.Fatal(err)
	}
	sink2 := &sinkLog{}
	wctx, cancel = context.WithCancel(ctx)
	go func() { done <- ev.Watch(wctx, sink2, look) }()
	waitFor(t, func() bool { return len(sink2.events()) >= 1 })
	if got := sink2.events(); len(got) != 1 || got[0] != "stale:consul::" {
		t.Fatalf("after a restart: %v", got)
	}
	cancel()
	<-done
	if look.seen == 0 || look.lost != 0 {
		t.Fatalf("lookout seen %d lost %d", look.seen, look.lost)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
