package incidents

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// BenchmarkConsumeStorm measures the pipeline under an allocation storm:
// batches of failing allocations of 50 job groups through the real rules,
// each batch one transaction with its cursor, messages bounded by the caps.
// The storm's time is simulated (stormRate events per second) so that the
// messages it causes do not depend on how fast the machine runs it.
func BenchmarkConsumeStorm(b *testing.B) {
	clk := clock.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := store.Open(b.Context(), filepath.Join(b.TempDir(), "data"), clk)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rules, err := Rules(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	e := New(Config{Rules: rules, Routes: []Route{{Transport: "matrix", Room: "!ops"}}}, st)
	const perBatch, stormRate = 20, 4000
	batch := make([]watchers.Event, perBatch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		for j := range batch {
			n := i*perBatch + j
			batch[j] = watchers.Event{Source: "nomad", Topic: "Allocation", Type: "AllocationUpdated", Index: uint64(n), Namespace: "default",
				Alloc: &watchers.Alloc{ID: fmt.Sprintf("%08x-0000-0000-0000-000000000000", n), Job: fmt.Sprintf("job%d", n%50), Group: "g",
					NodeName: "vm", ClientStatus: "failed", DesiredStatus: "run",
					Tasks: []watchers.Task{{Name: "t", State: "dead", Failed: true, Events: []watchers.TaskEvent{{Type: "Terminated", ExitCode: 1}}}}}}
		}
		if err := e.Consume(b.Context(), watchers.Batch{Cursor: watchers.Cursor{Name: "nomad", Index: uint64(i)}, Events: batch}); err != nil {
			b.Fatal(err)
		}
		clk.Advance(perBatch * time.Second / stormRate)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
	counts, _ := st.OutboxCounts(b.Context(), "matrix")
	b.ReportMetric(float64(counts[store.StatePending])/float64(b.N*perBatch), "messages/event")
}
