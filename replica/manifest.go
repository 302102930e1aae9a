package replica

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// ManifestFormat is the version of the manifest's JSON shape.
const ManifestFormat = 1

// Object name suffixes.
const (
	dataSuffix     = ".db.zst"
	manifestSuffix = ".manifest.json"
)

// stateDir is where replicas live under the prefix.
const stateDir = "ha/state/"

// maxManifest bounds what is read of a manifest: a few hundred bytes.
const maxManifest = 64 << 10

// Manifest describes one replica. It is written after the data object it
// describes and checked by Restore before the data is used.
type Manifest struct {
	Format            int       `json:"format"`
	Term              uint64    `json:"term"`
	Seq               uint64    `json:"seq"`
	Object            string    `json:"object"`             // the data object's name, beside the manifest
	Instance          string    `json:"instance"`           // who uploaded it
	SchemaVersion     int       `json:"schema_version"`     // the database's store schema version
	SHA256            string    `json:"sha256"`             // of the uncompressed database, hex
	Size              int64     `json:"size"`               // of the uncompressed database, bytes
	CompressedSize    int64     `json:"compressed_size"`    // of the data object, bytes
	Created           time.Time `json:"created"`            // when the copy was taken
	ConfigFingerprint string    `json:"config_fingerprint"` // the uploader's configuration
}

// id is a replica's (term, seq), its order: higher is newer.
type id struct{ term, seq uint64 }

func (a id) less(b id) bool {
	return a.term < b.term || (a.term == b.term && a.seq < b.seq)
}

func (a id) String() string { return fmt.Sprintf("%020d-%020d", a.term, a.seq) }

// layout names the objects under a prefix.
type layout struct{ dir string } // <prefix>ha/state/

// newLayout places replicas under prefix: "vigie" and "vigie/" both give
// vigie/ha/state/; "" gives ha/state/.
func newLayout(prefix string) layout {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return layout{dir: prefix + stateDir}
}

func (l layout) data(i id) string     { return l.dir + i.String() + dataSuffix }
func (l layout) manifest(i id) string { return l.dir + i.String() + manifestSuffix }

// parseKey reads a replica object's key: its id and whether it is the
// manifest. ok is false for any other key.
func (l layout) parseKey(key string) (i id, manifest, ok bool) {
	name, found := strings.CutPrefix(key, l.dir)
	if !found {
		return id{}, false, false
	}
	switch {
	case strings.HasSuffix(name, dataSuffix):
		name = strings.TrimSuffix(name, dataSuffix)
	case strings.HasSuffix(name, manifestSuffix):
		name, manifest = strings.TrimSuffix(name, manifestSuffix), true
	default:
		return id{}, false, false
	}
	i, ok = parseID(name)
	return i, manifest, ok
}

// parseID reads "<term 20 digits>-<seq 20 digits>".
func parseID(s string) (id, bool) {
	t, q, found := strings.Cut(s, "-")
	if !found || len(t) != 20 || len(q) != 20 {
		return id{}, false
	}
	term, err1 := parseDigits(t)
	seq, err2 := parseDigits(q)
	if err1 != nil || err2 != nil {
		return id{}, false
	}
	return id{term, seq}, true
}

// parseDigits reads decimal digits only (no sign, which ParseUint refuses
// anyway, and no underscores, which it refuses in base 10).
func parseDigits(s string) (uint64, error) {
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	return strconv.ParseUint(s, 10, 64)
}

// ParseManifest reads a manifest stored at key and checks everything
// Restore relies on. Manifests come from a bucket that others can write
// to: whatever data holds, it returns a valid manifest or an error saying
// what is wrong, never panics.
func ParseManifest(data []byte, key string) (Manifest, error) {
	if len(data) > maxManifest {
		return Manifest{}, fmt.Errorf("manifest %s is larger than %d KiB: not one Vigie wrote", key, maxManifest>>10)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("manifest %s is not valid JSON: %w", key, err)
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if m.Format != ManifestFormat {
		bad("format %d (this Vigie reads %d)", m.Format, ManifestFormat)
	}
	name := strings.TrimSuffix(path.Base(key), manifestSuffix)
	if i, ok := parseID(name); !ok || !strings.HasSuffix(key, manifestSuffix) {
		bad("its name %s is not <term>-<seq>%s", path.Base(key), manifestSuffix)
	} else if i != (id{m.Term, m.Seq}) {
		bad("term %d and seq %d do not match its name %s", m.Term, m.Seq, path.Base(key))
	} else if m.Object != i.String()+dataSuffix {
		bad("object %q is not %s", m.Object, i.String()+dataSuffix)
	}
	if m.Term == 0 || m.Seq == 0 {
		bad("term and seq start at 1")
	}
	if m.SchemaVersion < 1 {
		bad("schema version %d", m.SchemaVersion)
	}
	if len(m.SHA256) != 64 || strings.ToLower(m.SHA256) != m.SHA256 {
		bad("sha256 %q is not 64 lowercase hex digits", m.SHA256)
	} else if _, err := hex.DecodeString(m.SHA256); err != nil {
		bad("sha256 %q is not 64 lowercase hex digits", m.SHA256)
	}
	// A SQLite database is whole pages, of 512 bytes at least.
	if m.Size < 512 || m.Size%512 != 0 {
		bad("size %d is not that of a SQLite database", m.Size)
	}
	if m.CompressedSize < 1 {
		bad("compressed size %d", m.CompressedSize)
	}
	if m.Created.IsZero() {
		bad("no creation time")
	}
	if m.Instance == "" {
		bad("no instance")
	}
	if len(problems) > 0 {
		return Manifest{}, fmt.Errorf("manifest %s: %s", key, strings.Join(problems, "; "))
	}
	return m, nil
}
