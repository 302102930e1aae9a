package fakeconsul

// GET /v1/snapshot, Consul's snapshot save, as Consul v1.22.0 serves it
// (agent/snapshot_endpoint.go, agent/consul/snapshot_endpoint.go,
// acl/authorizer.go and acl/errors.go), starting from an archive captured
// from a real agent (testdata/consul-snapshot.snap, see testdata/README.md).
//
// Deviation: PUT /v1/snapshot (restore) answers 501; the fake restores
// nothing.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigie/vigie/internal/slowhttp"
	"github.com/vigie/vigie/internal/snaparchive"
)

// SnapshotIndex is the X-Consul-Index of the captured snapshot, the raft
// index in its meta.json.
const SnapshotIndex = 31

//go:embed testdata/consul-snapshot.snap
var snapshotArchive []byte

// Snapshot returns the captured archive: GET /v1/snapshot?stale from a
// Consul v1.22.0 dev agent holding two KV keys, a gzipped tar of meta.json,
// state.bin and SHA256SUMS.
func Snapshot() []byte { return bytes.Clone(snapshotArchive) }

// snapshotState is what GET /v1/snapshot serves; guarded by Server.mu.
type snapshotState struct {
	archive  []byte // nil: the capture
	index    uint64
	chunk    int           // bytes per write when throttled, 0: all at once
	every    time.Duration // pause between throttled writes
	failures []int         // statuses of the next answers
}

// SetSnapshot makes GET /v1/snapshot serve archive (nil: the capture again),
// which need not be valid: a truncated or corrupted one is served as is.
// X-Consul-Index is the Index of the archive's meta.json, as Consul reports
// the snapshot's raft index, or SnapshotIndex when it has none.
func (s *Server) SetSnapshot(archive []byte) {
	index := uint64(SnapshotIndex)
	if sum, err := snaparchive.Check(bytes.NewReader(archive)); err == nil {
		index = sum.Index
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.archive, s.snap.index = bytes.Clone(archive), index
}

// ThrottleSnapshot makes GET /v1/snapshot stream its archive slowly: chunk
// bytes per write, each flushed, with a pause of every between writes (the
// capture at 256 bytes every 50ms takes about 0.8 s). With SetSnapshot of a
// large archive it makes a long download, to cut mid-way. chunk <= 0 turns
// throttling off. The headers go out at once, as Consul sends them before
// the body.
func (s *Server) ThrottleSnapshot(chunk int, every time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.chunk, s.snap.every = max(chunk, 0), every
}

// FailNextSnapshot makes the next n snapshot saves answer status with
// Consul's body for it, as FailNext does for health queries (500 "No
// cluster leader", 403 "ACL not found", 429 empty, else the status text),
// after the datacenter check and before the ACL check, where Consul
// forwards to the leader. Health queries do not consume them.
func (s *Server) FailNextSnapshot(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.snap.failures = append(s.snap.failures, status)
	}
}

// anonymousDenied is Consul's answer to a snapshot save with no token
// under a deny policy: the anonymous token lacks acl:write, which is what
// Authorizer.Snapshot checks (SnapshotAllowed, acl/authorizer.go).
const anonymousDenied = "Permission denied: anonymous token lacks permission 'acl:write'. The anonymous token is used implicitly when a request does not specify a token."

// snapshot serves /v1/snapshot; serve has recorded the request.
func (s *Server) snapshot(w http.ResponseWriter, r *http.Request, token string) {
	s.mu.Lock()
	acl := s.token
	_, scoped := s.scoped[token]
	st := s.snap
	var fail int
	if len(s.snap.failures) > 0 {
		fail = s.snap.failures[0]
		s.snap.failures = s.snap.failures[1:]
	}
	s.mu.Unlock()

	setACLPolicy(w.Header(), acl)
	// The endpoint is registered for GET and PUT; the wrapper answers
	// OPTIONS and refuses other methods before the handler runs.
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		w.Header().Set("Allow", "OPTIONS,GET,PUT")
		return
	case http.MethodPut:
		plain(w, http.StatusNotImplemented, "fakeconsul: snapshot restore (PUT /v1/snapshot) is not implemented")
		return
	default:
		w.Header().Set("Allow", "OPTIONS,GET,PUT")
		plain(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		return
	}
	// ?stale only lets a follower answer; the fake is its own leader.
	if dc := r.URL.Query().Get("dc"); dc != "" && dc != Datacenter {
		plain(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}
	if fail != 0 {
		plain(w, fail, failureBody(fail))
		return
	}
	// Snapshots need acl:write, which only management tokens hold here.
	switch {
	case acl == "" || token == acl:
	case scoped:
		plain(w, http.StatusForbidden, fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission 'acl:write'", AccessorID(token)))
		return
	case token == "":
		plain(w, http.StatusForbidden, anonymousDenied)
		return
	default:
		plain(w, http.StatusForbidden, "ACL not found")
		return
	}

	archive, index := st.archive, st.index
	if archive == nil {
		archive, index = snapshotArchive, SnapshotIndex
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-gzip")
	h.Set("Vary", "Accept-Encoding")
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10)) // Consul's setIndex never sends 0
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", "blocking-query")
	slowhttp.Stream(w, r, archive, st.chunk, st.every)
}

// AccessorID is the AccessorID the fake gives a token in Consul's
// "Permission denied" answers: a UUID derived from the secret.
func AccessorID(token string) string {
	h := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// BuildSnapshot makes a valid snapshot archive, as Consul writes them, of
// state at a raft index: for tests that need another one than the capture
// (a large one, to cut its download mid-way).
func BuildSnapshot(index uint64, state []byte) []byte {
	meta := fmt.Sprintf(`{"Version":1,"ID":"2-%d-1764504427000","Index":%d,"Term":2,"Peers":null,"Configuration":{"Servers":null},"ConfigurationIndex":1,"Size":%d}`,
		index, index, len(state))
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	var sums strings.Builder
	for _, m := range []struct {
		name string
		body []byte
	}{{"meta.json", []byte(meta)}, {"state.bin", state}, {"SHA256SUMS", nil}} {
		if m.name == "SHA256SUMS" {
			m.body = []byte(sums.String())
		} else {
			sum := sha256.Sum256(m.body)
			sums.WriteString(hex.EncodeToString(sum[:]) + "  " + m.name + "\n")
		}
		// Writes to a bytes.Buffer do not fail.
		_ = tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(m.body))})
		_, _ = tw.Write(m.body)
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}
