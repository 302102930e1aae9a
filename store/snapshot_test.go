package store

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openCopy opens a snapshot read-only, leaving it as it is.
func openCopy(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// A snapshot is a private, self-contained, intact copy with the schema
// version and the rows, and never overwrites a file.
func TestSnapshotTo(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	for i := range 100 {
		if err := s.SetValue(ctx, fmt.Sprint("key", i), fmt.Sprint("value", i)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := s.SnapshotTo(ctx, path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot mode %v, %v; want 0600", fi.Mode(), err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("the snapshot has a %s file: %v", suffix, err)
		}
	}
	db := openCopy(t, path)
	var check string
	var version, rows int
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check %q, %v", check, err)
	}
	latest, err := LatestSchemaVersion()
	if err != nil || latest < 8 {
		t.Fatalf("latest schema version %d, %v", latest, err)
	}
	if err := db.QueryRow("PRAGMA user_version").Scan(&version); err != nil || version != latest {
		t.Fatalf("snapshot schema version %d, %v; want %d", version, err, latest)
	}
	if err := db.QueryRow("SELECT count(*) FROM kv WHERE value LIKE 'value%'").Scan(&rows); err != nil || rows != 100 {
		t.Fatalf("snapshot has %d rows, %v", rows, err)
	}

	if err := s.SnapshotTo(ctx, path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("snapshot over an existing file: %v", err)
	}
	if err := s.SnapshotTo(ctx, filepath.Join(t.TempDir(), "missing", "copy.db")); err == nil {
		t.Fatal("snapshot into a missing directory succeeded")
	}
}

// Taken while a writer commits, a snapshot holds a prefix of its commits
// (each whole) and the writer is not held up until the copy ends.
func TestSnapshotWhileWriting(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	// Some volume, so that the copy takes a while.
	msgs := make([]OutMessage, 2000)
	for i := range msgs {
		msgs[i] = OutMessage{Transport: "matrix", Room: "!r", Plain: fmt.Sprintf("%04d %0900d", i, i), HTML: "x"}
	}
	for range 10 {
		if _, err := s.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg          sync.WaitGroup
		mu          sync.Mutex
		during      int // commits that returned while the snapshot ran
		done        bool
		snapshotErr error
	)
	path := filepath.Join(t.TempDir(), "copy.db")
	wg.Go(func() {
		err := s.SnapshotTo(ctx, path)
		mu.Lock()
		snapshotErr, done = err, true
		mu.Unlock()
	})
	n := 0
	for ; ; n++ {
		mu.Lock()
		finished := done
		mu.Unlock()
		if finished {
			break
		}
		// Two rows per transaction: a copy with one and not the other
		// would be torn.
		err := s.InTx(ctx, func(tx *Tx) error {
			_, err := tx.Enqueue(ctx, OutMessage{Transport: "t", Room: fmt.Sprint(n), Plain: "a"}, OutMessage{Transport: "t", Room: fmt.Sprint(n), Plain: "b"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if !done {
			during++
		}
		mu.Unlock()
	}
	wg.Wait()
	if snapshotErr != nil {
		t.Fatal(snapshotErr)
	}
	db := openCopy(t, path)
	var rows, rooms int
	if err := db.QueryRow("SELECT count(*), count(DISTINCT room) FROM outbox WHERE transport = 't'").Scan(&rows, &rooms); err != nil {
		t.Fatal(err)
	}
	if rows != 2*rooms || rooms > n {
		t.Fatalf("the snapshot holds %d rows of %d transactions (of %d committed): torn", rows, rooms, n)
	}
	var maxRoom sql.NullInt64
	if err := db.QueryRow("SELECT max(CAST(room AS INTEGER)) FROM outbox WHERE transport = 't'").Scan(&maxRoom); err != nil {
		t.Fatal(err)
	}
	if maxRoom.Valid && int(maxRoom.Int64) != rooms-1 {
		t.Fatalf("the snapshot holds %d transactions up to number %d: not a prefix", rooms, maxRoom.Int64)
	}
	t.Logf("%d transactions committed while the snapshot ran, %d of them in it", during, rooms)
	// A writer held up by the copy would get one or two commits in, before
	// the copy started.
	if during < 10 {
		t.Fatalf("%d transactions committed while the snapshot ran: it held up the writer", during)
	}
}

// DataVersion moves with every write, ours included, and stays put
// across reads and snapshots.
func TestDataVersion(t *testing.T) {
	s, _ := openTest(t)
	ctx := t.Context()
	read := func() DataVersion {
		t.Helper()
		v, err := s.DataVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := read()
	if v0 == (DataVersion{}) {
		t.Fatal("a reading equals the zero DataVersion")
	}
	if read() != v0 {
		t.Fatal("DataVersion moved without a write")
	}
	if _, _, err := s.Value(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := s.SnapshotTo(ctx, filepath.Join(t.TempDir(), "copy.db")); err != nil {
		t.Fatal(err)
	}
	if read() != v0 {
		t.Fatal("DataVersion moved with a read or a snapshot")
	}

	steps := []struct {
		name  string
		write func() error
	}{
		{"SetValue", func() error { return s.SetValue(ctx, "k", "v") }},
		{"same value again", func() error { return s.SetValue(ctx, "k", "v") }},
		{"DeleteValue", func() error { return s.DeleteValue(ctx, "k") }},
		{"transaction", func() error {
			return s.InTx(ctx, func(tx *Tx) error { return tx.SetCursor(ctx, "nomad", 42, 0) })
		}},
		{"Enqueue", func() error {
			_, err := s.Enqueue(ctx, OutMessage{Transport: "matrix", Room: "!r", Plain: "p"})
			return err
		}},
	}
	prev := v0
	for _, step := range steps {
		if err := step.write(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		v := read()
		if v == prev {
			t.Fatalf("DataVersion did not move with %s", step.name)
		}
		prev = v
	}

	// Reading waits for a transaction in progress, then sees its writes.
	release := make(chan struct{})
	inTx := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = s.InTx(ctx, func(tx *Tx) error {
			close(inTx)
			<-release
			return tx.SetCursor(ctx, "consul", 7, 0)
		})
	})
	<-inTx
	got := make(chan DataVersion, 1)
	go func() { v, _ := s.DataVersion(ctx); got <- v }()
	select {
	case <-got:
		t.Fatal("DataVersion did not wait for the transaction in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	if v := <-got; v == prev {
		t.Fatal("DataVersion did not move with the transaction it waited for")
	}
}
