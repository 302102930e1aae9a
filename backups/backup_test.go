package backups

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/store"
)

// A PostgreSQL backup lands in S3 under the documented layout with its
// manifest written last; it verifies by a real restore on the verify
// server, and restores into a new database with the same rows.
func TestPostgresBackupVerifyRestore(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	var reported []Progress
	m, err := e.svc.Backup(ctx, "main-db", "@alice:example.org", func(p Progress) { reported = append(reported, p) })
	if err != nil {
		t.Fatal(err)
	}
	wantKey := "vigie/main-db/2026-11-30/main-db-20261130T033000Z.dump.zst"
	if m.ID != "main-db-20261130T033000Z" || len(m.Objects) != 1 || m.Objects[0].Key != wantKey || m.Objects[0].Database != "app" {
		t.Fatalf("manifest %+v", m)
	}
	if m.RawBytes == 0 || m.StoredBytes == 0 || m.StoredBytes >= m.RawBytes || m.VigieVersion != "test" {
		t.Fatalf("sizes or version: %+v", m)
	}
	pf := m.Source.Postgres
	if pf == nil || !strings.HasPrefix(pf.ServerVersion, "15") || len(pf.Databases) != 1 || !strings.Contains(pf.PgDumpVersion, "pg_dump (PostgreSQL) 15") {
		t.Fatalf("facts %+v", pf)
	}
	counted := map[string]int64{}
	for _, tc := range pf.Databases[0].Tables {
		counted[tc.Schema+"."+tc.Name] = tc.Rows
	}
	if !maps.Equal(counted, seededRows) {
		t.Fatalf("rows counted at dump time %v, want %v", counted, seededRows)
	}

	// S3 is the source of truth: the listing is the manifest's.
	list, err := e.svc.List(ctx, "main-db")
	if err != nil || len(list) != 1 || !list[0].Good() || list[0].Manifest.Objects[0].SHA256 != m.Objects[0].SHA256 {
		t.Fatalf("list %+v %v", list, err)
	}
	runs, err := e.st.LastBackupRuns(ctx, "main-db", ActionBackup, 5)
	if err != nil || len(runs) != 1 || runs[0].Outcome != store.RunOK || runs[0].BackupID != m.ID || runs[0].StoredBytes != m.StoredBytes {
		t.Fatalf("runs %+v %v", runs, err)
	}

	v, err := e.svc.Verify(ctx, "main-db", "", "schedule", nil)
	if err != nil || !v.OK || v.Level != levelRestore || !strings.Contains(v.Detail, "5 tables, 4000 rows, as dumped") {
		t.Fatalf("verification %+v %v", v, err)
	}
	if leftover := e.rows(t, "postgres"); len(leftover) != 0 {
		t.Fatalf("tables left in postgres: %v", leftover)
	}
	list, _ = e.svc.List(ctx, "main-db")
	if list[0].Verification == nil || !list[0].Verification.OK {
		t.Fatalf("the verification is not kept beside the manifest: %+v", list[0])
	}

	plan, snap, err := e.svc.PlanRestore(ctx, "main-db", "", "", "")
	if err != nil || snap != nil || plan.Into != "app_restored_20261130" || plan.Rows() != 4000 || plan.Existing {
		t.Fatalf("plan %+v %v", plan, err)
	}
	res, err := e.svc.Restore(ctx, plan, "@alice:example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.rows(t, "app_restored_20261130"); !maps.Equal(got, seededRows) || len(res.Tables) != 5 {
		t.Fatalf("restored rows %v", got)
	}
	// Never over a database that holds tables.
	if _, _, err := e.svc.PlanRestore(ctx, "main-db", "", "", "app"); err == nil || !strings.Contains(err.Error(), "database app already exists") {
		t.Fatalf("restore into app: %v", err)
	}
	if _, err := e.svc.Restore(ctx, &RestorePlan{Target: "main-db", Backup: plan.Backup, Object: plan.Object, Facts: plan.Facts, Into: "app", Server: e.srv}, "@x", nil); err == nil ||
		!strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a plan made stale by a new database: %v", err)
	}
	// An empty database is a valid place to restore into.
	e.pg.Exec(t, "postgres", "CREATE DATABASE empty_one")
	plan, _, err = e.svc.PlanRestore(ctx, "main-db", m.ID, "", "empty_one")
	if err != nil || !plan.Existing {
		t.Fatalf("plan into an empty database: %+v %v", plan, err)
	}
	if _, err := e.svc.Restore(ctx, plan, "@alice:example.org", nil); err != nil {
		t.Fatal(err)
	}
	if got := e.rows(t, "empty_one"); !maps.Equal(got, seededRows) {
		t.Fatalf("restored rows %v", got)
	}
	if entries, _ := os.ReadDir(e.svc.cfg.WorkDir); len(entries) != 0 {
		t.Fatalf("work directory not emptied: %v", entries)
	}
}

