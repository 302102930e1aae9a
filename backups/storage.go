package backups

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/vigie/vigie/internal/tlserr"
)

// StorageConfig says where backups go.
type StorageConfig struct {
	Endpoint        string // http(s)://host:port
	Region          string
	Bucket          string
	AccessKeyID     string
	SecretAccessKey string
	TLS             *tls.Config // nil: the system's roots
	PartSize        int64       // bytes per multipart part
	ParallelParts   int         // parts uploaded at once
}

// Storage is the S3 bucket backups live in. Garage speaks SigV4 with its
// own region and path-style addressing only.
type Storage struct {
	cli      *minio.Client
	endpoint string
	bucket   string
	partSize int64
	parallel int
}

// storedObject is one listed object.
type storedObject struct {
	Key          string
	Size         int64
	ETag         string
	LastModified time.Time
}

// NewStorage builds the S3 client; it contacts nothing.
func NewStorage(cfg StorageConfig) (*Storage, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("S3 endpoint %q is not an http(s)://host:port URL", cfg.Endpoint)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = cfg.TLS.Clone() // its own: HTTP/2 set-up writes into it
	cli, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		BucketLookup: minio.BucketLookupPath, // Garage: virtual hosts need its root_domain and wildcard DNS
		Transport:    transport,
		MaxRetries:   3, // a backup that cannot reach S3 fails and says so, rather than retrying for long
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", cfg.Endpoint, err)
	}
	return &Storage{cli: cli, endpoint: cfg.Endpoint, bucket: cfg.Bucket, partSize: cfg.PartSize, parallel: max(cfg.ParallelParts, 1)}, nil
}

// Endpoint is where the storage is, for messages.
func (s *Storage) Endpoint() string { return s.endpoint }

// Bucket is the bucket's name.
func (s *Storage) Bucket() string { return s.bucket }

// fail names the endpoint and the S3 error code, which is what an operator
// acts on (NoSuchBucket, InvalidAccessKeyId, SignatureDoesNotMatch...).
func (s *Storage) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && resp.Code != "" {
		hint := ""
		switch resp.Code {
		case "NoSuchBucket":
			hint = " (create it: garage bucket create " + s.bucket + ", and allow Vigie's key on it)"
		case "InvalidAccessKeyId", "SignatureDoesNotMatch":
			hint = " (check s3.access_key_id_file and s3.secret_access_key_file)"
		case "AccessDenied":
			hint = " (the key needs read and write on the bucket: garage bucket allow --read --write " + s.bucket + " --key …)"
		case "AuthorizationHeaderMalformed":
			hint = " (check s3.region: Garage accepts only its own s3_region, \"garage\" by default)"
		}
		return fmt.Errorf("S3 at %s, bucket %s: %s: %s: %s%s", s.endpoint, s.bucket, op, resp.Code, resp.Message, hint)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its URL repeats the key, with the upload's ID
	}
	return fmt.Errorf("S3 at %s: %s: %w", s.endpoint, op, tlserr.Explain(err, "s3"))
}

// Check tells whether the bucket is there and the key may list it. A
// listing (unlike a HEAD) answers with an S3 error code to act on.
func (s *Storage) Check(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing after its first answer
	for o := range s.cli.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{MaxKeys: 1}) {
		return s.fail("list the bucket", o.Err)
	}
	return nil
}

// Upload streams r into key as a multipart upload of fixed-size parts:
// memory stays at part size × parallel parts whatever the size. On any
// failure the upload is aborted, so no partial object or pending upload
// stays behind; it returns the stored size.
func (s *Storage) Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error) {
	opts := minio.PutObjectOptions{
		ContentType:           contentType,
		PartSize:              uint64(s.partSize),
		NumThreads:            uint(s.parallel),
		ConcurrentStreamParts: s.parallel > 1,
	}
	info, err := s.cli.PutObject(ctx, s.bucket, key, r, -1, opts)
	if err != nil {
		// minio-go aborts with the request's context, which is gone when
		// the run was cancelled: abort again with one of our own.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if aerr := s.cli.RemoveIncompleteUpload(actx, s.bucket, key); aerr != nil {
			return 0, &PendingUploadError{Key: key, Err: s.fail("upload "+key, err), Abort: aerr}
		}
		return 0, s.fail("upload "+key, err)
	}
	return info.Size, nil
}

// PendingUploadError is an upload that failed and could not be aborted
// either (S3 went away): the multipart upload is left to abort later.
type PendingUploadError struct {
	Key   string
	Err   error
	Abort error
}

func (e *PendingUploadError) Error() string {
	return fmt.Sprintf("%v (the upload is aborted once S3 answers again)", e.Err)
}

func (e *PendingUploadError) Unwrap() error { return e.Err }

// PutJSON writes a small JSON document in one request.
func (s *Storage) PutJSON(ctx context.Context, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = s.cli.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{ContentType: "application/json"})
	return s.fail("write "+key, err)
}

// maxDocument bounds what get reads of a manifest or a verification.
const maxDocument = 16 << 20

// get reads a small object whole.
func (s *Storage) get(ctx context.Context, key string) ([]byte, error) {
	obj, err := s.cli.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail("read "+key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, maxDocument+1))
	if err != nil {
		return nil, s.fail("read "+key, err)
	}
	if len(data) > maxDocument {
		return nil, fmt.Errorf("S3 at %s: %s is larger than %d MiB, not a document Vigie wrote", s.endpoint, key, maxDocument>>20)
	}
	return data, nil
}

// Open streams an object.
func (s *Storage) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.cli.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.fail("read "+key, err)
	}
	// GetObject is lazy: the first Stat says whether the object is there.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.fail("read "+key, err)
	}
	return obj, nil
}

// List returns every object under prefix.
func (s *Storage) List(ctx context.Context, prefix string) ([]storedObject, error) {
	var out []storedObject
	for o := range s.cli.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, s.fail("list "+prefix, o.Err)
		}
		out = append(out, storedObject{Key: o.Key, Size: o.Size, ETag: strings.Trim(o.ETag, `"`), LastModified: o.LastModified})
	}
	return out, nil
}

// Remove deletes an object; a missing one is no error.
func (s *Storage) Remove(ctx context.Context, key string) error {
	return s.fail("delete "+key, s.cli.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}))
}

// AbortUploads aborts the pending multipart uploads of key (a run killed
// mid-upload leaves one).
func (s *Storage) AbortUploads(ctx context.Context, key string) error {
	return s.fail("abort the uploads of "+key, s.cli.RemoveIncompleteUpload(ctx, s.bucket, key))
}

// AbortStale aborts the pending multipart uploads under prefix started
// before cutoff, and returns their keys.
func (s *Storage) AbortStale(ctx context.Context, prefix string, cutoff time.Time) ([]string, error) {
	var stale []string
	for u := range s.cli.ListIncompleteUploads(ctx, s.bucket, prefix, true) {
		if u.Err != nil {
			return stale, s.fail("list pending uploads", u.Err)
		}
		if u.Initiated.Before(cutoff) {
			stale = append(stale, u.Key)
		}
	}
	for _, key := range stale {
		if err := s.AbortUploads(ctx, key); err != nil {
			return stale, err
		}
	}
	return stale, nil
}

// pendingUploads lists the keys with a multipart upload in progress.
func (s *Storage) pendingUploads(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for u := range s.cli.ListIncompleteUploads(ctx, s.bucket, prefix, true) {
		if u.Err != nil {
			return keys, s.fail("list pending uploads", u.Err)
		}
		keys = append(keys, u.Key)
	}
	return keys, nil
}
