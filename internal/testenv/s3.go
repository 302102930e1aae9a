package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sys/unix"
)

// VersitygwVersion is the pinned release of versitygw, the S3 gateway the
// harness runs (scripts/test.sh installs it into ToolsDir()).
const VersitygwVersion = "v1.8.0"

// S3Region is the region every test S3 server signs for: Garage's
// default, which is what Vigie's backups talk to in production.
const S3Region = "garage"

// s3ReadyTimeout bounds how long versitygw may take to answer. It
// normally needs a few tens of milliseconds.
const s3ReadyTimeout = 30 * time.Second

// S3 is a running S3 server (versitygw over a directory), private to one
// test, listening on a free loopback port without TLS and checking SigV4
// signatures for S3Region.
type S3 struct {
	Endpoint  string // 127.0.0.1:PORT, as minio-go wants it
	URL       string // http://127.0.0.1:PORT
	Region    string // S3Region
	AccessKey string
	SecretKey string
	Dir       string // the posix root: each bucket is a subdirectory

	bin     string
	iamDir  string
	sidecar string // metadata directory when the filesystem has no user xattrs

	process
}

// StartS3 starts versitygw's posix backend on a fresh directory in
// t.TempDir(), with random root credentials, and stops it at cleanup.
// Without the binary (see VersitygwVersion) it skips loudly, or fails
// with VIGIE_INTEGRATION=require.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING integration test in -short mode")
	}
	bin := filepath.Join(ToolsDir(), "versitygw")
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		unavailable(t, "S3 (versitygw)", fmt.Sprintf("%v (install it: GOBIN=%s go install github.com/versity/versitygw/cmd/versitygw@%s, or run scripts/test.sh)",
			err, ToolsDir(), VersitygwVersion))
	}
	// `versitygw --version` says "git" when built by go install: the
	// module version is in the build info.
	if info.Main.Version != VersitygwVersion {
		unavailable(t, "S3 (versitygw)", fmt.Sprintf("%s is version %q, want %s", bin, info.Main.Version, VersitygwVersion))
	}

	dir := t.TempDir()
	s := &S3{
		Region:    S3Region,
		AccessKey: rand.Text()[:20],
		SecretKey: rand.Text(),
		Dir:       filepath.Join(dir, "root"),
		bin:       bin,
		iamDir:    filepath.Join(dir, "iam"),
		process:   process{name: "versitygw", logPath: filepath.Join(dir, "versitygw.log")},
	}
	for _, d := range []string{s.Dir, s.iamDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// versitygw keeps object metadata in user xattrs and refuses to start
	// on a filesystem without them (tmpfs before Linux 6.6): fall back to
	// its sidecar directory there.
	if _, err := unix.Getxattr(s.Dir, "user.vigie-test", nil); errors.Is(err, unix.ENOTSUP) {
		s.sidecar = filepath.Join(dir, "meta")
		if err := os.Mkdir(s.sidecar, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.stopAtCleanup(t)
	start := time.Now()
	s.startRetrying(t, func() error {
		s.Endpoint = FreeLoopbackAddr(t)
		s.URL = "http://" + s.Endpoint
		return s.launch()
	})
	t.Logf("versitygw %s ready at %s in %s", VersitygwVersion, s.URL, time.Since(start).Round(time.Millisecond))
	return s
}

// launch starts versitygw on s.Endpoint and waits until a signed request
// succeeds.
func (s *S3) launch() error {
	args := []string{
		"--port", s.Endpoint,
		"--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region,
		// Reuse connections like real S3 servers do; versitygw closes
		// each one after a response by default.
		"--keep-alive",
		// An IAM service, even one with no user but root: without it
		// versitygw answers an unknown access key with 404
		// XAdminUserNotFound instead of S3's 403 InvalidAccessKeyId.
		"--iam-dir", s.iamDir,
		"posix",
	}
	if s.sidecar != "" {
		args = append(args, "--sidecar", s.sidecar)
	}
	cmd := exec.Command(s.bin, append(args, s.Dir)...)
	cmd.Dir = s.Dir
	// versitygw reads its settings from VGW_* and ROOT_* variables too: an
	// operator's must not leak in.
	cmd.Env = withoutEnvPrefixes(os.Environ(), "VGW_", "ROOT_", "LOGFILE", "WEBHOOK")
	return s.start(cmd, s3ReadyTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := s.newClient(s.AccessKey, s.SecretKey)
		if err != nil {
			return err
		}
		_, err = c.ListBuckets(ctx)
		return err
	})
}

// Client returns a minio-go client for the server, signing with the root
// credentials for S3Region, with path-style bucket addressing.
func (s *S3) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := s.newClient(s.AccessKey, s.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *S3) newClient(accessKey, secretKey string) (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(accessKey, secretKey, ""),
		Secure:       false,
		Region:       s.Region,
		BucketLookup: minio.BucketLookupPath,
		// A test must see a failure, not minio-go's retries hiding it
		// (or stretching a stopped server into a long wait).
		MaxRetries: 1,
	})
}

// CreateBucket creates a bucket through the S3 API, as a client would.
func (s *S3) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("create bucket %q: %v", name, err)
	}
}

// CreateIncompleteUpload starts a multipart upload of object with one
// 5 MiB part and leaves it incomplete, as a crashed client would, and
// dates it started ago. It returns the upload ID. (minio-go's PutObject
// aborts its own upload when it fails, so a failed PutObject leaves
// none.)
func (s *S3) CreateIncompleteUpload(t testing.TB, bucket, object string, ago time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	core := minio.Core{Client: s.Client(t)}
	uploadID, err := core.NewMultipartUpload(ctx, bucket, object, minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("start multipart upload of %s/%s: %v", bucket, object, err)
	}
	part := make([]byte, 5<<20)
	if _, err := core.PutObjectPart(ctx, bucket, object, uploadID, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
		t.Fatalf("upload part 1 of %s/%s: %v", bucket, object, err)
	}
	s.BackdateUpload(t, bucket, object, uploadID, time.Now().Add(-ago))
	return uploadID
}

// BackdateUpload sets when an incomplete multipart upload reports it was
// initiated. versitygw's posix backend reports the modification time of
// the upload's directory (which each uploaded part also bumps), so a
// test can age an upload without waiting.
func (s *S3) BackdateUpload(t testing.TB, bucket, object, uploadID string, initiated time.Time) {
	t.Helper()
	sum := sha256.Sum256([]byte(object))
	dir := filepath.Join(s.Dir, bucket, ".sgwtmp", "multipart", fmt.Sprintf("%x", sum), uploadID)
	if err := os.Chtimes(dir, initiated, initiated); err != nil {
		t.Fatalf("backdate upload %s of %s/%s: %v", uploadID, bucket, object, err)
	}
}

// Restart starts versitygw again after Stop, on the same port and with
// the same data.
func (s *S3) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.Stop()
		t.Fatalf("versitygw did not restart: %v\n%s", err, s.LogTail(40))
	}
}
