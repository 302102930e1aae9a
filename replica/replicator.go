package replica

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/store"
)

// Defaults of Config.
const (
	DefaultInterval = 30 * time.Second
	DefaultKeep     = 5
)

// Source is the state replicated: *store.Store.
type Source interface {
	// SnapshotTo writes a consistent copy of the database to path.
	SnapshotTo(ctx context.Context, path string) error
	// DataVersion changes whenever the database may have changed.
	DataVersion(ctx context.Context) (store.DataVersion, error)
}

var _ Source = (*store.Store)(nil)

// Config is what a Replicator needs.
type Config struct {
	Storage Storage
	// Prefix is the bucket prefix (the backups' one, say "vigie/"):
	// replicas go under <Prefix>ha/state/.
	Prefix string
	Source Source
	// Term is the leader's: the LockIndex of its acquisition of the
	// leadership lock. A later leader must have a higher one.
	Term uint64
	// Instance names this Vigie in manifests (its node name).
	Instance string
	// ConfigFingerprint is recorded in each manifest, for operators to
	// see which configuration wrote it.
	ConfigFingerprint string
	Interval          time.Duration // how often a change is looked for (wall-clock time); DefaultInterval if zero
	Keep              int           // replicas kept; DefaultKeep if zero
	// TempDir holds each snapshot while it uploads (one database's
	// size); the system's temporary directory if empty. A directory
	// private to Vigie, such as one in the data directory, is best: the
	// snapshot holds the Matrix access token.
	TempDir string
	Clock   clock.Clock // stamps manifests and the status; the wall clock if nil
	// Lookout, if set, is told of each attempt: the replica is a place
	// Vigie must see, and an outage long enough becomes an incident.
	Lookout Lookout
}

// Lookout hears whether S3 took the state (watchers.Lookout is one).
type Lookout interface {
	Seen()
	Lost(err error)
}

// Replicator uploads the leader's state to S3 every Interval when it
// changed, keeping the newest Keep replicas.
type Replicator struct {
	cfg    Config
	layout layout
	clock  clock.Clock

	mu       sync.Mutex        // one upload at a time; guards what follows
	next     uint64            // seq of the next upload; 0: not looked up yet
	uploaded bool              // an upload of this Replicator succeeded...
	version  store.DataVersion // ...of the state at this version...
	last     id                // ...as this replica

	statusMu sync.Mutex
	status   Status
}

// Status is what replication has done, for /readyz, metrics and
// commands.
type Status struct {
	Term uint64
	// LastUpload is when the newest successful upload was taken (by the
	// Replicator's clock); zero before the first one.
	LastUpload      time.Time
	LastKey         string        // its data object
	LastSeq         uint64        // its seq
	LastSize        int64         // the database's size
	LastStored      int64         // the compressed size in S3
	LastDuration    time.Duration // snapshot, compression and upload
	LastAttempt     time.Time     // the newest attempt, or skip, of either kind
	LastError       string        // why the newest attempt failed; "" when it succeeded
	LastErrorAt     time.Time
	Unavailable     bool // LastError is S3's: unreachable, or refusing Vigie's requests
	Failures        int  // attempts failed in a row
	Uploads         int  // successful uploads since start
	Unchanged       int  // checks that found nothing to upload (and S3 answering)
	RetentionError  string
	RetentionDelete int // objects deleted by the retention since start
}

