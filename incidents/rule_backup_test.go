package incidents

import (
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

func backupRun(action, outcome string, run int64, errText, detail string) watchers.Event {
	return watchers.Event{Source: "backups", Topic: watchers.TopicBackup, Type: watchers.BackupRun, Index: uint64(run),
		Backup: &watchers.Backup{Target: "main-db", Kind: "postgres", Action: action, Outcome: outcome, Trigger: "schedule",
			RunID: run, BackupID: "main-db-20261126T033000Z", Error: errText, Detail: detail}}
}

// A failed backup is a critical incident with pg_dump's standard error in
// its thread, resolved by the next good backup; a failed verification
// and a stale target likewise, each by its own good news.
func TestBackupIncidents(t *testing.T) {
	f := newFixture(t, builtinRules(t))
	stderr := "pg_dump: error: connection to server at \"10.0.0.5\", port 5432 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
	f.consume(backupRun("backup", "failed", 1, "pg_dump failed (exit status 1): \tIs the server running on that host and accepting TCP/IP connections?", stderr))
	roots, _, threads := f.messages("!ops")
	if len(roots) != 1 || !strings.Contains(roots[0].Plain, "🔴 CRITICAL · backup of main-db failed") || !strings.Contains(roots[0].Plain, "pg_dump failed (exit status 1)") {
		t.Fatalf("incident %v", roots)
	}
	if len(threads) != 1 || !strings.Contains(threads[0].Plain, "Connection refused") || !strings.Contains(threads[0].HTML, "<pre>") {
		t.Fatalf("thread %v", threads)
	}
	// The same run told twice (a redelivery) counts once.
	f.consume(backupRun("backup", "failed", 1, "pg_dump failed", stderr))
	if in := f.incident("backup/main-db"); in.Events != 1 {
		t.Fatalf("events %d", in.Events)
	}
	f.consume(backupRun("verify", "failed", 2, "app has 499 rows in public.customers, 500 were dumped", ""))
	f.clock.Advance(time.Hour)
	f.consume(backupRun("backup", "ok", 3, "", ""))
	if in := f.incident("backup/main-db"); in.State != store.IncidentResolved || !strings.Contains(in.Resolution, "stored") {
		t.Fatalf("after a good backup: %+v", in)
	}
	if in := f.incident("backup-verify/main-db"); in.State == store.IncidentResolved {
		t.Fatal("a good backup resolved a failed verification")
	}
	f.consume(backupRun("verify", "ok", 4, "", ""))
	if in := f.incident("backup-verify/main-db"); in.State != store.IncidentResolved {
		t.Fatalf("after a good verification: %+v", in)
	}

	stale := watchers.Event{Source: "backups", Topic: watchers.TopicBackup, Type: watchers.BackupStale, Time: f.clock.Now(),
		Backup: &watchers.Backup{Target: "main-db", MaxAge: 36 * time.Hour, BackupID: "main-db-20261124T033000Z", LastGood: f.clock.Now().Add(-40 * time.Hour)}}
	f.consume(stale)
	in := f.incident("backup-age/main-db")
	if in.State != store.IncidentOpen || !strings.Contains(in.Reason, "main-db-20261124T033000Z, ended 40h ago (max_age 36h)") {
		t.Fatalf("stale %+v", in)
	}
	fresh := stale
	fresh.Type = watchers.BackupFresh
	f.consume(fresh)
	if in := f.incident("backup-age/main-db"); in.State != store.IncidentResolved {
		t.Fatalf("fresh %+v", in)
	}
}
