package backups

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/store"
)

// A run due while Vigie was down runs once when it starts, not once per
// missed slot; the report's catch-up comes from its own record; a target
// never run is not caught up on.
func TestSchedulerCatchesUpOnce(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{
			{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Schedule: "@daily", Retention: Retention{Last: 3}},
			{Name: "fresh", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Schedule: "@daily", Retention: Retention{Last: 3}},
		}
	})
	ctx := t.Context()
	// The last backup of consul started three days ago (the clock is the service's).
	id, err := e.st.StartBackupRun(ctx, "consul", ActionBackup, TriggerSchedule, "consul-20261127T000000Z")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.FinishBackupRun(ctx, store.BackupRun{ID: id, Outcome: store.RunOK}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(3 * 24 * time.Hour)
	reports := make(chan struct{}, 10)
	report := Job{Spec: "0 8 * * *",
		Run:     func(context.Context) error { reports <- struct{}{}; return nil },
		LastRun: func(context.Context) (time.Time, error) { return e.clock.Now().Add(-48 * time.Hour), nil }}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- NewScheduler(e.svc, report).Run(sctx) }()
	waitFor(t, func() bool {
		runs, _ := e.st.LastBackupRuns(ctx, "consul", ActionBackup, 5)
		return len(runs) == 2 && runs[0].Outcome == store.RunOK
	})
	select {
	case <-reports:
	case <-time.After(10 * time.Second):
		t.Fatal("the missed report was not posted")
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong second catch-up
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	runs, _ := e.st.LastBackupRuns(ctx, "consul", ActionBackup, 5)
	if len(runs) != 2 || runs[0].Trigger != TriggerCatchUp {
		t.Fatalf("runs %+v", runs)
	}
	if fresh, _ := e.st.LastBackupRuns(ctx, "fresh", ActionBackup, 5); len(fresh) != 0 {
		t.Fatalf("a target never run was caught up on: %+v", fresh)
	}
	if len(reports) != 0 {
		t.Fatal("the report was caught up on twice")
	}
}

// Garage's admin API v2, and v1 for Garage 1.x (which answers 404 to v2).
func TestGarageStatus(t *testing.T) {
	health := `{"status":"degraded","knownNodes":3,"connectedNodes":2,"storageNodes":3,"storageNodesOk":2,"partitions":256,"partitionsQuorum":256,"partitionsAllOk":0}`
	bucket := `{"id":"b1","globalAliases":["backups"],"objects":42,"bytes":1048576,"unfinishedUploads":1}`
	for _, v2 := range []bool{true, false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer admin-token" {
				http.Error(w, "Forbidden", http.StatusForbidden)
				return
			}
			switch {
			case v2 && r.URL.Path == "/v2/GetClusterHealth", !v2 && r.URL.Path == "/v1/health":
				w.Write([]byte(health))
			case (v2 && r.URL.Path == "/v2/GetBucketInfo" || !v2 && r.URL.Path == "/v1/bucket") && r.URL.Query().Get("globalAlias") == "backups":
				w.Write([]byte(bucket))
			default:
				http.NotFound(w, r)
			}
		}))
		g := &Garage{Endpoint: srv.URL, Token: "admin-token"}
		st, err := g.Status(t.Context(), "backups")
		want := "v1"
		if v2 {
			want = "v2"
		}
		if err != nil || st.API != want || st.Health != "degraded" || st.Objects != 42 || st.StorageNodesOK != 2 || st.UnfinishedUploads != 1 {
			t.Errorf("v2=%v: %+v %v", v2, st, err)
		}
		g.Token = "wrong"
		if _, err := g.Status(t.Context(), "backups"); err == nil || !strings.Contains(err.Error(), "refused the token") {
			t.Errorf("wrong token: %v", err)
		}
		srv.Close()
	}
}