// New checks cfg and builds a Replicator; it contacts nothing.
func New(cfg Config) (*Replicator, error) {
	switch {
	case cfg.Storage == nil:
		return nil, errors.New("replica: no storage")
	case cfg.Source == nil:
		return nil, errors.New("replica: no source")
	case cfg.Term == 0:
		return nil, errors.New("replica: term 0: the term is the leadership lock's LockIndex, 1 or more")
	case cfg.Instance == "":
		return nil, errors.New("replica: no instance name")
	case cfg.Interval < 0 || cfg.Keep < 0:
		return nil, fmt.Errorf("replica: interval %s and keep %d cannot be negative", cfg.Interval, cfg.Keep)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Keep == 0 {
		cfg.Keep = DefaultKeep
	}
	return &Replicator{cfg: cfg, layout: newLayout(cfg.Prefix), clock: clock.OrSystem(cfg.Clock), status: Status{Term: cfg.Term}}, nil
}

// Status tells what replication has done so far.
func (r *Replicator) Status() Status {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	return r.status
}

// Run uploads the state now, then every Interval, each time only if it
// changed since the last successful upload (otherwise it only lists the
// last replica: S3 must answer, for a standby to restore, and a replica
// gone from the bucket is uploaded again), until ctx is done; it then
// returns nil. Failures do not stop it: they are in Status and the log
// (from zerolog.Ctx(ctx)), and the next Interval tries again. Call Flush
// after it returns, at a graceful shutdown, to upload the last changes.
func (r *Replicator) Run(ctx context.Context) error {
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		r.sync(ctx, false) // errors are in the status and logged
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Flush uploads the state now, unless this Replicator already uploaded
// it as it is: at a graceful shutdown, and right after a restore (where
// the first upload of a new term claims the state for it).
func (r *Replicator) Flush(ctx context.Context) error {
	return r.sync(ctx, true)
}

// sync uploads the state if it changed, and applies the retention after
// an upload.
func (r *Replicator) sync(ctx context.Context, flush bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := zerolog.Ctx(ctx)
	started := r.clock.Now()
	up, err := r.upload(ctx)
	if err != nil && ctx.Err() != nil && !flush {
		return err // Run stopping mid-upload: not a failure to report
	}
	r.statusMu.Lock()
	st := &r.status
	st.LastAttempt = started
	switch {
	case err != nil:
		st.LastError, st.LastErrorAt, st.Unavailable = err.Error(), started, errors.Is(err, ErrUnavailable)
		st.Failures++
	case up == nil:
		st.Unchanged++
		st.LastError, st.Unavailable, st.Failures = "", false, 0
	default:
		failures := st.Failures
		st.LastUpload, st.LastKey, st.LastSeq = up.Created, up.key, up.Seq
		st.LastSize, st.LastStored, st.LastDuration = up.Size, up.CompressedSize, r.clock.Now().Sub(started)
		st.LastError, st.Unavailable, st.Failures = "", false, 0
		st.Uploads++
		if failures > 0 {
			log.Info().Int("failures", failures).Str("key", up.key).Msg("State replication to S3 works again")
		}
	}
	failures := st.Failures
	r.statusMu.Unlock()
	if l := r.cfg.Lookout; l != nil {
		if err != nil {
			l.Lost(err)
		} else {
			l.Seen()
		}
	}
	if err != nil {
		// Said at once, then every tenth time: a long outage must not
		// fill the log, nor go unsaid.
		if failures == 1 || failures%10 == 0 {
			ev := log.Error()
			if errors.Is(err, ErrUnavailable) {
				ev = ev.Bool("s3_unavailable", true)
			}
			ev.Err(err).Int("failures", failures).Msg("Cannot replicate the state to S3: a failover now would lose what changed since the last upload")
		}
		return err
	}
	if up == nil {
		return nil
	}
	log.Debug().Str("key", up.key).Int64("size", up.Size).Int64("stored", up.CompressedSize).Msg("State replicated to S3")
	deleted, perr := r.prune(ctx)
	r.statusMu.Lock()
	r.status.RetentionDelete += deleted
	r.status.RetentionError = ""
	if perr != nil {
		r.status.RetentionError = perr.Error()
	}
	r.statusMu.Unlock()
	if perr != nil {
		log.Warn().Err(perr).Msg("Cannot delete old state replicas")
	}
	return nil
}

// uploaded is a replica just stored.
type uploaded struct {
	Manifest
	key string
}

// upload takes a snapshot and uploads it, unless nothing changed since
// the last upload: then it returns nil, nil.
func (r *Replicator) upload(ctx context.Context) (*uploaded, error) {
	// Read before the snapshot: a write in between is in the snapshot and
	// makes the next check upload again, which is only an extra upload.
	version, err := r.cfg.Source.DataVersion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the state's data version: %w", err)
	}
	if r.uploaded && version == r.version {
		// Nothing to upload, but S3 must still answer for the standby
		// to restore (said now, not at the failover), and hold our last
		// replica (a bucket emptied meanwhile gets it again): one listing.
		present, err := r.present(ctx, r.last)
		if err != nil || present {
			return nil, err
		}
		zerolog.Ctx(ctx).Warn().Str("key", r.layout.manifest(r.last)).Msg("The last state replica is gone from S3: uploading the state again")
	}
	if r.next == 0 {
		if r.next, err = r.firstSeq(ctx); err != nil {
			return nil, err
		}
	}
	created := r.clock.Now()
	dir, err := os.MkdirTemp(r.cfg.TempDir, "vigie-replica-")
	if err != nil {
		return nil, fmt.Errorf("snapshot the state: %w", err)
	}
	defer os.RemoveAll(dir)
	snap := filepath.Join(dir, store.FileName)
	if err := r.cfg.Source.SnapshotTo(ctx, snap); err != nil {
		return nil, fmt.Errorf("snapshot the state: %w", err)
	}
	schema, err := schemaVersionOf(snap)
	if err != nil {
		return nil, fmt.Errorf("snapshot the state: %w", err)
	}
	i := id{r.cfg.Term, r.next}
	r.next++ // even on failure: a later upload never overwrites an object a restore may be reading
	key := r.layout.data(i)
	sum, size, stored, err := compressUpload(ctx, r.cfg.Storage, key, snap)
	if err != nil {
		return nil, err
	}
	m := Manifest{
		Format: ManifestFormat, Term: i.term, Seq: i.seq, Object: i.String() + dataSuffix, Instance: r.cfg.Instance,
		SchemaVersion: schema, SHA256: sum, Size: size, CompressedSize: stored, Created: created.UTC(),
		ConfigFingerprint: r.cfg.ConfigFingerprint,
	}
	// The manifest last: the replica exists once it does.
	if err := r.cfg.Storage.PutJSON(ctx, r.layout.manifest(i), m); err != nil {
		return nil, unavailable(err)
	}
	r.uploaded, r.version, r.last = true, version, i
	return &uploaded{Manifest: m, key: key}, nil
}

// present tells whether replica i's manifest is in the bucket.
func (r *Replicator) present(ctx context.Context, i id) (bool, error) {
	objs, err := r.cfg.Storage.List(ctx, r.layout.manifest(i))
	if err != nil {
		return false, unavailable(err)
	}
	for _, o := range objs {
		if o.Key == r.layout.manifest(i) {
			return true, nil
		}
	}
	return false, nil
}

// firstSeq is the seq of this Replicator's first upload: after any upload
// already made with its term (a term is one leader's, but a restarted
// replicator must not overwrite its own replicas).
func (r *Replicator) firstSeq(ctx context.Context) (uint64, error) {
	objs, err := r.cfg.Storage.List(ctx, r.layout.dir)
	if err != nil {
		return 0, unavailable(err)
	}
	next := uint64(1)
	for _, o := range objs {
		if i, _, ok := r.layout.parseKey(o.Key); ok && i.term == r.cfg.Term && i.seq >= next {
			next = i.seq + 1
		}
	}
	return next, nil
}

// schemaVersionOf reads a database file's user_version, the store's schema
// version, from its header (offset 60, big-endian).
func schemaVersionOf(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var header [100]byte
	if _, err := io.ReadFull(f, header[:]); err != nil {
		return 0, fmt.Errorf("%s: read the database header: %w", path, err)
	}
	if string(header[:16]) != "SQLite format 3\x00" {
		return 0, fmt.Errorf("%s is not a SQLite database", path)
	}
	return int(int32(binary.BigEndian.Uint32(header[60:64]))), nil
}

// compressUpload streams the file at path through zstd into key, and
// returns the SHA-256 and size of the file and the stored size.
func compressUpload(ctx context.Context, st Storage, key, path string) (sum string, size, stored int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, 0, err
	}
	defer f.Close()
	hash := sha256.New()
	pr, pw := io.Pipe()
	compressed := make(chan error, 1)
	go func() { // ends when the file is read or the pipe is closed below
		// One encoder goroutine: the bot's own work needs the other core.
		enc, err := zstd.NewWriter(pw, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err == nil {
			size, err = io.Copy(enc, io.TeeReader(f, hash))
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err) // nil: a clean EOF for the upload
		compressed <- err
	}()
	counted := &countingReader{r: pr}
	stored, err = st.Upload(ctx, key, counted, "application/zstd")
	pr.CloseWithError(errUploadEnded) // unblocks the compressor if the upload stopped early
	cerr := <-compressed
	sent := counted.n
	switch {
	case cerr != nil && !errors.Is(cerr, errUploadEnded):
		return "", 0, 0, fmt.Errorf("compress the snapshot: %w", cerr)
	case err != nil:
		return "", 0, 0, unavailable(err)
	case stored != sent:
		return "", 0, 0, unavailable(fmt.Errorf("S3 stored %d bytes of %s, %d were sent", stored, key, sent))
	}
	return hex.EncodeToString(hash.Sum(nil)), size, stored, nil
}

var errUploadEnded = errors.New("upload ended")

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// prune deletes the replicas beyond the newest Keep, and the uploads cut
// short older than the newest replica, of this term and older ones only:
// a later leader's objects are its own to manage. It returns how many
// objects it deleted.
func (r *Replicator) prune(ctx context.Context) (int, error) {
	entries, _, err := listReplicas(ctx, r.cfg.Storage, r.layout)
	if err != nil {
		return 0, err
	}
	// entries are newest first: keep the first Keep complete ones; below
	// the newest complete one, delete the rest of this term and older.
	kept := 0
	var newest *id
	var doomed []*replicaEntry
	for _, e := range entries {
		if complete := e.manifest && e.dataSize >= 0; complete && kept < r.cfg.Keep {
			kept++
			if newest == nil {
				newest = &e.id
			}
			continue
		}
		if newest != nil && e.id.term <= r.cfg.Term && e.id.less(*newest) {
			doomed = append(doomed, e)
		}
	}
	deleted := 0
	for _, e := range slices.Backward(doomed) { // oldest first, for a predictable log
		// The manifest first: a replica never points at deleted data.
		if e.manifest {
			if err := r.cfg.Storage.Remove(ctx, r.layout.manifest(e.id)); err != nil {
				return deleted, unavailable(err)
			}
			deleted++
		}
		if e.dataSize >= 0 {
			if err := r.cfg.Storage.Remove(ctx, r.layout.data(e.id)); err != nil {
				return deleted, unavailable(err)
			}
			deleted++
		}
	}
	return deleted, nil
}