// databases = ["*"] dumps every database and the roles.
func TestPostgresAllDatabases(t *testing.T) {
	e := newEnv(t, func(e *env, targets []Target) []Target {
		targets[0].Databases = []string{"*"}
		return targets
	})
	e.pg.Exec(t, "postgres", "CREATE DATABASE other")
	e.pg.Exec(t, "other", "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 10)")
	m, err := e.svc.Backup(t.Context(), "main-db", "schedule", nil)
	if err != nil {
		t.Fatal(err)
	}
	var exts []string
	for _, o := range m.Objects {
		exts = append(exts, strings.TrimPrefix(filepath.Base(o.Key), m.ID+"."))
	}
	want := []string{"globals.sql.zst", "app.dump.zst", "other.dump.zst", "postgres.dump.zst"}
	if !slices.Equal(exts, want) {
		t.Fatalf("objects %v, want %v", exts, want)
	}
	for _, db := range m.Source.Postgres.Databases { // "postgres" has no table: a small archive
		if db.CountError != "" || (db.Name == "postgres") != (len(db.Tables) == 0) {
			t.Fatalf("rows of %s: %+v", db.Name, db)
		}
	}
	if _, _, err := e.svc.PlanRestore(t.Context(), "main-db", "", "", ""); err == nil || !strings.Contains(err.Error(), "say which with db=<name>") {
		t.Fatalf("restore without db=: %v", err)
	}
	plan, _, err := e.svc.PlanRestore(t.Context(), "main-db", "", "other", "")
	if err != nil || plan.Into != "other_restored_20261130" || plan.Rows() != 10 {
		t.Fatalf("plan %+v %v", plan, err)
	}
	v, err := e.svc.Verify(t.Context(), "main-db", "", "@bob", nil)
	if err != nil || !v.OK {
		t.Fatalf("verify %+v %v", v, err)
	}
}

// What cannot be dumped fails before anything is stored, naming why.
func TestPostgresRefusals(t *testing.T) {
	e := newEnv(t, func(e *env, targets []Target) []Target {
		missing := targets[0]
		missing.Name, missing.Databases = "missing", []string{"nope"}
		wrong := targets[0]
		wrong.Name, wrong.Postgres.Password = "wrong-password", "not-it"
		old := targets[0]
		old.Name = "old-pg-dump"
		script := filepath.Join(t.TempDir(), "pg_dump")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		old.Tools.PgDump = script
		absent := targets[0]
		absent.Name, absent.Tools.PgDump = "no-pg-dump", "/nonexistent/pg_dump"
		return append(targets, missing, wrong, old, absent)
	})
	for target, want := range map[string]string{
		"missing":        `has no database "nope"`,
		"wrong-password": "password authentication failed",
		"old-pg-dump":    "pg_dump (PostgreSQL) 9.6.24 is older than the server (PostgreSQL 15",
		"no-pg-dump":     "/nonexistent/pg_dump not found",
	} {
		if _, err := e.svc.Backup(t.Context(), target, "schedule", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", target, err, want)
		}
		runs, _ := e.st.LastBackupRuns(t.Context(), target, ActionBackup, 1)
		if len(runs) != 1 || runs[0].Outcome != store.RunFailed || !strings.Contains(runs[0].Error, want) {
			t.Errorf("%s: runs %+v", target, runs)
		}
	}
	if objects, err := e.svc.cfg.Storage.List(t.Context(), ""); err != nil || len(objects) != 0 {
		t.Fatalf("stored %v %v", objects, err)
	}
	if err := CheckPgDump(t.Context(), e.tools, e.srv, "app"); err != nil {
		t.Fatalf("the real pg_dump: %v", err)
	}
}

