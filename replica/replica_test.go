package replica

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

func name(term, seq uint64) string { return id{term, seq}.String() }

// A replica restored into an empty data directory is the leader's state:
// the same rows in every table, a store that opens on it, and a manifest
// that says what it is.
func TestReplicateRestore(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for i := range 50 {
		e.write(t, fmt.Sprint("key", i), strings.Repeat("v", i))
	}
	if _, err := e.st.Enqueue(ctx, store.OutMessage{Transport: "matrix", Room: "!ops", Plain: "disk full", HTML: "<b>disk full</b>"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.InTx(ctx, func(tx *store.Tx) error { return tx.SetCursor(ctx, "nomad", 1234, 2) }); err != nil {
		t.Fatal(err)
	}
	r := e.replicator(t, 42)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Status()
	wantKey := prefix + "/ha/state/" + name(42, 1) + ".db.zst"
	if st.Uploads != 1 || st.LastKey != wantKey || st.LastSeq != 1 || st.LastError != "" || !st.LastUpload.Equal(e.clock.Now()) ||
		st.LastStored <= 0 || st.LastStored >= st.LastSize || st.Term != 42 {
		t.Fatalf("status %+v", st)
	}
	if got, want := e.keys(t), []string{name(42, 1) + ".db.zst", name(42, 1) + ".manifest.json"}; !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}

	res, dir, err := e.restore(t)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	latest, _ := store.LatestSchemaVersion()
	if res.Fresh || res.Key != wantKey || len(res.Refused) != 0 || m.Term != 42 || m.Seq != 1 || m.Instance != "vigie-a" ||
		m.SchemaVersion != latest || m.ConfigFingerprint != "sha256:cafe" || !m.Created.Equal(e.clock.Now()) ||
		m.Object != name(42, 1)+".db.zst" || m.Size != st.LastSize || m.CompressedSize != st.LastStored {
		t.Fatalf("restored %+v", res)
	}
	restored := filepath.Join(dir, store.FileName)
	data, err := os.ReadFile(restored)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != m.SHA256 || int64(len(data)) != m.Size {
		t.Fatalf("restored file: %d bytes, sha256 %x; manifest %+v", len(data), sum, m)
	}
	if fi, _ := os.Stat(restored); fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored database mode %v", fi.Mode())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}

	// The follower's store opens on it, and holds the leader's state.
	follower, err := store.Open(ctx, dir, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := follower.Value(ctx, "key49"); err != nil || !ok || v != strings.Repeat("v", 49) {
		t.Fatalf("restored value %q %v %v", v, ok, err)
	}
	if idx, skip, ok, err := follower.Cursor(ctx, "nomad"); err != nil || !ok || idx != 1234 || skip != 2 {
		t.Fatalf("restored cursor %d %d %v %v", idx, skip, ok, err)
	}
	if pending, err := follower.Pending(ctx, "matrix", 10); err != nil || len(pending) != 1 || pending[0].HTML != "<b>disk full</b>" {
		t.Fatalf("restored outbox %+v %v", pending, err)
	}
	follower.Close()
	if got, want := dump(t, restored), dump(t, filepath.Join(e.dataDir, store.FileName)); !maps.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("restored tables differ:\n%v\nwant\n%v", got, want)
	}
}

// Restore replaces a stale database, and removes its -wal and -shm: a
// stale WAL applied to the restored file would corrupt it.
func TestRestoreReplacesStaleDatabase(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.write(t, "who", "leader")
	if err := e.replicator(t, 3).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A follower's old state, left open (its -wal and -shm are there)
	// with commits not yet checkpointed.
	dir := filepath.Join(t.TempDir(), "follower")
	old, err := store.Open(ctx, dir, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if err := old.SetValue(ctx, fmt.Sprint("stale", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	db := filepath.Join(dir, store.FileName)
	walBefore, err := os.Stat(db + "-wal")
	if err != nil || walBefore.Size() == 0 {
		t.Fatalf("the stale store has no WAL: %v", err)
	}
	wal, _ := os.ReadFile(db + "-wal")
	old.Close()
	os.WriteFile(db+"-wal", wal, 0o600) // as a crash would leave it

	if _, err := Restore(ctx, e.storage, prefix, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(db + "-wal"); !os.IsNotExist(err) {
		t.Fatalf("stale WAL still there: %v", err)
	}
	st, err := store.Open(ctx, dir, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, ok, _ := st.Value(ctx, "who"); !ok || v != "leader" {
		t.Fatalf("restored state: who=%q", v)
	}
	if _, ok, _ := st.Value(ctx, "stale0"); ok {
		t.Fatal("the stale state survived the restore")
	}
}

// The highest term wins over any seq of a lower one, so that an upload a
// deposed leader finishes late never wins; a deposed leader's retention
// leaves its successor's replicas alone.
func TestNewerTermWins(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	old := e.replicator(t, 5, func(c *Config) { c.Instance = "vigie-a" })
	for i := range 3 {
		e.write(t, "state", fmt.Sprint("old ", i))
		if err := old.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.write(t, "state", "new leader")
	successor := e.replicator(t, 7, func(c *Config) { c.Instance = "vigie-b"; c.Keep = 2 })
	if err := successor.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The deposed leader's late uploads: more of them, with higher seqs.
	for i := range 3 {
		e.write(t, "state", fmt.Sprint("late ", i))
		if err := old.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if st := old.Status(); st.LastSeq != 6 {
		t.Fatalf("the deposed leader's status %+v", st)
	}
	keys := e.keys(t)
	if !slices.Contains(keys, name(7, 1)+".manifest.json") {
		t.Fatalf("the deposed leader deleted its successor's replica: %v", keys)
	}
	res, dir, err := e.restore(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Term != 7 || res.Manifest.Seq != 1 || res.Manifest.Instance != "vigie-b" || len(res.Refused) != 0 || res.HighestTerm != 7 {
		t.Fatalf("restored %+v", res)
	}
	if m, found, err := Newest(ctx, e.storage, prefix); err != nil || !found || m != res.Manifest {
		t.Fatalf("Newest: %+v, %v, %v; want %+v", m, found, err, res.Manifest)
	}
	st, err := store.Open(ctx, dir, e.clock)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, _, _ := st.Value(ctx, "state"); v != "new leader" {
		t.Fatalf("restored state %q, want the successor's", v)
	}
}

// uploadDB uploads a database file as a replica with a manifest that
// describes it exactly: a leader that replicated a damaged database.
func uploadDB(t *testing.T, e *env, i id, db []byte, schema int) {
	t.Helper()
	var buf bytes.Buffer
	enc, _ := zstd.NewWriter(&buf)
	enc.Write(db)
	enc.Close()
	l := newLayout(prefix)
	e.put(t, l.data(i), buf.Bytes())
	sum := sha256.Sum256(db)
	m := Manifest{Format: ManifestFormat, Term: i.term, Seq: i.seq, Object: i.String() + dataSuffix, Instance: "vigie-x",
		SchemaVersion: schema, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(db)), CompressedSize: int64(buf.Len()), Created: e.clock.Now()}
	if err := e.storage.PutJSON(t.Context(), l.manifest(i), m); err != nil {
		t.Fatal(err)
	}
}

// inconsistentIndex returns a copy of db whose pages are all sound but
// with an index that does not match its table: what only
// integrity_check finds.
func inconsistentIndex(t *testing.T, db []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad.db")
	if err := os.WriteFile(path, db, 0o600); err != nil {
		t.Fatal(err)
	}
	conn, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetMaxOpenConns(1)
	for _, q := range []string{
		"CREATE INDEX kv_value ON kv (value)",
		"PRAGMA writable_schema = ON",
		"UPDATE sqlite_master SET sql = 'CREATE INDEX kv_value ON kv (updated_at)' WHERE name = 'kv_value'",
		"PRAGMA writable_schema = OFF",
	} {
		if _, err := conn.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A corrupt or unverifiable replica is refused, saying which and why, and
// the next older one restored; with all of them refused, nothing is.
func TestCorruptReplicaRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	l := newLayout(prefix)
	latest, _ := store.LatestSchemaVersion()
	e.write(t, "state", "good")
	r := e.replicator(t, 1, func(c *Config) { c.Keep = 100 })
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	good := l.data(id{1, 1})

	// A database snapshot to damage.
	snap := filepath.Join(t.TempDir(), "snap.db")
	if err := e.st.SnapshotTo(ctx, snap); err != nil {
		t.Fatal(err)
	}
	pristine, _ := os.ReadFile(snap)

	cases := []struct {
		name   string
		damage func(i id) // makes replica i of a newer state, then damages it
		reason string
	}{
		{"bytes flipped in the object", func(i id) {
			data := e.object(t, l.data(i))
			for j := len(data) / 2; j < len(data)/2+8; j++ {
				data[j] ^= 0xff
			}
			e.put(t, l.data(i), data)
		}, "does not decompress"},
		{"manifest SHA-256 mismatch", func(i id) {
			var m Manifest
			json.Unmarshal(e.object(t, l.manifest(i)), &m)
			m.SHA256 = strings.Repeat("0", 64)
			e.storage.PutJSON(ctx, l.manifest(i), m)
		}, "SHA-256 is"},
		{"truncated object", func(i id) {
			data := e.object(t, l.data(i))
			e.put(t, l.data(i), data[:len(data)/2])
		}, "truncated or replaced"},
		{"truncated stream of the listed size", func(i id) {
			// Garbage appended to a cut stream, to the manifest's size.
			data := e.object(t, l.data(i))
			cut := append(data[:len(data)-64], make([]byte, 64)...)
			e.put(t, l.data(i), cut)
		}, "does not decompress"},
		{"size mismatch", func(i id) {
			var m Manifest
			json.Unmarshal(e.object(t, l.manifest(i)), &m)
			m.Size += 512
			e.storage.PutJSON(ctx, l.manifest(i), m)
		}, "the manifest says"},
		{"data object missing", func(i id) {
			e.storage.Remove(ctx, l.data(i))
		}, "is missing"},
		{"manifest not JSON", func(i id) {
			e.put(t, l.manifest(i), []byte("{\"format\": 1, "))
		}, "not valid JSON"},
		{"manifest of another replica", func(i id) {
			e.put(t, l.manifest(i), e.object(t, l.manifest(id{1, 1})))
		}, "do not match its name"},
		{"newer schema", func(i id) {
			e.storage.Remove(ctx, l.data(i))
			e.storage.Remove(ctx, l.manifest(i))
			db := bytes.Clone(pristine)
			db[63]++ // user_version, in the header
			uploadDB(t, e, i, db, latest+1)
		}, fmt.Sprintf("schema version %d is newer than this Vigie knows (%d)", latest+1, latest)},
		{"malformed page", func(i id) {
			e.storage.Remove(ctx, l.data(i))
			e.storage.Remove(ctx, l.manifest(i))
			db := bytes.Clone(pristine)
			page := 4096 // after the first page, whose header SQLite checks on open
			for j := 2 * page; j < 3*page; j++ {
				db[j] = 0x5a
			}
			uploadDB(t, e, i, db, latest)
		}, "integrity check: database disk image is malformed"},
		{"integrity check fails", func(i id) {
			e.storage.Remove(ctx, l.data(i))
			e.storage.Remove(ctx, l.manifest(i))
			uploadDB(t, e, i, inconsistentIndex(t, pristine), latest)
		}, "integrity check failed: row 1 missing from index"},
		{"not a database", func(i id) {
			e.storage.Remove(ctx, l.data(i))
			e.storage.Remove(ctx, l.manifest(i))
			uploadDB(t, e, i, bytes.Repeat([]byte("not sqlite"), 512*10/10), latest)
		}, "not a database"},
	}
	for n, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			i := id{1, uint64(n + 2)}
			defer func() { // out of the way of the next case
				e.storage.Remove(ctx, l.manifest(i))
				e.storage.Remove(ctx, l.data(i))
			}()
			e.write(t, "state", "damaged "+c.name)
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if st := r.Status(); st.LastSeq != i.seq {
				t.Fatalf("uploaded seq %d, want %d", st.LastSeq, i.seq)
			}
			c.damage(i)
			res, dir, err := e.restore(t)
			if err != nil {
				t.Fatalf("%v (refused %v)", err, res.Refused)
			}
			if res.Key != good || len(res.Refused) != 1 || res.Refused[0].Seq != i.seq || !strings.Contains(res.Refused[0].Reason, c.reason) {
				t.Fatalf("restored %s, refused %v; want %s restored and seq %d refused for %q", res.Key, res.Refused, good, i.seq, c.reason)
			}
			t.Logf("refused: %s", res.Refused[0])
			st, err := store.Open(ctx, dir, e.clock)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if v, _, _ := st.Value(ctx, "state"); v != "good" {
				t.Fatalf("restored state %q", v)
			}
		})
	}

	// Every replica refused: nothing restored, the data directory as it
	// was, and an error that says why.
	e.put(t, l.data(id{1, 1}), []byte("garbage"))
	res, dir, err := e.restore(t)
	if !errors.Is(err, ErrNoUsableReplica) || errors.Is(err, ErrUnavailable) || res.Fresh || len(res.Refused) != 1 {
		t.Fatalf("all refused: %+v, %v", res, err)
	}
	t.Logf("all refused: %v", err)
	if _, err := os.Stat(filepath.Join(dir, store.FileName)); !os.IsNotExist(err) {
		t.Fatalf("a database was put in place: %v", err)
	}
}

// An empty bucket is a fresh start, told apart from a failure; uploads
// cut short (data without manifest) are not replicas.
func TestRestoreFresh(t *testing.T) {
	e := newEnv(t)
	res, dir, err := e.restore(t)
	if err != nil || !res.Fresh || len(res.Refused) != 0 || res.Key != "" {
		t.Fatalf("empty bucket: %+v, %v", res, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a fresh start left files: %v", entries)
	}
	// An upload cut short, and an object that is not a replica.
	l := newLayout(prefix)
	e.put(t, l.data(id{9, 1}), []byte("partial"))
	e.put(t, l.dir+"README", []byte("hello"))
	// A restore killed midway left a file.
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, ".vigie.db.restore-123"), []byte("half"), 0o600)
	res, err = Restore(t.Context(), e.storage, prefix, dir)
	if err != nil || !res.Fresh || len(res.Refused) != 1 || !strings.Contains(res.Refused[0].Reason, "no manifest") || res.HighestTerm != 9 {
		t.Fatalf("bucket with an upload cut short: %+v, %v", res, err)
	}
	if m, found, err := Newest(t.Context(), e.storage, prefix); err != nil || found {
		t.Fatalf("Newest without a manifest: %+v, %v, %v", m, found, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("a fresh start left files: %v", entries)
	}
}

// With S3 unreachable, Restore fails with ErrUnavailable and changes
// nothing, and replication says so in its status, then recovers.
func TestS3Unavailable(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.write(t, "state", "one")
	r := e.replicator(t, 1)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Nothing listens there.
	down := newStorage(t, "http://"+testenv.FreeLoopbackAddr(t), e.s3)
	dir := filepath.Join(t.TempDir(), "follower")
	_, err := Restore(ctx, down, prefix, dir)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoUsableReplica) {
		t.Fatalf("restore from nowhere: %v", err)
	}
	t.Logf("unreachable: %v", err)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("restore from nowhere touched the data directory: %v", err)
	}
	// Refusing Vigie's key is the storage's failure too.
	bad, err := backups.NewStorage(backups.StorageConfig{Endpoint: e.s3.URL, Region: e.s3.Region, Bucket: bucket,
		AccessKeyID: e.s3.AccessKey, SecretAccessKey: "wrong", PartSize: 5 << 20, ParallelParts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(ctx, bad, prefix, dir); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("restore with a wrong key: %v", err)
	}

	// The server goes away under the leader.
	e.s3.Stop()
	e.write(t, "state", "two")
	e.clock.Advance(time.Minute)
	err = r.Flush(ctx)
	st := r.Status()
	if !errors.Is(err, ErrUnavailable) || !st.Unavailable || st.Failures != 1 || !strings.Contains(st.LastError, "S3 at "+e.s3.URL) ||
		!st.LastErrorAt.Equal(e.clock.Now()) || st.Uploads != 1 {
		t.Fatalf("flush with S3 down: %v; status %+v", err, st)
	}
	if _, err := Restore(ctx, e.storage, prefix, dir); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("restore with S3 down: %v", err)
	}
	e.s3.Restart(t)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// With nothing to upload, S3 going away is said too: the standby
	// could not restore.
	e.s3.Stop()
	err = r.Flush(ctx)
	if st := r.Status(); !errors.Is(err, ErrUnavailable) || !st.Unavailable || st.Uploads != 2 {
		t.Fatalf("unchanged flush with S3 down: %v; status %+v", err, st)
	}
	e.s3.Restart(t)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st = r.Status()
	if st.Unavailable || st.LastError != "" || st.Failures != 0 || st.Uploads != 2 || st.Unchanged != 1 {
		t.Fatalf("status once S3 is back %+v", st)
	}
	res, _, err := e.restore(t)
	if err != nil || res.Manifest.Seq < 2 {
		t.Fatalf("restore once S3 is back: %+v %v", res, err)
	}
}

// Nothing changed, nothing uploaded: neither by Flush nor by Run, which
// uploads each change once.
func TestUnchangedNoUpload(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	r := e.replicator(t, 1, func(c *Config) { c.Interval = 20 * time.Millisecond })
	if err := r.Flush(ctx); err != nil { // the first one always uploads: it claims the state for the term
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Uploads != 1 || st.Unchanged != 1 {
		t.Fatalf("status %+v", st)
	}
	if n := len(e.keys(t)); n != 2 {
		t.Fatalf("%d objects after an unchanged flush", n)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	waitFor := func(what string, cond func(Status) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(r.Status()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %+v", what, r.Status())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("Run checks", func(s Status) bool { return s.Unchanged >= 5 })
	if st := r.Status(); st.Uploads != 1 {
		t.Fatalf("Run uploaded an unchanged state: %+v", st)
	}
	e.write(t, "k", "v")
	waitFor("Run uploads the change", func(s Status) bool { return s.Uploads == 2 })
	unchanged := r.Status().Unchanged
	waitFor("Run checks again", func(s Status) bool { return s.Unchanged >= unchanged+3 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Uploads != 2 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}

	// The last replica deleted behind its back (a bucket emptied): the
	// next check uploads the state again.
	l := newLayout(prefix)
	for _, i := range []id{{1, 1}, {1, 2}} {
		e.storage.Remove(ctx, l.manifest(i))
		e.storage.Remove(ctx, l.data(i))
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); st.Uploads != 3 || st.LastSeq != 3 {
		t.Fatalf("status after the bucket was emptied %+v", st)
	}
	if got, want := e.keys(t), []string{name(1, 3) + ".db.zst", name(1, 3) + ".manifest.json"}; !slices.Equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}
}

// The retention keeps the newest Keep replicas, deletes the older ones of
// this term and older terms, uploads cut short older than the newest
// replica, and never a later term's object.
func TestRetention(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	l := newLayout(prefix)
	// An older leader's replicas, and one of its uploads cut short.
	older := e.replicator(t, 2, func(c *Config) { c.Keep = 10 })
	for i := range 2 {
		e.write(t, "k", fmt.Sprint("older ", i))
		if err := older.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.put(t, l.data(id{2, 3}), []byte("cut short"))
	// A later term's upload cut short (a successor mid-upload).
	e.put(t, l.data(id{9, 1}), []byte("in flight"))

	r := e.replicator(t, 4, func(c *Config) { c.Keep = 3 })
	for i := range 6 {
		e.write(t, "k", fmt.Sprint("v", i))
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{}
	for _, seq := range []uint64{4, 5, 6} {
		want = append(want, name(4, seq)+".db.zst", name(4, seq)+".manifest.json")
	}
	want = append(want, name(9, 1)+".db.zst")
	if got := e.keys(t); !slices.Equal(got, want) {
		t.Fatalf("objects after the retention:\n%v\nwant\n%v", got, want)
	}
	if st := r.Status(); st.RetentionError != "" || st.RetentionDelete != 2*2+1+3*2 {
		t.Fatalf("status %+v", st)
	}
	res, _, err := e.restore(t)
	if err != nil || res.Manifest.Term != 4 || res.Manifest.Seq != 6 || len(res.Refused) != 1 {
		t.Fatalf("restored %+v, %v", res, err)
	}

	// A replicator of an existing term goes on after its seqs.
	again := e.replicator(t, 4, func(c *Config) { c.Keep = 3 })
	e.write(t, "k", "again")
	if err := again.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := again.Status(); st.LastSeq != 7 {
		t.Fatalf("a new replicator of term 4 uploaded seq %d, want 7", st.LastSeq)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	st := &backups.Storage{}
	for _, cfg := range []Config{
		{Source: &store.Store{}, Term: 1, Instance: "a"},
		{Storage: st, Term: 1, Instance: "a"},
		{Storage: st, Source: &store.Store{}, Instance: "a"},
		{Storage: st, Source: &store.Store{}, Term: 1},
		{Storage: st, Source: &store.Store{}, Term: 1, Instance: "a", Keep: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	r, err := New(Config{Storage: st, Source: &store.Store{}, Term: 1, Instance: "a"})
	if err != nil || r.cfg.Interval != DefaultInterval || r.cfg.Keep != DefaultKeep {
		t.Fatalf("defaults: %+v %v", r, err)
	}
}
