package backups

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/pgserver"
	"github.com/vigie/vigie/internal/snaparchive"
	"github.com/vigie/vigie/store"
)

// Verify proves a backup (the newest good one when id is ""): the stored
// objects hash to the manifest's SHA-256; a Consul or Nomad snapshot's
// own SHA256SUMS hold; a PostgreSQL dump restores into a scratch database
// on the target's verify server with exactly the tables and rows counted
// when it was dumped (the scratch database is dropped after). The result
// is kept beside the manifest.
func (s *Service) Verify(ctx context.Context, target, id, trigger string, report func(Progress)) (*Verification, error) {
	t, err := s.Target(target)
	if err != nil {
		return nil, err
	}
	r, err := s.begin(target, ActionVerify, trigger)
	if err != nil {
		return nil, err
	}
	defer s.end(target)
	run := store.BackupRun{Target: t.Name, Action: ActionVerify, Trigger: trigger}
	backups, _, err := s.catalog.list(ctx, t.Name)
	var b *Backup
	if err == nil {
		b, err = find(backups, id)
	}
	if err == nil {
		run.BackupID = b.ID
	}
	if run.ID, err = s.startRun(ctx, run, err); err != nil {
		return nil, err
	}
	stop := s.follow(target, r, report, progressEvery)
	v, err := s.verify(ctx, t, b, r)
	stop()
	took := s.clock.Now().Sub(r.started)
	v.Duration = took
	run.RawBytes = r.transfer.raw.n.Load()
	if err != nil {
		v.OK, v.Error = false, err.Error()
	}
	if b.Manifest != nil {
		if perr := s.cfg.Storage.PutJSON(ctx, s.layout.verification(b.Manifest), v); perr != nil && err == nil {
			err = fmt.Errorf("the backup verified, but the result could not be kept: %w", perr)
		}
	}
	s.record(ctx, run, err, took)
	zerolog.Ctx(ctx).Info().Str("target", t.Name).Str("backup", b.ID).Bool("ok", err == nil).Str("level", v.Level).
		Stringer("took", took.Round(time.Millisecond)).Msg("Backup verified")
	return v, err
}

// startRun records a run; a run that failed before it could start (the
// backup is not there) is recorded as failed at once.
func (s *Service) startRun(ctx context.Context, run store.BackupRun, before error) (int64, error) {
	id, err := s.store.StartBackupRun(ctx, run.Target, run.Action, run.Trigger, run.BackupID)
	if err != nil {
		return 0, fmt.Errorf("record the run: %w", err)
	}
	if before != nil {
		run.ID = id
		s.record(ctx, run, before, 0)
		return 0, before
	}
	return id, nil
}

