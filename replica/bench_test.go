package replica

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/store"
)

// largeState is a ~50 MB state database, built once for the benchmarks:
// outbox messages, audit-like text and settings of the kind Vigie keeps,
// with the redundancy of real messages (words, IDs, markup), not random
// bytes that no compressor would shrink.
var largeState struct {
	once sync.Once
	dir  string // holds vigie.db
	err  error
}

const largeStateSize = 50 << 20

func buildLargeState() (string, error) {
	largeState.once.Do(func() {
		largeState.dir, largeState.err = os.MkdirTemp("", "vigie-replica-bench-")
		if largeState.err != nil {
			return
		}
		largeState.err = fillState(largeState.dir, largeStateSize)
	})
	return largeState.dir, largeState.err
}

var words = strings.Fields(`alloc job task group node drained evaluation deployment failed healthy unhealthy
	restart leader election snapshot consul nomad vault postgres replica disk memory cpu timeout
	incident acknowledged resolved critical warning service check passing http tcp grpc region dc1`)

func fillState(dir string, size int64) error {
	ctx := context.Background()
	st, err := store.Open(ctx, dir, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(7, 11))
	text := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(words[rng.IntN(len(words))])
			fmt.Fprintf(&b, " %08x ", rng.Uint32())
		}
		return b.String()
	}
	path := filepath.Join(dir, store.FileName)
	for batch := 0; ; batch++ {
		msgs := make([]store.OutMessage, 500)
		for i := range msgs {
			plain := text(600)
			msgs[i] = store.OutMessage{Transport: "matrix", Room: fmt.Sprintf("!room%d:example.org", rng.IntN(20)),
				Plain: plain, HTML: "<p>" + strings.ReplaceAll(plain, " ", " <b>") + "</p>"}
		}
		if _, err := st.Enqueue(ctx, msgs...); err != nil {
			return err
		}
		if batch%10 == 0 {
			var total int64
			for _, suffix := range []string{"", "-wal"} {
				if fi, err := os.Stat(path + suffix); err == nil {
					total += fi.Size()
				}
			}
			if total >= size {
				return nil
			}
		}
	}
}

// copyFile copies the template database into a data directory.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// largeEnv is an env whose store holds the ~50 MB state.
func largeEnv(b *testing.B) *env {
	b.Helper()
	tmpl, err := buildLargeState()
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b)
	e.st.Close()
	dir := filepath.Join(b.TempDir(), "large")
	// Checkpointed: the template's store was closed.
	if err := copyFile(filepath.Join(dir, store.FileName), filepath.Join(tmpl, store.FileName)); err != nil {
		b.Fatal(err)
	}
	if e.st, err = store.Open(b.Context(), dir, e.clock); err != nil {
		b.Fatal(err)
	}
	e.dataDir = dir
	b.Cleanup(func() { e.st.Close() })
	return e
}

// BenchmarkSnapshotUpload: one replication of a ~50 MB state after a
// change: VACUUM INTO, SHA-256, zstd and the upload to versitygw on
// loopback, then the manifest and the retention.
func BenchmarkSnapshotUpload(b *testing.B) {
	e := largeEnv(b)
	r := e.replicator(b, 1)
	ctx := b.Context()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		e.write(b, "bench", fmt.Sprint(i))
		e.clock.Advance(time.Second)
		b.StartTimer()
		if err := r.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := r.Status()
	b.SetBytes(st.LastSize)
	b.ReportMetric(float64(st.LastSize)/(1<<20), "db-MiB")
	b.ReportMetric(float64(st.LastStored)/(1<<20), "stored-MiB")
}

// BenchmarkSnapshot: VACUUM INTO alone, of the same state.
func BenchmarkSnapshot(b *testing.B) {
	e := largeEnv(b)
	dir := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		if err := e.st.SnapshotTo(b.Context(), filepath.Join(dir, fmt.Sprint(i, ".db"))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestore: a new leader's restore of the ~50 MB state: download,
// zstd, SHA-256, integrity_check and the rename.
func BenchmarkRestore(b *testing.B) {
	e := largeEnv(b)
	if err := e.replicator(b, 1).Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		res, _, err := e.restore(b)
		if err != nil || res.Fresh {
			b.Fatalf("%+v %v", res, err)
		}
		b.SetBytes(res.Manifest.Size)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if largeState.dir != "" {
		os.RemoveAll(largeState.dir)
	}
	os.Exit(code)
}
