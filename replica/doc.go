// Package replica keeps Vigie's state in S3 (Garage) for high
// availability: the instance holding the leadership lock uploads a copy of
// its SQLite database every Interval when it changed (Replicator), and an
// instance that becomes leader puts the newest good copy in place before
// it opens the store (Restore).
//
// # Layout
//
// Under <prefix>ha/state/, each replica is two objects:
//
//	<term>-<seq>.db.zst          the database, a VACUUM INTO copy, zstd-compressed
//	<term>-<seq>.manifest.json   written after it: what Restore checks the copy against
//
// term and seq are 20-digit, zero-padded decimals, so that names sort as
// their numbers. term is the leader's: the LockIndex of its acquisition of
// the Consul lock, higher for each later leader; seq counts its uploads.
// Restore takes the highest (term, seq): an upload that a deposed leader
// finishes late has a lower term than its successor's and never wins.
// A replica exists once its manifest does; data without a manifest is an
// upload cut short.
//
// # Why not Litestream
//
// Litestream (github.com/benbjohnson/litestream) streams the WAL to S3
// and restores to a point in time, which would shrink what a failover
// loses from one Interval to about a second. It was evaluated as a
// library first and not taken:
//
//   - cgo is no longer the obstacle: before v0.5 it needed
//     mattn/go-sqlite3 (cgo, which our CGO_ENABLED=0 build rules out), but
//     since v0.5.0 (litestream PR #727) it uses modernc.org/sqlite, as we
//     do. Two users of modernc.org/sqlite must agree on the exact
//     modernc.org/libc version, though, so Litestream's releases would
//     pin our SQLite upgrades.
//   - Its library API is documented as unstable ("use at your own risk,
//     and pin to specific versions"): the CLI is the supported interface.
//   - It has no fencing between two writers: it assumes one primary per
//     replica path, and its lease support was, in early 2026, merged but not
//     enforced by the replication loop (litestream issue #1119). A deposed
//     leader still uploading would interleave with its successor; we would
//     need a path per term and our own choice of the newest term anyway.
//   - It takes over checkpointing and adds a _litestream_lock table to the
//     database it replicates (our schema, our migrations), and brings the
//     AWS, GCS and Azure SDKs with it, where backups.Storage (minio-go)
//     already speaks Garage's path-style SigV4.
//
// VACUUM INTO is what SQLite offers for a consistent copy of a live
// database; taken on a read connection it does not stop the writer.
// Vigie's state is small (megabytes to tens of megabytes), so a full copy
// per Interval is cheap: a 52 MiB state (11.5 MiB compressed) snapshots,
// compresses and uploads in about a second on two cores, 0.3 s of it
// VACUUM INTO, and restores in 0.6 s (BenchmarkSnapshotUpload,
// BenchmarkRestore, against versitygw on loopback). Only a changed state
// is uploaded (store.DataVersion says). What a failover can lose is what
// the leader wrote after its last upload, at most one Interval and one
// upload's time: the new leader resumes from the cursors, incidents and
// outbox as they were then.
package replica
