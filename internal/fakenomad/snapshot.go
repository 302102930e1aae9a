package fakenomad

// GET /v1/operator/snapshot, Nomad's snapshot save, as Nomad v1.11.3
// serves it (command/agent/operator_endpoint.go snapshotSaveRequest and
// nomad/operator_endpoint.go snapshotSave), starting from an archive
// captured from a real server (testdata/nomad-snapshot.snap, see
// testdata/README.md).
//
// Nomad takes the whole snapshot before answering and sends its SHA-256 in
// a Digest header, then streams it. Snapshots need a management token
// (Config.SnapshotDenied makes the fake's token a lesser one), and a dev
// agent, whose in-memory raft has no snapshots, answers 500
// (Config.DevAgent).
//
// Deviations: PUT and POST (restore) get the fake's generic 405 "Invalid
// method"; ?stale and ?region= are ignored.

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"

	"github.com/vigie/vigie/internal/slowhttp"
)

// snapshotState is what GET /v1/operator/snapshot serves; guarded by
// Server.mu.
type snapshotState struct {
	archive []byte // nil: the capture
	digest  string
	chunk   int           // bytes per write when throttled, 0: all at once
	every   time.Duration // pause between throttled writes
}

// Snapshot returns the captured archive: GET /v1/operator/snapshot from a
// Nomad v1.11.3 server with one job and one variable, a gzipped tar of
// meta.json, state.bin and SHA256SUMS.
func Snapshot() []byte { return mustRead("nomad-snapshot.snap") }

// DevAgentSnapshotError is the body of a Nomad dev agent's 500 answer to
// GET /v1/operator/snapshot, as captured.
func DevAgentSnapshotError() string {
	_, body, ok := strings.Cut(string(mustRead("nomad-snapshot-dev-agent.txt")), "\n\n")
	if !ok {
		panic("fakenomad: nomad-snapshot-dev-agent.txt has no body")
	}
	return body
}

// Digest is the Digest header Nomad sends with a snapshot: sha-256= and the
// base64 of the SHA-256 of the archive.
func Digest(archive []byte) string {
	sum := sha256.Sum256(archive)
	return "sha-256=" + base64.StdEncoding.EncodeToString(sum[:])
}

// SetSnapshot makes GET /v1/operator/snapshot serve archive (nil: the
// capture again), which need not be valid: a truncated or corrupted one is
// served as is, with the Digest of what is served, as Nomad computes it
// over the archive it streams.
func (s *Server) SetSnapshot(archive []byte) {
	var digest string
	if archive != nil {
		archive = bytes.Clone(archive)
		digest = Digest(archive)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.archive, s.snap.digest = archive, digest
}

// ThrottleSnapshot makes GET /v1/operator/snapshot stream its archive
// slowly: chunk bytes per write, each flushed, with a pause of every
// between writes (the capture at 256 bytes every 50ms takes about 1 s).
// With SetSnapshot of a large archive it makes a long download, to cut
// mid-way. chunk <= 0 turns throttling off. The headers, Digest included,
// go out at once.
func (s *Server) ThrottleSnapshot(chunk int, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.chunk, s.snap.every = max(chunk, 0), every
}

// snapshot serves GET /v1/operator/snapshot; serve has checked the method
// and the token (denied: no token, or an unknown one).
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	// In Nomad's order: the ACL check, then taking the snapshot.
	if s.cfg.Token != "" && s.cfg.SnapshotDenied {
		plainError(w, http.StatusForbidden, "Permission denied") // structs.ErrPermissionDenied
		return
	}
	if s.cfg.DevAgent {
		plainError(w, http.StatusInternalServerError, DevAgentSnapshotError())
		return
	}
	s.mu.Lock()
	st := s.snap
	s.mu.Unlock()
	if st.archive == nil {
		st.archive = mustRead("nomad-snapshot.snap")
		st.digest = Digest(st.archive)
	}
	h := w.Header()
	h.Set("Digest", st.digest)
	h.Set("Content-Type", "application/x-gzip")
	h.Set("Vary", "Accept-Encoding")
	slowhttp.Stream(w, r, st.archive, st.chunk, st.every)
}
