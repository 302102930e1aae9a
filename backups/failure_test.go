package backups

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/internal/fakeconsul"
	"github.com/vigie/vigie/store"
)

// bigSlowSnapshot makes the Consul fake serve a valid 24 MiB snapshot of
// what zstd cannot shrink, slowly: long enough to stop an upload in the
// middle.
func bigSlowSnapshot(consul *fakeconsul.Server) {
	state := make([]byte, 24<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range state {
		state[i] = byte(rng.Uint32())
	}
	consul.SetSnapshot(fakeconsul.BuildSnapshot(99, state))
	consul.ThrottleSnapshot(1<<20, 50*time.Millisecond)
}

// A run cut off mid-upload (S3 gone, or the run cancelled) leaves no
// manifest and no pending multipart upload, and is recorded.
func TestFailedUploadLeavesNothing(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 1}}}
	})
	bigSlowSnapshot(consul)

	// Cancelled (Vigie stopping) once parts are stored.
	ctx, cancel := context.WithCancel(t.Context())
	_, err := e.svc.Backup(ctx, "consul", "schedule", func(p Progress) {
		if p.Stored > 6<<20 {
			cancel()
		}
	})
	if err == nil {
		t.Fatal("a cancelled backup succeeded")
	}
	runs, _ := e.st.LastBackupRuns(t.Context(), "consul", ActionBackup, 1)
	if len(runs) != 1 || runs[0].Outcome != store.RunInterrupted || runs[0].UploadKey != "" {
		t.Fatalf("runs %+v", runs)
	}
	if p := e.pending(t); len(p) != 0 {
		t.Fatalf("pending uploads after a cancelled run: %v", p)
	}

	// S3 stops answering mid-upload.
	e.clock.Advance(time.Minute)
	stopped := false
	_, err = e.svc.Backup(t.Context(), "consul", "schedule", func(p Progress) {
		if p.Stored > 6<<20 && !stopped {
			stopped = true
			e.s3.Stop()
		}
	})
	if err == nil || !strings.Contains(err.Error(), "S3 at "+e.s3.URL) {
		t.Fatalf("backup with S3 gone: %v", err)
	}
	t.Logf("S3 gone: %v", err)
	runs, _ = e.st.LastBackupRuns(t.Context(), "consul", ActionBackup, 1)
	if runs[0].Outcome != store.RunFailed {
		t.Fatalf("runs %+v", runs)
	}
	if len(runs) != 1 || !strings.HasSuffix(runs[0].UploadKey, ".snap.zst") {
		t.Fatalf("the upload S3 could not abort is not kept to abort: %+v", runs)
	}
	e.s3.Restart(t)
	if p := e.pending(t); len(p) != 1 {
		t.Fatalf("pending uploads with S3 back: %v", p)
	}
	if err := e.svc.AbortLeftUploads(t.Context()); err != nil {
		t.Fatal(err)
	}
	if p := e.pending(t); len(p) != 0 {
		t.Fatalf("pending uploads after the retry: %v", p)
	}
	if left, _ := e.st.UploadsToAbort(t.Context()); len(left) != 0 {
		t.Fatalf("uploads still to abort: %+v", left)
	}
	list, err := e.svc.List(t.Context(), "consul")
	if err != nil || len(list) != 0 {
		t.Fatalf("backups after failures: %+v %v", list, err)
	}
}

// Recover, at start: runs a killed process left running are recorded as
// interrupted and their uploads aborted; uploads of Vigie's prefix older
// than a day are aborted; younger ones of other writers are left alone.
func TestRecoverAfterAKill(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	key := "vigie/main-db/2026-11-30/main-db-20261130T033000Z.dump.zst"
	e.s3.CreateIncompleteUpload(t, bucket, key, 0)
	id, err := e.st.StartBackupRun(ctx, "main-db", ActionBackup, "schedule", "main-db-20261130T033000Z")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.SetBackupUpload(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	old := "vigie/main-db/2026-11-27/main-db-20261127T033000Z.dump.zst"
	uploadID := e.s3.CreateIncompleteUpload(t, bucket, old, 0)
	e.s3.BackdateUpload(t, bucket, old, uploadID, e.clock.Now().Add(-49*time.Hour))
	foreign := "elsewhere/someone-else.bin"
	e.s3.CreateIncompleteUpload(t, bucket, foreign, 0)
	young := "vigie/main-db/2026-11-30/another-writer.bin"
	e.s3.CreateIncompleteUpload(t, bucket, young, 0)

	if err := e.svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	pending := e.pending(t)
	if len(pending) != 2 || !contains(pending, foreign) || !contains(pending, young) {
		t.Fatalf("pending after recover: %v", pending)
	}
	runs, _ := e.st.LastBackupRuns(ctx, "main-db", ActionBackup, 1)
	if len(runs) != 1 || runs[0].Outcome != store.RunInterrupted || runs[0].FinishedSeq == 0 {
		t.Fatalf("runs %+v", runs)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// One run per target at a time: a second is refused naming the first.
func TestOneRunPerTarget(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 1}}}
	})
	bigSlowSnapshot(consul)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once bool
		_, err := e.svc.Backup(t.Context(), "consul", "@alice:example.org", func(Progress) {
			if !once {
				once = true
				close(started)
			}
		})
		done <- err
	}()
	<-started
	_, err := e.svc.Verify(t.Context(), "consul", "", "@bob:example.org", nil)
	var busy *BusyError
	if !errors.As(err, &busy) || !strings.Contains(err.Error(), "backup of consul is already running (started by @alice:example.org") {
		t.Fatalf("second run: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// What S3 refuses is said with its endpoint and S3 error code, and what
// to check.
func TestS3Refusals(t *testing.T) {
	consul := fakeconsul.New()
	t.Cleanup(consul.Close)
	e := newEnv(t, func(e *env, _ []Target) []Target {
		return []Target{{Name: "consul", Kind: KindConsul, Cluster: cluster("Consul", consul.URL), Retention: Retention{Last: 1}}}
	})
	for name, tc := range map[string]struct {
		cfg  StorageConfig
		want string
	}{
		"wrong secret":   {e.storageConfig("not-the-secret"), "SignatureDoesNotMatch"},
		"unknown key":    {func() StorageConfig { c := e.storageConfig(e.s3.SecretKey); c.AccessKeyID = "GKnope"; return c }(), "InvalidAccessKeyId"},
		"missing bucket": {func() StorageConfig { c := e.storageConfig(e.s3.SecretKey); c.Bucket = "nope"; return c }(), "NoSuchBucket"},
		"wrong region":   {func() StorageConfig { c := e.storageConfig(e.s3.SecretKey); c.Region = "us-east-1"; return c }(), "AuthorizationHeaderMalformed"},
	} {
		s, err := NewStorage(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Check(t.Context())
		if err == nil || !strings.Contains(err.Error(), "S3 at "+e.s3.URL) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
		svc, err := New(Config{Targets: e.svc.cfg.Targets, Storage: s, Prefix: "vigie", WorkDir: t.TempDir(), Timeout: time.Minute}, e.st, e.clock, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Backup(t.Context(), "consul", "schedule", nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: backup: %v", name, err)
		}
	}
	if _, err := NewStorage(StorageConfig{Endpoint: "garage.example.org:3900"}); err == nil || !strings.Contains(err.Error(), "not an http(s)://host:port URL") {
		t.Errorf("endpoint without scheme: %v", err)
	}
}
