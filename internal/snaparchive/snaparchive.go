// Package snaparchive reads Consul and Nomad raft snapshot archives: a
// gzipped tar of meta.json, state.bin and SHA256SUMS (sha256sum's
// format), as "consul snapshot inspect" and Nomad check them.
package snaparchive

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Summary is what an archive holds.
type Summary struct {
	Members    []string // in archive order, SHA256SUMS left out
	Index      uint64   // the raft index meta.json gives
	Size       int64    // the size of state.bin meta.json gives
	StateBytes int64    // the size of state.bin
}

// Check reads an archive as it streams, without keeping its members, and
// checks that SHA256SUMS holds for each of them and that meta.json tells
// state.bin's size.
func Check(r io.Reader) (Summary, error) {
	var s Summary
	zr, err := gzip.NewReader(r)
	if err != nil {
		return s, fmt.Errorf("not a gzip archive: %w", err)
	}
	tr := tar.NewReader(zr)
	sums := map[string]string{}
	var listed map[string]string
	var meta []byte
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("damaged archive: %w", err)
		}
		if h.Name == "SHA256SUMS" {
			if listed, err = parseSums(tr); err != nil {
				return s, err
			}
			continue
		}
		hash := sha256.New()
		var w io.Writer = hash
		var metaBuf strings.Builder
		if h.Name == "meta.json" {
			w = io.MultiWriter(hash, &metaBuf)
		}
		n, err := io.Copy(w, tr)
		if err != nil {
			return s, fmt.Errorf("damaged archive member %s: %w", h.Name, err)
		}
		switch h.Name {
		case "meta.json":
			meta = []byte(metaBuf.String())
		case "state.bin":
			s.StateBytes = n
		}
		sums[h.Name] = hex.EncodeToString(hash.Sum(nil))
		s.Members = append(s.Members, h.Name)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return s, fmt.Errorf("damaged archive: %w", err)
	}
	if listed == nil {
		return s, errors.New("the archive has no SHA256SUMS")
	}
	for name, want := range listed {
		got, ok := sums[name]
		switch {
		case !ok:
			return s, fmt.Errorf("SHA256SUMS lists %s, which the archive lacks", name)
		case got != want:
			return s, fmt.Errorf("%s does not match SHA256SUMS", name)
		}
	}
	for _, m := range s.Members {
		if _, ok := listed[m]; !ok {
			return s, fmt.Errorf("%s is not in SHA256SUMS", m)
		}
	}
	var m struct {
		Index uint64
		Size  int64
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return s, fmt.Errorf("meta.json: %w", err)
	}
	s.Index, s.Size = m.Index, m.Size
	if s.Size != s.StateBytes {
		return s, fmt.Errorf("meta.json says state.bin holds %d bytes, it holds %d", s.Size, s.StateBytes)
	}
	return s, nil
}

// parseSums reads sha256sum's format: "<hex>  <name>" per line.
func parseSums(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		sum, name, ok := strings.Cut(line, " ")
		name = strings.TrimLeft(strings.TrimSpace(name), "*")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("SHA256SUMS has a malformed line %q", line)
		}
		out[name] = strings.ToLower(sum)
	}
	return out, sc.Err()
}
