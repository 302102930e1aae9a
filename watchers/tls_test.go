package watchers

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/testpki"
)

func clientTLS(t *testing.T, files config.TLS) *tls.Config {
	t.Helper()
	c, err := files.Client()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Nomad and Consul behind real TLS listeners that require a client
// certificate: with the right CA and certificate the watchers follow
// them; with another CA, or without a client certificate, they are refused
// with an error that names the server and the setting to check.
func TestWatchersOverMutualTLS(t *testing.T) {
	pki := testpki.New(t, "cluster")
	other := testpki.New(t, "elsewhere")
	good := config.TLS{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	refusals := []struct {
		name  string
		files config.TLS
		want  string
	}{
		{"another CA", config.TLS{CAFile: other.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}, "certificate signed by unknown authority (its certificate is not signed by a CA Vigie trusts: check %s.tls.ca_file)"},
		{"no client certificate", config.TLS{CAFile: pki.CAFile}, "(the server requires a client certificate it trusts: check %s.tls.cert_file and key_file)"},
	}

	t.Run("nomad", func(t *testing.T) {
		fake := fakenomad.New(t, fakenomad.Config{})
		front := pki.Front(t, fake.URL)
		n := NewNomad(NomadConfig{Address: front, TLS: clientTLS(t, good), Backoff: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}}, fixedCursor{})
		sink := newBatchSink()
		run(t, n, sink)
		if first := sink.next(t); first.Cursor.Index != 66 {
			t.Fatalf("first batch %+v", first.Cursor)
		}
		waitFor(t, "the stream", func() bool { return len(streamRequests(fake)) > 0 })
		fake.Append(fakenomad.Reindex(frameAt(t, 23), 66))
		if b := sink.next(t); len(b.Events) != 4 {
			t.Fatalf("frame over TLS: %+v", b)
		}
		for _, r := range refusals {
			n := NewNomad(NomadConfig{Address: front, TLS: clientTLS(t, r.files), Backoff: Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}}, fixedCursor{})
			_, _, lookout := run(t, n, newBatchSink())
			waitFor(t, r.name, func() bool { _, lost := lookout.counts(); return lost > 0 })
			lookout.mu.Lock()
			got := lookout.lost[0]
			lookout.mu.Unlock()
			if !strings.Contains(got, front) || !strings.Contains(got, strings.ReplaceAll(r.want, "%s", "nomad")) {
				t.Errorf("%s: %s", r.name, got)
			}
			t.Logf("%s: %s", r.name, got)
		}
	})

	t.Run("consul", func(t *testing.T) {
		fake := fakeconsul.New()
		t.Cleanup(fake.Close)
		front := pki.Front(t, fake.URL)
		h := startConsulAt(t, ConsulConfig{Address: front, TLS: clientTLS(t, good)}, fake)
		if b := h.next(t); b.Cursor.Index != fakeconsul.IndexBefore || len(b.Events) != 7 {
			t.Fatalf("first snapshot over TLS: %+v", b.Cursor)
		}
		for _, r := range refusals {
			h := startConsulAt(t, ConsulConfig{Address: front, TLS: clientTLS(t, r.files)}, fake)
			waitFor(t, r.name, func() bool { _, lost := h.lookout.counts(); return lost > 0 })
			h.lookout.mu.Lock()
			got := h.lookout.lost[0]
			h.lookout.mu.Unlock()
			if !strings.Contains(got, front) || !strings.Contains(got, strings.ReplaceAll(r.want, "%s", "consul")) {
				t.Errorf("%s: %s", r.name, got)
			}
			t.Logf("%s: %s", r.name, got)
		}
	})
}
