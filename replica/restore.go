package replica

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/vigie/vigie/store"
)

// ErrNoUsableReplica is returned by Restore when the bucket holds
// replicas but every one was refused (Restored.Refused says why): the
// data directory is left as it was.
var ErrNoUsableReplica = errors.New("no usable state replica")

// Restored tells what Restore did.
type Restored struct {
	// Fresh is true when the bucket holds no replica at all: nothing was
	// put in place, and the leader starts from the data directory as it
	// is (empty on a new instance).
	Fresh bool
	// Manifest describes the replica put in place, Key is its data object.
	Manifest Manifest
	Key      string
	// Refused lists the replicas newer than the one restored (all of them
	// when none was) that were not used, newest first, and why.
	Refused []Refusal
	// HighestTerm is the highest term of any object in the bucket,
	// refused or not. The new leader's term must be higher: Consul's
	// LockIndex restarts at 1 if the lock's key is deleted, and a term
	// at or below HighestTerm would lose to the older replicas.
	HighestTerm uint64
}

// Refusal is a replica Restore did not use.
type Refusal struct {
	Key    string // its manifest, or its data object when it has no manifest
	Term   uint64
	Seq    uint64
	Reason string
}

func (r Refusal) String() string { return r.Key + ": " + r.Reason }

// replicaEntry is one replica listed: its data object and manifest.
type replicaEntry struct {
	id       id
	dataSize int64 // -1: no data object
	manifest bool
}

// listReplicas lists the replicas under l, newest first, and the highest
// term seen.
func listReplicas(ctx context.Context, st Storage, l layout) ([]*replicaEntry, uint64, error) {
	objs, err := st.List(ctx, l.dir)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	var highest uint64
	byID := map[id]*replicaEntry{}
	for _, o := range objs {
		i, isManifest, ok := l.parseKey(o.Key)
		if !ok {
			continue
		}
		highest = max(highest, i.term)
		e := byID[i]
		if e == nil {
			e = &replicaEntry{id: i, dataSize: -1}
			byID[i] = e
		}
		if isManifest {
			e.manifest = true
		} else {
			e.dataSize = o.Size
		}
	}
	entries := make([]*replicaEntry, 0, len(byID))
	for _, e := range byID {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b *replicaEntry) int { // newest first
		if b.id.less(a.id) {
			return -1
		}
		return 1
	})
	return entries, highest, nil
}

// Newest reads the manifest of the newest replica that has one, for
// operators (vigie doctor); found is false when there is none. It checks
// the manifest, not the data.
func Newest(ctx context.Context, st Storage, prefix string) (m Manifest, found bool, err error) {
	l := newLayout(prefix)
	entries, _, err := listReplicas(ctx, st, l)
	if err != nil {
		return Manifest{}, false, err
	}
	for _, e := range entries {
		if !e.manifest {
			continue
		}
		data, err := readSmall(ctx, st, l.manifest(e.id), maxManifest)
		if err != nil {
			return Manifest{}, false, err
		}
		m, err := ParseManifest(data, l.manifest(e.id))
		return m, err == nil, err
	}
	return Manifest{}, false, nil
}

// Restore puts the newest good replica under prefix in place of
// <dataDir>/vigie.db, before the store is opened. Replicas are tried from
// the highest (term, seq) down; one that is corrupt or cannot be verified
// (manifest invalid, data object missing or truncated, not zstd, SHA-256
// or size mismatch, integrity_check failing, a schema newer than this
// binary's) is refused, with its reason in Restored.Refused, and the next
// older one is tried. The database is replaced atomically: the copy is
// written and checked beside it, its stale -wal and -shm are removed, and
// it is renamed over it.
//
// With no replica at all it returns Restored{Fresh: true} and changes
// nothing. When every replica is refused it returns ErrNoUsableReplica.
// When S3 cannot be listed or read it returns an error matching
// ErrUnavailable, and changes nothing: the caller should try again (an
// object deleted by a deposed leader's retention between the listing and
// the download fails this way too, and the next try lists again).
//
// The store of dataDir must not be open.
func Restore(ctx context.Context, st Storage, prefix, dataDir string) (Restored, error) {
	l := newLayout(prefix)
	known, err := store.LatestSchemaVersion()
	if err != nil {
		return Restored{}, err
	}
	entries, highest, err := listReplicas(ctx, st, l)
	if err != nil {
		return Restored{}, err
	}
	removeLeftovers(dataDir)
	res := Restored{HighestTerm: highest}

	candidates := 0
	for _, e := range entries {
		if !e.manifest {
			res.Refused = append(res.Refused, Refusal{Key: l.data(e.id), Term: e.id.term, Seq: e.id.seq,
				Reason: "no manifest: an upload cut short"})
			continue
		}
		candidates++
		refuse := func(reason string) {
			res.Refused = append(res.Refused, Refusal{Key: l.manifest(e.id), Term: e.id.term, Seq: e.id.seq, Reason: reason})
		}
		data, err := readSmall(ctx, st, l.manifest(e.id), maxManifest)
		if err != nil {
			return res, err
		}
		m, err := ParseManifest(data, l.manifest(e.id))
		switch {
		case err != nil:
			refuse(err.Error())
			continue
		case m.SchemaVersion > known:
			refuse(fmt.Sprintf("schema version %d is newer than this Vigie knows (%d): written by a newer Vigie", m.SchemaVersion, known))
			continue
		case e.dataSize < 0:
			refuse("its data object " + l.data(e.id) + " is missing")
			continue
		case e.dataSize != m.CompressedSize:
			refuse(fmt.Sprintf("its data object %s has %d bytes, the manifest says %d (truncated or replaced)", l.data(e.id), e.dataSize, m.CompressedSize))
			continue
		}
		tmp, reason, err := download(ctx, st, l.data(e.id), m, dataDir, known)
		if err != nil {
			return res, err
		}
		if reason != "" {
			refuse(reason)
			continue
		}
		if err := install(tmp, dataDir); err != nil {
			os.Remove(tmp)
			return res, err
		}
		res.Manifest, res.Key = m, l.data(e.id)
		return res, nil
	}
	if candidates == 0 {
		res.Fresh = true
		return res, nil
	}
	reasons := make([]string, len(res.Refused))
	for i, r := range res.Refused {
		reasons[i] = r.String()
	}
	return res, fmt.Errorf("%w under %s: %s", ErrNoUsableReplica, l.dir, strings.Join(reasons, "; "))
}

