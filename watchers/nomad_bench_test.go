package watchers

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/fakenomad"
)

// benchLines returns the capture as stream lines, copies times over, each
// copy reindexed after the previous one, so that a watcher takes all of
// them as news; and the number of events they hold.
func benchLines(tb testing.TB, copies int) (lines [][]byte, events int) {
	tb.Helper()
	frames := fakenomad.CaptureFrames()
	index := uint64(100)
	for c := range copies {
		for i, f := range frames {
			if c > 0 || i > 0 {
				index++
			}
			if copies > 1 {
				f = fakenomad.Reindex(f, index)
			}
			lines = append(lines, []byte(f+"\n"))
		}
	}
	all, _ := captureEvents(tb)
	return lines, len(all) * copies
}

func linesSize(lines [][]byte) (n int64) {
	for _, l := range lines {
		n += int64(len(l))
	}
	return n
}

// BenchmarkDecodeNomad decodes and translates the captured frames.
func BenchmarkDecodeNomad(b *testing.B) {
	lines, events := benchLines(b, 1)
	b.SetBytes(linesSize(lines))
	b.ReportAllocs()
	got := 0
	var d nomadDecoder
	var out []Event
	for b.Loop() {
		got = 0
		for _, line := range lines {
			index, raws, heartbeat, err := d.decodeLine(line)
			if err != nil || heartbeat {
				b.Fatal(err, heartbeat)
			}
			out = out[:0]
			for _, raw := range raws {
				ev, err := d.translate(raw, index)
				if err != nil {
					b.Fatal(err)
				}
				out = append(out, ev)
			}
			joinReverts(out)
			got += len(out)
		}
	}
	if got != events {
		b.Fatalf("%d events, want %d", got, events)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}

type nopSink struct{ batches, events int }

func (s *nopSink) Consume(_ context.Context, b Batch) error {
	s.batches++
	s.events += len(b.Events)
	return nil
}

// BenchmarkNomadStream runs the watcher's handling of the stream (read,
// decode, translate, cursor, batches, stderr tails) over the capture,
// copied 10 times, into a sink that does nothing. The crasher's tails are
// fetched from the fake again at every copy, as its two failures alternate.
func BenchmarkNomadStream(b *testing.B) {
	fake := fakenomad.New(b, fakenomad.Config{})
	lines, events := benchLines(b, 10)
	stream := bytes.Join(lines, nil)
	n := NewNomad(NomadConfig{Address: fake.URL}, fixedCursor{})
	sink := &nopSink{}
	r := &nomadRun{n: n, sink: sink, lookout: &lookoutLog{}, tails: newTailCache(), started: true}
	ctx := zerolog.Nop().WithContext(context.Background())
	b.SetBytes(linesSize(lines))
	b.ReportAllocs()
	for b.Loop() {
		*sink = nopSink{}
		r.pos = Cursor{Name: nomadName, Index: 100}
		br := bufio.NewReaderSize(bytes.NewReader(stream), nomadReadBuffer)
		if _, err := r.follow(ctx, br, func(bool) {}); err != io.EOF {
			b.Fatal(err)
		}
	}
	if sink.events != events {
		b.Fatalf("%d events, want %d", sink.events, events)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	b.ReportMetric(float64(sink.batches), "batches")
}