func (s *Service) verify(ctx context.Context, t *Target, b *Backup, r *activeRun) (*Verification, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	v := &Verification{BackupID: b.ID, At: s.clock.Now().UTC(), Level: levelChecksum}
	if !b.Good() {
		return v, fmt.Errorf("backup %s is broken: %s", b.ID, b.Broken)
	}
	dir, err := s.runDir(t.Name, ActionVerify)
	if err != nil {
		return v, fmt.Errorf("work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	var details []string
	for _, o := range b.Manifest.Objects {
		s.setStage(r, "reading "+o.Key)
		switch {
		case o.Part == partSnapshot:
			v.Level = levelArchive
			detail, err := s.checkArchive(ctx, o, r.transfer)
			if err != nil {
				return v, err
			}
			details = append(details, detail)
		case o.Part == partDump && t.Verify != nil:
			v.Level = levelRestore
			detail, err := s.restoreCheck(ctx, t, b.Manifest, o, dir, r)
			if err != nil {
				return v, err
			}
			details = append(details, detail)
		default:
			if _, err := s.fetch(ctx, o, io.Discard, r.transfer); err != nil {
				return v, err
			}
		}
	}
	if t.Kind == KindPostgres && t.Verify == nil {
		details = append(details, "checksums only: no verify server is configured")
	}
	v.OK, v.Detail = true, strings.Join(details, "; ")
	return v, nil
}

// fetch streams a stored object, decompressed, into w, checking that what
// S3 returns hashes to the manifest's SHA-256 and decompresses whole.
func (s *Service) fetch(ctx context.Context, o Object, w io.Writer, tr *transfer) (int64, error) {
	rc, err := s.cfg.Storage.Open(ctx, o.Key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	hash := sha256.New()
	dec, err := zstd.NewReader(io.TeeReader(countingReader{rc, &tr.stored}, hash))
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	n, derr := io.Copy(w, countingReader{dec, &tr.raw})
	if errors.Is(derr, errArchiveRead) {
		return n, derr // the archive's reader stopped: its error says why
	}
	// Whatever the decoder left (it stops at the end of the frame, or at
	// damage) is hashed too: a checksum that does not match is the cause
	// to tell, before what it broke.
	if _, err := io.Copy(hash, rc); err != nil {
		return n, fmt.Errorf("%s: %w", o.Key, err)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != o.SHA256 {
		return n, fmt.Errorf("%s does not match its checksum (SHA-256 %s, the manifest says %s)", o.Key, got, o.SHA256)
	}
	if derr != nil {
		return n, fmt.Errorf("%s: %w", o.Key, derr)
	}
	if n != o.RawBytes {
		return n, fmt.Errorf("%s decompresses to %d bytes, the manifest says %d", o.Key, n, o.RawBytes)
	}
	return n, nil
}

// errArchiveRead ends a fetch whose archive reader stopped.
var errArchiveRead = errors.New("the archive reader stopped")

// checkArchive checks a snapshot: the gzipped tar's SHA256SUMS must hold
// for its other members, as "consul snapshot inspect" and Nomad check.
func (s *Service) checkArchive(ctx context.Context, o Object, tr *transfer) (string, error) {
	pr, pw := io.Pipe()
	fetched := make(chan error, 1)
	go func() { // owned here: ends when the fetch ends or the pipe is closed
		_, err := s.fetch(ctx, o, pw, tr)
		pw.CloseWithError(err)
		fetched <- err
	}()
	sum, aerr := snaparchive.Check(pr)
	pr.CloseWithError(errArchiveRead) // unblocks the fetch if the check stopped early
	ferr := <-fetched
	switch {
	case ferr != nil && !errors.Is(ferr, errArchiveRead):
		return "", ferr // a checksum that does not match explains the rest
	case aerr != nil:
		return "", fmt.Errorf("%s: %w", o.Key, aerr)
	}
	return fmt.Sprintf("snapshot archive: %s match SHA256SUMS (raft index %d)", strings.Join(sum.Members, ", "), sum.Index), nil
}

// restoreCheck restores one database dump into a scratch database on the
// verify server and compares its tables and rows with the manifest's.
func (s *Service) restoreCheck(ctx context.Context, t *Target, m *Manifest, o Object, dir string, r *activeRun) (string, error) {
	want, ok := m.database(o.Database)
	if !ok {
		return "", fmt.Errorf("the manifest has no row counts for database %q", o.Database)
	}
	file := workPath(dir, "restore.dump")
	if err := s.download(ctx, o, file, r.transfer); err != nil {
		return "", err
	}
	defer os.Remove(file)
	scratch := "vigie_verify_" + strings.ReplaceAll(t.Name, "-", "_") + "_" + strconv.FormatInt(s.clock.Now().Unix(), 10)
	s.setStage(r, "restoring "+o.Database+" into "+scratch)
	got, err := restoreInto(ctx, *t.Verify, t.Tools, file, scratch, dir, true, true)
	if err != nil {
		return "", err
	}
	var rows int64
	for _, c := range got {
		rows += c.Rows
	}
	if want.CountError != "" {
		return fmt.Sprintf("%s restored on %s: %d tables, %d rows, not compared (the dump's rows were not counted: %s)",
			o.Database, t.Verify, len(got), rows, want.CountError), nil
	}
	if err := compareCounts(want.Tables, got); err != nil {
		return "", fmt.Errorf("database %s restored, but %w", o.Database, err)
	}
	return fmt.Sprintf("%s restored on %s: %d tables, %d rows, as dumped", o.Database, t.Verify, len(got), rows), nil
}

// database returns the facts of one dumped database.
func (m *Manifest) database(name string) (DatabaseFacts, bool) {
	if m.Source.Postgres == nil {
		return DatabaseFacts{}, false
	}
	for _, d := range m.Source.Postgres.Databases {
		if d.Name == name {
			return d, true
		}
	}
	return DatabaseFacts{}, false
}

// download writes an object, decompressed and checked, to a file.
func (s *Service) download(ctx context.Context, o Object, file string, tr *transfer) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	_, err = s.fetch(ctx, o, w, tr)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// restoreInto restores a dump file into database with pg_restore -j,
// creating it first when create is set (and dropping it after when drop
// is, for a scratch database), and counts its tables' rows.
func restoreInto(ctx context.Context, srv pgserver.Server, tools Tools, file, database, dir string, create, drop bool) ([]TableCount, error) {
	admin, err := srv.Connect(ctx, "postgres")
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if create {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize()); err != nil {
			return nil, fmt.Errorf("PostgreSQL %s: create database %s: %w", srv, database, err)
		}
	}
	if drop {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if _, err := admin.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{database}.Sanitize()+" WITH (FORCE)"); err != nil {
				zerolog.Ctx(ctx).Error().Err(err).Str("database", database).Msg("Cannot drop the scratch database of a verification")
			}
		}()
	}
	if err := pgRestore(ctx, srv, tools, admin, file, database, dir); err != nil {
		return nil, err
	}
	conn, err := srv.Connect(ctx, database)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only
	return countRows(ctx, tx)
}

// restoreJobs is pg_restore's parallelism.
const restoreJobs = 2

// pgRestore runs pg_restore -j into database. A superuser restores owners
// and privileges as dumped; another user restores without them (it could
// not set them), the objects then belong to it.
func pgRestore(ctx context.Context, srv pgserver.Server, tools Tools, admin *pgx.Conn, file, database, dir string) error {
	var super bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return fmt.Errorf("PostgreSQL %s: %w", srv, err)
	}
	env, err := srv.ToolEnv(dir)
	if err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	args := []string{"--host", srv.Host, "--port", strconv.Itoa(srv.Port), "--username", srv.User, "--dbname", database,
		"--jobs", strconv.Itoa(restoreJobs), "--exit-on-error", "--no-password"}
	if !super {
		args = append(args, "--no-owner", "--no-privileges")
	}
	out, err := startTool(ctx, tools.pgRestore(), append(args, file), toolEnv(env))
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, out)
	out.Close()
	return err
}

// compareCounts says how a restore differs from what was dumped.
func compareCounts(want, got []TableCount) error {
	index := func(ts []TableCount) map[string]int64 {
		m := map[string]int64{}
		for _, t := range ts {
			m[t.Schema+"."+t.Name] = t.Rows
		}
		return m
	}
	w, g := index(want), index(got)
	var diffs []string
	for name, rows := range w {
		switch n, ok := g[name]; {
		case !ok:
			diffs = append(diffs, name+" is missing")
		case n != rows:
			diffs = append(diffs, fmt.Sprintf("%s has %d rows, %d were dumped", name, n, rows))
		}
	}
	for name := range g {
		if _, ok := w[name]; !ok {
			diffs = append(diffs, name+" was not dumped")
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		if len(diffs) > 5 {
			diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
		}
		return fmt.Errorf("it differs from the dump: %s", strings.Join(diffs, "; "))
	}
	return nil
}
