package doctor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/replica"
)

// probeDir is where the write probe goes, under s3.prefix: target names
// cannot start with a dot, so no backup is ever listed there.
const probeDir = ".vigie-doctor"

func s3Checks(p *Plan, cfg *config.Config, tc *tls.Config) {
	const comp = "s3"
	if len(cfg.Backups.Targets) == 0 && !cfg.HA.Enabled {
		p.Add(Check{Component: comp, Name: "bucket", Run: func(context.Context) Result {
			return Skip("no [[backups.targets]] and [ha] is off: S3 is not used")
		}})
		return
	}
	st, err := backups.NewStorage(backups.StorageConfig{
		Endpoint: cfg.S3.Endpoint, Region: cfg.S3.Region, Bucket: cfg.S3.Bucket,
		AccessKeyID: cfg.S3.AccessKeyID.Reveal(), SecretAccessKey: cfg.S3.SecretAccessKey.Reveal(), TLS: tc,
		PartSize: 5 << 20, ParallelParts: 1,
	})
	bucket := NewLazy(func(ctx context.Context) (struct{}, error) {
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, st.Check(ctx)
	})
	p.Add(Check{Component: comp, Name: "bucket", Run: func(ctx context.Context) Result {
		if _, err := bucket.Get(ctx); err != nil {
			return Fail("%v", err)
		}
		return OK("bucket %s at %s can be listed", cfg.S3.Bucket, cfg.S3.Endpoint)
	}})
	p.Add(Check{Component: comp, Name: "write and delete", Run: func(ctx context.Context) Result {
		if _, err := bucket.Get(ctx); err != nil {
			return Skip("the bucket cannot be listed (see above)")
		}
		key := path.Join(cfg.S3.Prefix, probeDir, "probe-"+rand.Text()+".json")
		if err := st.PutJSON(ctx, key, map[string]string{"written_by": "vigie doctor", "at": time.Now().UTC().Format(time.RFC3339)}); err != nil {
			return Fail("%v", err)
		}
		rc, err := st.Open(ctx, key)
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		// Removed whatever happened to the read.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		rmErr := st.Remove(rmCtx, key)
		switch {
		case err != nil:
			return Fail("wrote %s but cannot read it back: %v", key, err)
		case rmErr != nil:
			return Fail("wrote and read %s but cannot delete it: %v (prune deletes old backups: the key needs delete rights too)", key, rmErr)
		}
		return OK("wrote, read and deleted %s", key)
	}})
	if cfg.HA.Enabled {
		p.Add(Check{Component: comp, Name: "ha replica", Run: func(ctx context.Context) Result {
			if _, err := bucket.Get(ctx); err != nil {
				return Skip("the bucket cannot be listed (see above)")
			}
			return replicaResult(replica.Newest(ctx, st, cfg.ReplicaPrefix()))
		}})
	}
	if g := cfg.Garage; g.AdminEndpoint != "" {
		garage := &backups.Garage{Endpoint: g.AdminEndpoint, Token: g.AdminToken.Reveal(), Client: &http.Client{}}
		p.Add(Check{Component: comp, Name: "garage admin", Run: func(ctx context.Context) Result {
			s, err := garage.Status(ctx, cfg.S3.Bucket)
			if err != nil {
				return Fail("%v", err)
			}
			detail := fmt.Sprintf("admin API %s: cluster %s, %d/%d storage nodes up, %d/%d partitions all ok; bucket %s: %d objects",
				s.API, s.Health, s.StorageNodesOK, s.StorageNodes, s.PartitionsAllOK, s.Partitions, cfg.S3.Bucket, s.Objects)
			if s.Health != "healthy" {
				return Warn("%s", detail)
			}
			return OK("%s", detail)
		}})
	}
}

// replicaResult tells what a new leader would restore first.
func replicaResult(m replica.Manifest, found bool, err error) Result {
	switch {
	case err != nil && errors.Is(err, replica.ErrUnavailable):
		return Fail("cannot list the state replicas: %v", err)
	case err != nil:
		return Warn("the newest state replica is not usable (%v): a new leader would fall back to an older one", err)
	case !found:
		return Warn("no state replica yet: the first leader uploads one at once; until then a takeover starts from the new leader's own data directory")
	}
	return OK("newest: term %d, seq %d, written by %s %s ago (schema %d, %d bytes)", m.Term, m.Seq, m.Instance,
		time.Since(m.Created).Round(time.Second), m.SchemaVersion, m.Size)
}
