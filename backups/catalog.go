package backups

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"
)

// Backup is one backup as S3 holds it: its manifest (nil when broken) and
// its latest verification.
type Backup struct {
	ID           string
	Key          string // the manifest's key
	Manifest     *Manifest
	Verification *Verification
	Broken       string // why it cannot count as a good backup; "" when good
}

// started is when the backup began: the manifest's, else the time in its ID.
func (b *Backup) started() time.Time {
	if b.Manifest != nil {
		return b.Manifest.Started
	}
	if i := strings.LastIndexByte(b.ID, '-'); i >= 0 {
		if t, err := time.Parse(idTime, b.ID[i+1:]); err == nil {
			return t
		}
	}
	return time.Time{}
}

// Good reports whether it counts: a readable manifest whose objects exist
// with the sizes it names.
func (b *Backup) Good() bool { return b.Broken == "" && b.Manifest != nil }

// catalog lists the backups of targets from S3, the source of truth: a
// fresh Vigie with an empty data directory lists the same. Manifests never
// change once written, so each is read once; verifications are read again
// when their ETag changes.
type catalog struct {
	storage *Storage
	layout  layout

	mu        sync.Mutex
	manifests map[string]*Manifest // by key
	verified  map[string]cachedVerification
}

type cachedVerification struct {
	etag string
	v    *Verification
}

func newCatalog(s *Storage, l layout) *catalog {
	return &catalog{storage: s, layout: l, manifests: map[string]*Manifest{}, verified: map[string]cachedVerification{}}
}

// list returns a target's backups, oldest first, and the keys under its
// prefix that belong to no manifest (left by a run that died between its
// upload and its manifest).
func (c *catalog) list(ctx context.Context, target string) ([]*Backup, []storedObject, error) {
	objects, err := c.storage.List(ctx, c.layout.targetPrefix(target))
	if err != nil {
		return nil, nil, err
	}
	byKey := map[string]storedObject{}
	for _, o := range objects {
		byKey[o.Key] = o
	}
	claimed := map[string]bool{}
	var out []*Backup
	for _, o := range objects {
		if !strings.HasSuffix(o.Key, manifestSuffix) {
			continue
		}
		b := &Backup{ID: strings.TrimSuffix(path.Base(o.Key), manifestSuffix), Key: o.Key}
		claimed[o.Key] = true
		m, err := c.manifest(ctx, o.Key)
		if err != nil {
			b.Broken = err.Error()
			out = append(out, b)
			continue
		}
		b.Manifest = m
		var missing []string
		for _, obj := range m.Objects {
			claimed[obj.Key] = true
			switch got, ok := byKey[obj.Key]; {
			case !ok:
				missing = append(missing, obj.Key+" is missing")
			case got.Size != obj.StoredBytes:
				missing = append(missing, fmt.Sprintf("%s holds %d bytes, the manifest says %d", obj.Key, got.Size, obj.StoredBytes))
			}
		}
		if len(missing) > 0 {
			b.Broken = strings.Join(missing, "; ")
		}
		vkey := strings.TrimSuffix(o.Key, manifestSuffix) + verifySuffix
		claimed[vkey] = true
		if v, ok := byKey[vkey]; ok {
			b.Verification = c.verification(ctx, v)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b *Backup) int { return a.started().Compare(b.started()) })
	var orphans []storedObject
	for _, o := range objects {
		if !claimed[o.Key] {
			orphans = append(orphans, o)
		}
	}
	return out, orphans, nil
}

func (c *catalog) manifest(ctx context.Context, key string) (*Manifest, error) {
	c.mu.Lock()
	m, ok := c.manifests[key]
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	data, err := c.storage.get(ctx, key)
	if err != nil {
		return nil, err
	}
	m, err = parseManifest(data, key)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.manifests[key] = m
	c.mu.Unlock()
	return m, nil
}

// verification reads a verification record; an unreadable one counts as
// no verification.
func (c *catalog) verification(ctx context.Context, o storedObject) *Verification {
	c.mu.Lock()
	cached, ok := c.verified[o.Key]
	c.mu.Unlock()
	if ok && cached.etag == o.ETag {
		return cached.v
	}
	data, err := c.storage.get(ctx, o.Key)
	if err != nil {
		return nil
	}
	var v Verification
	if json.Unmarshal(data, &v) != nil {
		return nil
	}
	c.mu.Lock()
	c.verified[o.Key] = cachedVerification{etag: o.ETag, v: &v}
	c.mu.Unlock()
	return &v
}

// forget drops a deleted manifest from the cache.
func (c *catalog) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.manifests, key)
}

// find returns a target's backup by ID (or ID prefix, or its timestamp),
// or the newest good one when id is "".
func find(backups []*Backup, id string) (*Backup, error) {
	if id == "" {
		for i := len(backups) - 1; i >= 0; i-- {
			if backups[i].Good() {
				return backups[i], nil
			}
		}
		return nil, fmt.Errorf("no good backup yet")
	}
	var matches []*Backup
	for _, b := range backups {
		if b.ID == id || strings.HasSuffix(b.ID, "-"+id) || strings.HasPrefix(b.ID, id) {
			matches = append(matches, b)
		}
	}
	switch {
	case len(matches) == 1:
		return matches[0], nil
	case len(matches) > 1:
		return nil, fmt.Errorf("%q matches %d backups: give more of the ID", id, len(matches))
	}
	return nil, fmt.Errorf("no backup %q", id)
}