// Consul and Nomad snapshots are streamed, kept, and verified by their
// own SHA256SUMS; what the servers refuse fails with their reason.
func TestSnapshotBackups(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	nomad := fakenomad.New(t, fakenomad.Config{})
	dev := fakenomad.New(t, fakenomad.Config{DevAgent: true})
	e := newEnv(t, func(e *env, targets []Target) []Target {
		return []Target{
			{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 3}},
			{Name: "nomad", Kind: KindNomad, Cluster: cluster("Nomad", nomad.URL), Retention: Retention{Last: 3}},
			{Name: "nomad-dev", Kind: KindNomad, Cluster: cluster("Nomad", dev.URL), Retention: Retention{Last: 3}},
		}
	})
	ctx := t.Context()
	for _, target := range []string{"consul", "nomad"} {
		m, err := e.svc.Backup(ctx, target, "schedule", nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if len(m.Objects) != 1 || !strings.HasSuffix(m.Objects[0].Key, ".snap.zst") || m.Source.Snapshot == nil || m.Source.Snapshot.Leader == "" {
			t.Fatalf("%s: manifest %+v", target, m)
		}
		v, err := e.svc.Verify(ctx, target, "", "schedule", nil)
		if err != nil || !v.OK || v.Level != levelArchive || !strings.Contains(v.Detail, "meta.json, state.bin match SHA256SUMS") {
			t.Fatalf("%s: verification %+v %v", target, v, err)
		}
		_, how, err := e.svc.PlanRestore(ctx, target, "", "", "")
		if err != nil || how == nil || !strings.Contains(how.Command, "snapshot restore") || !strings.Contains(how.Command, m.Objects[0].Key) {
			t.Fatalf("%s: restore instructions %+v %v", target, how, err)
		}
	}
	if m, _ := e.svc.List(ctx, "consul"); m[0].Manifest.Source.Snapshot.Index != fakeconsul.SnapshotIndex {
		t.Fatalf("consul index %d", m[0].Manifest.Source.Snapshot.Index)
	}
	if _, err := e.svc.Backup(ctx, "nomad-dev", "schedule", nil); err == nil || !strings.Contains(err.Error(), "a Nomad dev agent keeps raft in memory") {
		t.Fatalf("dev agent: %v", err)
	}

	// A snapshot the server sends damaged fails its backup: nothing kept.
	damaged := fakeconsul.Snapshot()
	damaged[len(damaged)-40] ^= 0xff // inside the gzip stream's last block
	consul.SetSnapshot(damaged)
	e.clock.Advance(time.Hour)
	if _, err := e.svc.Backup(ctx, "consul", "schedule", nil); err == nil || !strings.Contains(err.Error(), "sent a damaged snapshot") {
		t.Fatalf("a damaged snapshot: %v", err)
	}
	if list, _ := e.svc.List(ctx, "consul"); len(list) != 1 {
		t.Fatalf("a damaged snapshot was kept: %+v", list)
	}
	// A stored object damaged in S3 (same size, other bytes) fails its
	// verification on the checksum.
	list, _ := e.svc.List(ctx, "consul")
	obj := list[0].Manifest.Objects[0]
	e.put(t, obj.Key, strings.Repeat("x", int(obj.StoredBytes)))
	v, err := e.svc.Verify(ctx, "consul", "", "schedule", nil)
	if err == nil || v.OK || !strings.Contains(err.Error(), "does not match its checksum") {
		t.Fatalf("verification of a damaged object: %+v %v", v, err)
	}
}
