package backups

import (
	"context"
	"fmt"
	"os"
	"path"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/store"
)

// RestorePlan is a previewed restore of a PostgreSQL backup into a new
// database of the target's own server.
type RestorePlan struct {
	Target   string
	Backup   *Backup
	Object   Object        // the dump restored
	Facts    DatabaseFacts // what it held when dumped
	Into     string        // the database restored into
	Server   pgserver.Server
	Existing bool // Into exists, empty: restored into as it is
}

// Rows is the number of rows the dump held.
func (p RestorePlan) Rows() int64 {
	var n int64
	for _, t := range p.Facts.Tables {
		n += t.Rows
	}
	return n
}

// SnapshotRestore is how an operator restores a Consul or Nomad snapshot
// by hand: those are not restored from the chat.
type SnapshotRestore struct {
	Backup  *Backup
	Object  Object
	Command string // the exact commands to run
}

// PlanRestore checks a restore without making it: the backup (the newest
// good one when id is ""), the database of a multi-database backup, and
// that into is new (default <database>_restored_<date>) or empty. For a
// Consul or Nomad target it returns the commands to run by hand instead.
func (s *Service) PlanRestore(ctx context.Context, target, id, database, into string) (*RestorePlan, *SnapshotRestore, error) {
	t, err := s.Target(target)
	if err != nil {
		return nil, nil, err
	}
	backups, _, err := s.catalog.list(ctx, t.Name)
	if err != nil {
		return nil, nil, err
	}
	b, err := find(backups, id)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.Name, err)
	}
	if !b.Good() {
		return nil, nil, fmt.Errorf("backup %s is broken: %s", b.ID, b.Broken)
	}
	if t.Kind != KindPostgres {
		return nil, s.snapshotRestore(t, b), nil
	}
	var dumps []Object
	for _, o := range b.Manifest.Objects {
		if o.Part == partDump && (database == "" || o.Database == database) {
			dumps = append(dumps, o)
		}
	}
	switch {
	case len(dumps) == 0 && database != "":
		return nil, nil, fmt.Errorf("backup %s has no database %q (it has %s)", b.ID, database, strings.Join(b.Manifest.databases(), ", "))
	case len(dumps) > 1:
		return nil, nil, fmt.Errorf("backup %s holds several databases (%s): say which with db=<name>", b.ID, strings.Join(b.Manifest.databases(), ", "))
	case len(dumps) == 0:
		return nil, nil, fmt.Errorf("backup %s holds no database dump", b.ID)
	}
	o := dumps[0]
	facts, _ := b.Manifest.database(o.Database)
	if into == "" {
		into = o.Database + "_restored_" + s.clock.Now().UTC().Format("20060102")
	}
	p := &RestorePlan{Target: t.Name, Backup: b, Object: o, Facts: facts, Into: into, Server: t.Postgres}
	if p.Existing, err = checkTarget(ctx, t.Postgres, into); err != nil {
		return nil, nil, err
	}
	return p, nil, nil
}

// databases names the databases a backup holds.
func (m *Manifest) databases() []string {
	var out []string
	for _, o := range m.Objects {
		if o.Part == partDump {
			out = append(out, o.Database)
		}
	}
	return out
}

// checkTarget refuses a database that exists and holds tables; it says
// whether it exists (empty).
func checkTarget(ctx context.Context, srv pgserver.Server, database string) (bool, error) {
	admin, err := srv.Connect(ctx, "postgres")
	if err != nil {
		return false, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return false, fmt.Errorf("PostgreSQL %s: %w", srv, err)
	}
	if !exists {
		return false, nil
	}
	conn, err := srv.Connect(ctx, database)
	if err != nil {
		return true, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tables, err := userTables(ctx, conn)
	if err != nil {
		return true, fmt.Errorf("PostgreSQL %s, database %s: %w", srv, database, err)
	}
	if len(tables) > 0 {
		return true, fmt.Errorf("database %s already exists on %s and holds %d tables: a restore only goes into a new or empty database (choose another with into=<name>)", database, srv, len(tables))
	}
	return true, nil
}

// RestoreResult is what a restore gave.
type RestoreResult struct {
	Plan   *RestorePlan
	Tables []TableCount
	Took   time.Duration
}

// Restore applies a plan: the dump is downloaded and checked, the
// database created (unless it exists, empty), pg_restore -j fills it, and
// its rows are counted against the dump's.
func (s *Service) Restore(ctx context.Context, p *RestorePlan, trigger string, report func(Progress)) (*RestoreResult, error) {
	t, err := s.Target(p.Target)
	if err != nil {
		return nil, err
	}
	r, err := s.begin(t.Name, ActionRestore, trigger)
	if err != nil {
		return nil, err
	}
	defer s.end(t.Name)
	run := store.BackupRun{Target: t.Name, Action: ActionRestore, Trigger: trigger, BackupID: p.Backup.ID}
	if run.ID, err = s.startRun(ctx, run, nil); err != nil {
		return nil, err
	}
	stop := s.follow(t.Name, r, report, progressEvery)
	res, err := s.restore(ctx, t, p, r)
	stop()
	took := s.clock.Now().Sub(r.started)
	run.RawBytes = r.transfer.raw.n.Load()
	s.record(ctx, run, err, took)
	if err != nil {
		return nil, err
	}
	res.Took = took
	zerolog.Ctx(ctx).Info().Str("target", t.Name).Str("backup", p.Backup.ID).Str("into", p.Into).Stringer("took", took.Round(time.Millisecond)).Msg("Backup restored")
	return res, nil
}

func (s *Service) restore(ctx context.Context, t *Target, p *RestorePlan, r *activeRun) (*RestoreResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	// The database may have been created since the preview.
	existing, err := checkTarget(ctx, p.Server, p.Into)
	if err != nil {
		return nil, err
	}
	dir, err := s.runDir(t.Name, ActionRestore)
	if err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	s.setStage(r, "downloading "+path.Base(p.Object.Key))
	file := workPath(dir, "restore.dump")
	if err := s.download(ctx, p.Object, file, r.transfer); err != nil {
		return nil, err
	}
	s.setStage(r, "restoring into "+p.Into)
	got, err := restoreInto(ctx, p.Server, t.Tools, file, p.Into, dir, !existing, false)
	if err != nil {
		return nil, err
	}
	if p.Facts.CountError == "" {
		if err := compareCounts(p.Facts.Tables, got); err != nil {
			return nil, fmt.Errorf("restored into %s, but %w", p.Into, err)
		}
	}
	return &RestoreResult{Plan: p, Tables: got}, nil
}

// snapshotRestore gives the commands restoring a snapshot by hand: fetch
// the object, check it against the manifest's SHA-256, decompress, restore.
func (s *Service) snapshotRestore(t *Target, b *Backup) *SnapshotRestore {
	o := b.Manifest.Objects[0]
	stored := path.Base(o.Key)
	file := strings.TrimSuffix(stored, ".zst")
	restore := "consul snapshot restore " + file
	if t.Kind == KindNomad {
		restore = "nomad operator snapshot restore " + file
	}
	cmds := []string{
		fmt.Sprintf("aws --endpoint-url %s s3 cp s3://%s/%s %s", s.cfg.Storage.Endpoint(), s.cfg.Storage.Bucket(), o.Key, stored),
		fmt.Sprintf("echo '%s  %s' | sha256sum -c", o.SHA256, stored),
		"zstd -d " + stored,
		restore,
	}
	return &SnapshotRestore{Backup: b, Object: o, Command: strings.Join(cmds, "\n")}
}
