package backups

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// manifestFormat is the version of the manifest's JSON shape.
const manifestFormat = 1

// Key suffixes. A backup exists when its manifest exists: the manifest is
// written last, after every object it names.
const (
	manifestSuffix = ".manifest.json"
	verifySuffix   = ".verify.json"
)

// idTime is the UTC timestamp in backup IDs and object names.
const idTime = "20060102T150405Z"

// Manifest describes one backup: what was dumped, from where, into which
// objects, and what the source looked like then (what verification and
// the report compare against).
type Manifest struct {
	Format       int       `json:"format"`
	ID           string    `json:"id"` // "<target>-<UTC timestamp>"
	Target       string    `json:"target"`
	Kind         string    `json:"kind"` // postgres, consul, nomad
	Started      time.Time `json:"started"`
	Ended        time.Time `json:"ended"`
	Objects      []Object  `json:"objects"`
	RawBytes     int64     `json:"raw_bytes"`    // what the source produced
	StoredBytes  int64     `json:"stored_bytes"` // what S3 holds (compressed)
	Source       Facts     `json:"source"`
	VigieVersion string    `json:"vigie_version"`
}

// Object is one stored stream of a backup.
type Object struct {
	Key         string `json:"key"`
	Part        string `json:"part"`               // "dump", "globals" or "snapshot"
	Database    string `json:"database,omitempty"` // for postgres dumps
	RawBytes    int64  `json:"raw_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	SHA256      string `json:"sha256"` // of the stored (compressed) object, hex
}

// Object parts.
const (
	partDump     = "dump"
	partGlobals  = "globals"
	partSnapshot = "snapshot"
)

// Facts is what the source looked like when it was backed up.
type Facts struct {
	Postgres *PostgresFacts `json:"postgres,omitempty"`
	Snapshot *SnapshotFacts `json:"snapshot,omitempty"`
}

// PostgresFacts are the server and what each database's dump holds,
// counted in the archive as it was written.
type PostgresFacts struct {
	ServerVersion string          `json:"server_version"`
	PgDumpVersion string          `json:"pg_dump_version"`
	Databases     []DatabaseFacts `json:"databases"`
}

// DatabaseFacts lists a database's tables and the rows its dump holds.
type DatabaseFacts struct {
	Name   string       `json:"name"`
	Tables []TableCount `json:"tables"`
	// CountError says why the rows could not be counted (an archive
	// format this Vigie does not read); verification then restores
	// without comparing rows.
	CountError string `json:"count_error,omitempty"`
}

// TableCount is one table's row count.
type TableCount struct {
	Schema string `json:"schema"`
	Name   string `json:"name"`
	Rows   int64  `json:"rows"`
}

// SnapshotFacts describe the Consul or Nomad cluster a snapshot was taken
// from.
type SnapshotFacts struct {
	Leader string `json:"leader"`          // the leader's address
	Index  uint64 `json:"index,omitempty"` // the raft index the snapshot holds
}

// Verification is the outcome of the latest verification of a backup,
// kept beside its manifest (S3 stays the source of truth).
type Verification struct {
	BackupID string        `json:"backup_id"`
	At       time.Time     `json:"at"`
	Level    string        `json:"level"` // "checksum", "archive" or "restore"
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
	Detail   string        `json:"detail,omitempty"` // e.g. "3 databases, 12 tables, 1,204,332 rows match"
}

// Verification levels, from the least to the most thorough.
const (
	levelChecksum = "checksum" // the stored objects hash to the manifest's SHA-256
	levelArchive  = "archive"  // and a snapshot archive's own SHA256SUMS hold
	levelRestore  = "restore"  // and a PostgreSQL dump restores with the counted rows
)

// backupID names a backup of target started at t.
func backupID(target string, t time.Time) string {
	return target + "-" + t.UTC().Format(idTime)
}

// layout places a target's objects: <prefix>/<target>/<UTC date>/<id>.<ext>.
type layout struct{ prefix string }

func (l layout) targetPrefix(target string) string {
	return path.Join(l.prefix, target) + "/"
}

// dir is the folder of a backup started at t.
func (l layout) dir(target string, started time.Time) string {
	return path.Join(l.prefix, target, started.UTC().Format("2006-01-02"))
}

// object is the key of one stream of a backup: ext is e.g. "dump",
// "app.dump", "globals.sql" or "snap"; streams are zstd-compressed.
func (l layout) object(m *Manifest, ext string) string {
	return path.Join(l.dir(m.Target, m.Started), m.ID+"."+ext+".zst")
}

func (l layout) manifest(m *Manifest) string {
	return path.Join(l.dir(m.Target, m.Started), m.ID+manifestSuffix)
}

func (l layout) verification(m *Manifest) string {
	return path.Join(l.dir(m.Target, m.Started), m.ID+verifySuffix)
}

// parseManifest reads a manifest and checks what the rest of Vigie relies
// on; a manifest that fails is listed as broken, never counted as good.
func parseManifest(data []byte, key string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s is not valid JSON: %w", key, err)
	}
	var problems []string
	if m.Format != manifestFormat {
		problems = append(problems, fmt.Sprintf("format %d (this Vigie reads %d)", m.Format, manifestFormat))
	}
	if want := path.Base(key); m.ID+manifestSuffix != want {
		problems = append(problems, fmt.Sprintf("id %q does not match its name %s", m.ID, want))
	}
	if m.Started.IsZero() || m.Ended.Before(m.Started) {
		problems = append(problems, "start and end times are missing or reversed")
	}
	if len(m.Objects) == 0 {
		problems = append(problems, "it names no object")
	}
	for _, o := range m.Objects {
		if o.Key == "" || len(o.SHA256) != 64 {
			problems = append(problems, fmt.Sprintf("object %q lacks a key or a SHA-256", o.Key))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("manifest %s: %s", key, strings.Join(problems, "; "))
	}
	return &m, nil
}

// errBusy is returned when a target already has a run going.
var errBusy = errors.New("busy")
