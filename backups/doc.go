// Package backups backs up PostgreSQL (through the Stolon proxy), Consul
// and Nomad to S3 (Garage): sources stream through zstd and SHA-256 into a
// multipart upload, a manifest written last makes a backup exist, and S3
// stays the source of truth. It schedules runs, keeps the right ones,
// verifies them by restoring, restores on demand, reports, and tells the
// incident pipeline when one fails or grows stale.
package backups