// restoreTemp is the pattern of the files a restore writes in the data
// directory before the rename.
const restoreTemp = "." + store.FileName + ".restore-*"

// removeLeftovers removes what a restore killed midway left in dataDir.
func removeLeftovers(dataDir string) {
	left, _ := filepath.Glob(filepath.Join(dataDir, restoreTemp))
	for _, f := range left {
		os.Remove(f)
	}
}

// download writes the replica's database into a temporary file in dataDir
// and checks it. It returns the file's path, or why the replica is
// refused, or an error of the storage or the local disk (which says
// nothing about the replica: the restore stops).
func download(ctx context.Context, st Storage, key string, m Manifest, dataDir string, known int) (path, refused string, err error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("create data dir %s: %w", dataDir, err)
	}
	f, err := os.CreateTemp(dataDir, restoreTemp)
	if err != nil {
		return "", "", err
	}
	path = f.Name()
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // the state holds the Matrix access token
		return "", "", err
	}
	rc, err := st.Open(ctx, key)
	if err != nil {
		return "", "", unavailable(err)
	}
	defer rc.Close()
	src := &sourceReader{r: rc}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return "", "", err
	}
	defer dec.Close()
	hash := sha256.New()
	// One byte more than the manifest says, to tell a longer database.
	n, err := io.Copy(io.MultiWriter(f, hash), io.LimitReader(dec, m.Size+1))
	switch {
	case src.err != nil:
		return "", "", unavailable(fmt.Errorf("download %s: %w", key, src.err))
	case err != nil && isWriteError(err, f):
		return "", "", fmt.Errorf("write %s: %w", path, err)
	case ctx.Err() != nil:
		return "", "", ctx.Err()
	case err != nil:
		return "", fmt.Sprintf("its data object does not decompress: %v", err), nil
	case n != m.Size:
		return "", fmt.Sprintf("the database has %d bytes, the manifest says %d", n, m.Size), nil
	}
	if got := hex.EncodeToString(hash.Sum(nil)); got != m.SHA256 {
		return "", fmt.Sprintf("the database's SHA-256 is %s, the manifest says %s", got, m.SHA256), nil
	}
	if err := f.Sync(); err != nil {
		return "", "", err
	}
	if err := f.Close(); err != nil {
		return "", "", err
	}
	if reason, err := check(ctx, path, m, known); err != nil || reason != "" {
		return "", reason, err
	}
	keep = true
	return path, "", nil
}

// isWriteError tells whether err came from writing f (the local disk),
// not from reading the replica.
func isWriteError(err error, f *os.File) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Path == f.Name()
}

// check opens the database at path read-only, without touching it, and
// runs SQLite's integrity check and compares the schema version.
func check(ctx context.Context, path string, m Manifest, known int) (refused string, err error) {
	// immutable: no lock, no -shm or -wal: the file is ours alone.
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&immutable=1")
	if err != nil {
		return "", err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check(20)")
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "it is not a database SQLite can read: " + err.Error(), nil
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return "integrity check: " + err.Error(), nil
		}
		problems = append(problems, line)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "integrity check: " + err.Error(), nil
	}
	if len(problems) != 1 || problems[0] != "ok" {
		return "integrity check failed: " + strings.Join(problems, "; "), nil
	}
	var v int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return "read its schema version: " + err.Error(), nil
	}
	switch {
	case v != m.SchemaVersion:
		return fmt.Sprintf("its schema version is %d, the manifest says %d", v, m.SchemaVersion), nil
	case v > known:
		return fmt.Sprintf("schema version %d is newer than this Vigie knows (%d)", v, known), nil
	}
	return "", nil
}

// install renames the checked copy at tmp over <dataDir>/vigie.db. The old
// database's -wal and -shm go first: SQLite would apply a stale WAL to the
// new file, corrupting it.
func install(tmp, dataDir string) error {
	db := filepath.Join(dataDir, store.FileName)
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(db + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old database's %s: %w", suffix, err)
		}
	}
	if err := os.Rename(tmp, db); err != nil {
		return fmt.Errorf("put the restored database in place: %w", err)
	}
	dir, err := os.Open(dataDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync() // the rename survives a crash
}
