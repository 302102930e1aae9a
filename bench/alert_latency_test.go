// Package bench holds end-to-end benchmarks that cross packages: the real
// watcher, incident engine, state store and outbox sender, wired as
// cmd/vigie wires them, against the fakes of the servers that cannot run
// here.
package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie/vigie/incidents"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
	"github.com/vigie/vigie/watchers"
)

// sendLog is the transport: it records when each message reaches the
// point where the bot calls the homeserver.
type sendLog struct {
	mu   sync.Mutex
	sent map[string]time.Time // by first line
	wake chan struct{}
}

func (s *sendLog) Deliver(_ context.Context, d outbox.Delivery) (string, error) {
	at := time.Now()
	first, _, _ := strings.Cut(d.Plain, "\n")
	s.mu.Lock()
	if _, ok := s.sent[first]; !ok {
		s.sent[first] = at
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return "$" + d.TxnID, nil
}

func (s *sendLog) at(title string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.sent[title]
	return t, ok
}

// failingFrame is the captured frame of the crasher's allocation failing
// (index 23), made a new job's and moved to index.
func failingFrame(b *testing.B, job string, index uint64) string {
	for _, f := range fakenomad.CaptureFrames() {
		if strings.HasPrefix(f, `{"Events":`) && strings.Contains(f, `"Index":23,`) && strings.Contains(f, `"ClientStatus":"failed"`) {
			return fakenomad.Reindex(strings.ReplaceAll(f, `"crasher"`, `"`+job+`"`), index)
		}
	}
	b.Fatal("no captured failing frame")
	return ""
}

// BenchmarkAlertLatency measures how long an alert takes from a Nomad frame
// to the transport's send call: the fake Nomad writes a frame of an
// allocation failing; the watcher reads it (and fetches the task's stderr),
// the engine opens the incident and queues its message in the same
// transaction as the cursor, and the woken sender hands it to the
// transport. One new incident per iteration; p50 and p99 are reported.
func BenchmarkAlertLatency(b *testing.B) {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	st, err := store.Open(ctx, filepath.Join(b.TempDir(), "data"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	rules, err := incidents.Rules(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	box := outbox.New(st)
	// A room cap above the iterations: each incident gets its own message
	// instead of a storm summary.
	eng := incidents.New(incidents.Config{Rules: rules, Routes: []incidents.Route{{Transport: "matrix", Room: "!ops"}},
		RoomCap: 1 << 30, Waker: box}, st)
	nomad := fakenomad.New(b, fakenomad.Config{})
	w := watchers.NewNomad(watchers.NomadConfig{Address: nomad.URL}, st)
	log := &sendLog{sent: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	sender := box.NewSender("matrix", st, log, outbox.SenderConfig{}, telemetry.NewMetrics())
	var wg sync.WaitGroup
	wg.Go(func() {
		watchers.Supervise(ctx, eng, watchers.Backoff{Min: time.Millisecond, Max: time.Second}, watchers.NewVisibility(nil, time.Minute), w)
	})
	wg.Go(func() { eng.Run(ctx) })
	wg.Go(func() { sender.Run(ctx) }) //nolint:errcheck // ends with ctx
	defer wg.Wait()
	defer cancel()
	// Wait for the stream to be open.
	for !slices.ContainsFunc(nomad.Requests(), func(r string) bool { return strings.HasPrefix(r, "/v1/event/stream") }) {
		time.Sleep(time.Millisecond)
	}

	index := nomad.LastIndex() + 1
	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		job := fmt.Sprintf("bench-%d", i)
		title := "🔴 CRITICAL · " + job + "/" + job + ": allocations failing"
		frame := failingFrame(b, job, index)
		index++
		start := time.Now()
		nomad.Append(frame)
		deadline := time.After(10 * time.Second)
		for {
			if at, ok := log.at(title); ok {
				latencies = append(latencies, at.Sub(start))
				break
			}
			select {
			case <-log.wake:
			case <-deadline:
				b.Fatalf("no message %q within 10s", title)
			}
		}
	}
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}
