package backups

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/vigie/vigie/internal/snaparchive"
	"github.com/vigie/vigie/internal/tlserr"
)

// Cluster is a Consul or Nomad HTTP API a snapshot is saved from.
type Cluster struct {
	Name    string // "Consul" or "Nomad"
	Address string // http(s)://host:port
	Client  *http.Client
	Header  http.Header // the token
	Query   url.Values  // dc or region
}

// snapshotPaths of each API: Consul's and Nomad's snapshot save.
var snapshotPaths = map[string]string{"Consul": "/v1/snapshot", "Nomad": "/v1/operator/snapshot"}

// snapshotSource saves a Consul or Nomad raft snapshot: a gzipped tar of
// meta.json, state.bin and SHA256SUMS, streamed as the server sends it.
type snapshotSource struct {
	c Cluster

	mu     sync.Mutex
	result SnapshotFacts
}

func (s *snapshotSource) facts() Facts {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.result
	return Facts{Snapshot: &f}
}

func (s *snapshotSource) parts(ctx context.Context) ([]part, error) {
	leader, err := s.leader(ctx)
	if err != nil {
		return nil, err
	}
	s.result.Leader = leader
	return []part{{ext: "snap", kind: partSnapshot, open: s.open}}, nil
}

func (s *snapshotSource) request(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	u := strings.TrimRight(s.c.Address, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", s.c.Name, s.c.Address, err)
	}
	for k, v := range s.c.Header {
		req.Header[k] = v
	}
	resp, err := s.c.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s at %s is unreachable: %w", s.c.Name, s.c.Address, tlserr.Explain(err, strings.ToLower(s.c.Name)))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s at %s answered %s to GET %s: %s%s", s.c.Name, s.c.Address, resp.Status, path,
			strings.TrimSpace(string(body)), snapshotHint(s.c.Name, resp.StatusCode, string(body)))
	}
	return resp, nil
}

// snapshotHint says what to do about the refusals operators meet.
func snapshotHint(name string, status int, body string) string {
	switch {
	case status == http.StatusForbidden:
		return " (saving a snapshot needs a management token)"
	case name == "Nomad" && strings.Contains(body, "open is not supported"):
		return " (a Nomad dev agent keeps raft in memory and has no snapshot to save)"
	}
	return ""
}

// leader asks who leads the cluster, which also checks it answers.
func (s *snapshotSource) leader(ctx context.Context) (string, error) {
	resp, err := s.request(ctx, "/v1/status/leader", s.c.Query)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var leader string
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&leader); err != nil {
		return "", fmt.Errorf("%s at %s: leader: %w", s.c.Name, s.c.Address, err)
	}
	if leader == "" {
		return "", fmt.Errorf("%s at %s has no leader: a snapshot cannot be taken", s.c.Name, s.c.Address)
	}
	return leader, nil
}

// open starts the snapshot download. Any server may answer (stale): the
// snapshot is the state it has applied.
func (s *snapshotSource) open(ctx context.Context) (io.ReadCloser, error) {
	q := url.Values{}
	for k, v := range s.c.Query {
		q[k] = v
	}
	q.Set("stale", "true")
	resp, err := s.request(ctx, snapshotPaths[s.c.Name], q)
	if err != nil {
		return nil, err
	}
	body := &snapshotBody{ReadCloser: resp.Body, name: s.c.Name, address: s.c.Address, check: newArchiveCheck(), src: s}
	// Nomad sends the SHA-256 of the whole body: checked at its end, so a
	// snapshot damaged on the way fails the backup rather than being kept.
	if d, ok := strings.CutPrefix(resp.Header.Get("Digest"), "sha-256="); ok {
		if want, err := base64.StdEncoding.DecodeString(d); err == nil {
			body.want, body.hash = want, sha256.New()
		}
	}
	return body, nil
}

// snapshotBody checks the snapshot as it streams: a gzip stream (not an
// error page), its Digest when the server sent one, and its own
// SHA256SUMS: a damaged snapshot fails its backup rather than being kept.
type snapshotBody struct {
	io.ReadCloser
	name, address string
	want          []byte
	hash          hash.Hash
	head          int
	check         *archiveCheck
	src           *snapshotSource
}

func (b *snapshotBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.head < 2 && n > 0 {
		magic := []byte{0x1f, 0x8b}
		for i := 0; i < n && b.head < 2; i, b.head = i+1, b.head+1 {
			if p[i] != magic[b.head] {
				return 0, fmt.Errorf("%s at %s sent a snapshot that is not a gzip archive", b.name, b.address)
			}
		}
	}
	b.check.Write(p[:n])
	if b.hash != nil {
		b.hash.Write(p[:n])
		if err == io.EOF && string(b.hash.Sum(nil)) != string(b.want) {
			return n, fmt.Errorf("%s at %s: the snapshot does not match its Digest header (damaged in transit)", b.name, b.address)
		}
	}
	if err == io.EOF {
		sum, cerr := b.check.result()
		if cerr != nil {
			return n, fmt.Errorf("%s at %s sent a damaged snapshot: %w", b.name, b.address, cerr)
		}
		b.src.mu.Lock()
		b.src.result.Index = sum.Index
		b.src.mu.Unlock()
	}
	return n, err
}

func (b *snapshotBody) Close() error {
	b.check.result() // ends its goroutine
	return b.ReadCloser.Close()
}

// archiveCheck runs snaparchive.Check on what is written to it, on its
// own goroutine; a check that gave up does not hold the stream.
type archiveCheck struct {
	pw   *io.PipeWriter
	done chan struct{}
	sum  snaparchive.Summary
	err  error
}

func newArchiveCheck() *archiveCheck {
	pr, pw := io.Pipe()
	c := &archiveCheck{pw: pw, done: make(chan struct{})}
	go func() { // owned by the body: result waits for it
		defer close(c.done)
		c.sum, c.err = snaparchive.Check(pr)
		_, _ = io.Copy(io.Discard, pr)
	}()
	return c
}

func (c *archiveCheck) Write(p []byte) {
	_, _ = c.pw.Write(p)
}

func (c *archiveCheck) result() (snaparchive.Summary, error) {
	c.pw.Close()
	<-c.done
	return c.sum, c.err
}
