package backups

import (
	"strings"
	"testing"
)

// Manifests are read from a bucket others can write to: whatever they
// hold, parsing returns a manifest or an error, never panics, and a
// manifest it accepts names objects with keys and checksums.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"format":1,"id":"db-20261130T033000Z","target":"db","kind":"postgres","started":"2026-11-30T03:30:00Z","ended":"2026-11-30T03:31:00Z",
		"objects":[{"key":"vigie/db/2026-11-30/db-20261130T033000Z.dump.zst","part":"dump","sha256":"` + strings.Repeat("ab", 32) + `"}]}`))
	f.Add([]byte(`{"format": 2}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseManifest(data, "vigie/db/2026-11-30/db-20261130T033000Z.manifest.json")
		if err != nil {
			return
		}
		if m.ID != "db-20261130T033000Z" || len(m.Objects) == 0 || m.Ended.Before(m.Started) {
			t.Fatalf("accepted %+v", m)
		}
		for _, o := range m.Objects {
			if o.Key == "" || len(o.SHA256) != 64 {
				t.Fatalf("accepted object %+v", o)
			}
		}
	})
}
