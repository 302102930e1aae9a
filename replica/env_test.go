package replica

import (
	"bytes"
	"database/sql"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

const bucket = "vigie-ha"

// prefix is given without its slash: keys are vigie/ha/state/...
const prefix = "vigie"

// env is a leader's store replicating to a real S3 (versitygw).
type env struct {
	s3      *testenv.S3
	storage *backups.Storage
	clock   *clock.Manual
	st      *store.Store
	dataDir string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{s3: testenv.StartS3(t), clock: clock.NewManual(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))}
	e.s3.CreateBucket(t, bucket)
	e.storage = newStorage(t, e.s3.URL, e.s3)
	e.dataDir = filepath.Join(t.TempDir(), "leader")
	var err error
	if e.st, err = store.Open(t.Context(), e.dataDir, e.clock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	return e
}

// newStorage is a backups.Storage of the bucket at url (the server's, or
// one where nothing listens).
func newStorage(t testing.TB, url string, s3 *testenv.S3) *backups.Storage {
	t.Helper()
	st, err := backups.NewStorage(backups.StorageConfig{Endpoint: url, Region: s3.Region, Bucket: bucket,
		AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey, PartSize: 5 << 20, ParallelParts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// replicator builds a Replicator of the env's store for term.
func (e *env) replicator(t testing.TB, term uint64, adjust ...func(*Config)) *Replicator {
	t.Helper()
	cfg := Config{Storage: e.storage, Prefix: prefix, Source: e.st, Term: term, Instance: "vigie-a",
		ConfigFingerprint: "sha256:cafe", Clock: e.clock, TempDir: t.TempDir()}
	for _, a := range adjust {
		a(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// write changes the state.
func (e *env) write(t testing.TB, key, value string) {
	t.Helper()
	if err := e.st.SetValue(t.Context(), key, value); err != nil {
		t.Fatal(err)
	}
}

// keys lists the replica objects' names, sorted.
func (e *env) keys(t testing.TB) []string {
	t.Helper()
	objs, err := e.storage.List(t.Context(), prefix+"/ha/state/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objs {
		names = append(names, strings.TrimPrefix(o.Key, prefix+"/ha/state/"))
	}
	slices.Sort(names)
	return names
}

// object reads an object whole.
func (e *env) object(t testing.TB, key string) []byte {
	t.Helper()
	obj, err := e.s3.Client(t).GetObject(t.Context(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// put replaces an object, as someone with write access to the bucket
// could.
func (e *env) put(t testing.TB, key string, data []byte) {
	t.Helper()
	if _, err := e.s3.Client(t).PutObject(t.Context(), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// restore restores into a new, empty data directory.
func (e *env) restore(t testing.TB) (Restored, string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "follower")
	res, err := Restore(t.Context(), e.storage, prefix, dir)
	return res, dir, err
}

// dump reads every table of the database at path, for comparisons.
func dump(t testing.TB, path string) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := db.Query(fmt.Sprintf("SELECT * FROM %q ORDER BY rowid", table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], fmt.Sprint(vals...))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out
}
