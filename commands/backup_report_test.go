package commands

import (
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

func goodBackup(id string, started time.Time, took time.Duration, stored int64) *backups.Backup {
	return &backups.Backup{ID: id, Manifest: &backups.Manifest{ID: id, Started: started, Ended: started.Add(took), StoredBytes: stored}}
}

// The report: one row per target, a dump that shrank flagged, failures
// and broken backups told below, Garage's figures, everything escaped.
func TestRenderBackupReport(t *testing.T) {
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	db := &backups.Target{Name: "main-db", Kind: "postgres", Schedule: "30 3 * * *"}
	consul := &backups.Target{Name: "consul", Kind: "consul", Schedule: "0 */6 * * *"}
	nomad := &backups.Target{Name: "nomad", Kind: "nomad"}
	rep := backups.Report{At: now, Bucket: "backups", Targets: []backups.TargetStatus{
		{Target: db, LastGood: goodBackup("main-db-20261130T033000Z", now.Add(-270*time.Minute), 3*time.Minute, 400<<20),
			Previous: goodBackup("main-db-20261129T033000Z", now.Add(-1710*time.Minute), 3*time.Minute, 900<<20),
			Verified: &backups.Verification{At: now.Add(-2 * time.Hour), OK: true, Level: "restore"}, NextBackup: now.Add(19*time.Hour + 30*time.Minute)},
		{Target: consul, LastGood: goodBackup("consul-20261129T000000Z", now.Add(-32*time.Hour), 2*time.Second, 4096), Broken: 1,
			LastRun:    &store.BackupRun{Started: now.Add(-2 * time.Hour), Outcome: store.RunFailed, Error: "Consul at http://c:8500 answered 500: <b>No cluster leader</b>"},
			NextBackup: now.Add(4 * time.Hour)},
		{Target: nomad},
	}, Garage: &backups.GarageStatus{API: "v2", Health: "healthy", StorageNodes: 3, StorageNodesOK: 3, Partitions: 256, PartitionsAllOK: 256, Objects: 120, Bytes: 3 << 30}}
	m := render.Render(RenderBackupReport(rep))
	for _, want := range []string{
		"⚠️ Backups: attention needed · 2026-11-30 08:00 UTC",
		"main-db", "400 MiB (-56%) ⚠️", "✅ 2h ago", "in 19h", "✅ ok",
		"consul", "❌ failed", "on demand",
		"main-db: the last backup is 56% smaller than the one before",
		"consul: the last backup run (11-30 06:00) failed: Consul at http://c:8500 answered 500: <b>No cluster leader</b>",
		"consul: 1 broken backup(s) listed",
		"Garage (admin API v2): cluster healthy, 3/3 storage nodes, 256/256 partitions all OK; bucket backups: 120 objects, 3.00 GiB",
	} {
		if !strings.Contains(m.Plain, want) {
			t.Errorf("report lacks %q:\n%s", want, m.Plain)
		}
	}
	if strings.Contains(m.HTML, "<b>No cluster leader</b>") || !strings.Contains(m.HTML, "&lt;b&gt;No cluster leader") || !strings.Contains(m.HTML, "<table>") {
		t.Errorf("HTML:\n%s", m.HTML)
	}
	if m := render.Render(RenderBackupReport(backups.Report{At: now, Targets: []backups.TargetStatus{{Target: nomad}}})); !strings.Contains(m.Plain, "✅ Backups: all good") {
		t.Errorf("an on-demand target never backed up is no alarm:\n%s", m.Plain)
	}
}

func TestTook(t *testing.T) {
	for d, want := range map[time.Duration]string{850 * time.Millisecond: "850ms", 42 * time.Second: "42s", 192 * time.Second: "3m12s", 64 * time.Minute: "1h04m"} {
		if got := took(d); got != want {
			t.Errorf("took(%s) = %q, want %q", d, got, want)
		}
	}
}
