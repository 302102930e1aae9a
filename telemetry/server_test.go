package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	m := NewMetrics()
	m.MessagesSent.WithLabelValues("matrix").Add(3)
	m.RegisterOutbox("matrix", fakeCounts{"pending": 7})
	m.ObserveBackupRun("main-db", "backup", "failed", time.Second)
	m.ObserveBackupRun("main-db", "backup", "ok", 3*time.Minute)
	m.ObserveLastGoodBackup("main-db", time.Unix(1764473400, 0), 3*time.Minute, 400<<20)
	m.RegisterSources(func() []SourceReading {
		return []SourceReading{
			{Name: "nomad", Up: true, LastContact: time.Unix(1700000000, 500e6), LastEvent: time.Unix(1690000000, 0)},
			{Name: "consul", Blind: true}, {Name: "consul-eu", Up: true, Partial: true},
		}
	})
	var notReady error = errors.New("matrix not synced yet")
	srv := httptest.NewServer(Handler(m, func(context.Context) error { return notReady }))
	defer srv.Close()

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "matrix not synced yet") {
		t.Errorf("readyz not ready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz ready: %d", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, `vigie_messages_sent_total{transport="matrix"} 3`) || !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, `vigie_outbox_messages{state="pending",transport="matrix"} 7`) {
		t.Errorf("metrics: %d\n%s", code, body)
	}
	for _, want := range []string{
		`vigie_source_up{source="nomad"} 1`, `vigie_source_blind{source="nomad"} 0`,
		`vigie_source_last_contact_timestamp_seconds{source="nomad"} 1.7000000005e+09`,
		`vigie_source_last_event_timestamp_seconds{source="nomad"} 1.69e+09`,
		`vigie_source_up{source="consul"} 0`, `vigie_source_blind{source="consul"} 1`, `vigie_source_partial{source="consul"} 0`,
		`vigie_source_partial{source="consul-eu"} 1`, `vigie_source_partial{source="nomad"} 0`,
		`vigie_backup_runs_total{action="backup",outcome="failed",target="main-db"} 1`,
		`vigie_backup_runs_total{action="backup",outcome="ok",target="main-db"} 1`,
		`vigie_backup_last_success_timestamp_seconds{target="main-db"} 1.7644734e+09`,
		`vigie_backup_last_duration_seconds{target="main-db"} 180`, `vigie_backup_last_size_bytes{target="main-db"} 4.194304e+08`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, `vigie_source_last_contact_timestamp_seconds{source="consul"}`) {
		t.Error("a source never heard from has a last contact time")
	}
}

func TestServeFailsOnTakenPort(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h := Handler(NewMetrics(), func(context.Context) error { return nil })
	done, err := Serve(ctx, "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if _, err := Serve(ctx, strings.TrimPrefix(srv.URL, "http://"), h); err == nil || !strings.Contains(err.Error(), "http listener on") {
		t.Fatalf("taken port: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

type fakeCounts map[string]int

func (f fakeCounts) OutboxCounts(context.Context, string) (map[string]int, error) { return f, nil }
