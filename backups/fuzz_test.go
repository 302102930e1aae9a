package backups

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/internal/fakenomad"
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

// Snapshot archives come from the servers and from S3: any bytes give a
// verdict, never a panic; the real archives pass.
func FuzzCheckSnapshotArchive(f *testing.F) {
	f.Add(fakeconsul.Snapshot())
	f.Add(fakenomad.Snapshot())
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = checkSnapshotArchive(bytes.NewReader(data))
	})
}

func TestRealArchivesVerify(t *testing.T) {
	for name, archive := range map[string][]byte{"consul": fakeconsul.Snapshot(), "nomad": fakenomad.Snapshot()} {
		if detail, err := checkSnapshotArchive(bytes.NewReader(archive)); err != nil || !strings.Contains(detail, "meta.json, state.bin") {
			t.Errorf("%s: %q %v", name, detail, err)
		}
	}
}

func FuzzParseSums(f *testing.F) {
	f.Add(strings.Repeat("ab", 32) + "  meta.json\n" + strings.Repeat("cd", 32) + " *state.bin\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		sums, err := parseSums(strings.NewReader(s))
		if err != nil {
			return
		}
		for name, sum := range sums {
			if _, err := hex.DecodeString(sum); name == "" || len(sum) != 64 || err != nil {
				t.Fatalf("accepted %q → %q", name, sum)
			}
		}
	})
}
