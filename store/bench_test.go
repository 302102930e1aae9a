package store

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkPendingHeads: the sender's read after each commit, with a
// backlog of 1,000 pending messages in 10 rooms behind 10,000 sent ones.
func BenchmarkPendingHeads(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "data"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msgs := make([]OutMessage, 11000)
	for i := range msgs {
		msgs[i] = OutMessage{Transport: "matrix", Room: fmt.Sprint("!r", i%10), Plain: "x", HTML: "x"}
	}
	ids, err := s.Enqueue(b.Context(), msgs...)
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range ids[:10000] {
		if err := s.MarkSent(b.Context(), id, "$"+strconv.FormatInt(id, 10)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		heads, err := s.PendingHeads(b.Context(), "matrix")
		if err != nil || len(heads) != 10 {
			b.Fatalf("%d heads, %v", len(heads), err)
		}
	}
}

// BenchmarkTx: a small transaction of the incident engine's kind.
func BenchmarkTx(b *testing.B) {
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "data"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		err := s.InTx(ctx, func(tx *Tx) error {
			key := fmt.Sprint("k", i%50)
			in, found, err := tx.LatestIncident(ctx, key)
			if err != nil {
				return err
			}
			if !found {
				in = Incident{Key: key, Rule: "r", State: IncidentOpen, Labels: "{}", OpenedAt: tx.Now()}
			}
			in.Events++
			in.UpdatedAt = tx.Now()
			if err := tx.SaveIncident(ctx, &in); err != nil {
				return err
			}
			if _, _, err := tx.Fact(ctx, "alloc", key); err != nil {
				return err
			}
			if err := tx.SetFact(ctx, "alloc", key, "v"); err != nil {
				return err
			}
			return tx.SetCursor(ctx, "nomad", uint64(i), 0)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
