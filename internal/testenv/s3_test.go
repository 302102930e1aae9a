package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func TestS3MultipartUploadSurvivesRestart(t *testing.T) {
	s3 := StartS3(t)
	s3.CreateBucket(t, "backups")
	// A bucket is a directory of the posix root.
	if fi, err := os.Stat(filepath.Join(s3.Dir, "backups")); err != nil || !fi.IsDir() {
		t.Fatalf("bucket directory: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s3.Client(t)
	data := make([]byte, 12<<20+123)
	rand.Read(data)
	// Unknown size: minio-go streams 5 MiB parts, a 3-part multipart upload.
	info, err := c.PutObject(ctx, "backups", "db/2026-01-01.dump", bytes.NewReader(data), -1,
		minio.PutObjectOptions{PartSize: 5 << 20})
	if err != nil {
		t.Fatalf("multipart PutObject: %v", err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("uploaded %d bytes, want %d", info.Size, len(data))
	}
	if got := getObject(t, c, "backups", "db/2026-01-01.dump"); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, not what was uploaded", len(got))
	}

	s3.Stop()
	if conn, err := net.DialTimeout("tcp", s3.Endpoint, time.Second); err == nil {
		conn.Close()
		t.Fatal("versitygw still accepts connections after Stop")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a stopped versitygw: %v, want connection refused", err)
	}
	s3.Stop() // idempotent

	s3.Restart(t)
	var keys []string
	for obj := range c.ListObjects(ctx, "backups", minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatal(obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	if len(keys) != 1 || keys[0] != "db/2026-01-01.dump" {
		t.Fatalf("objects after restart: %q", keys)
	}
	if got := getObject(t, c, "backups", "db/2026-01-01.dump"); !bytes.Equal(got, data) {
		t.Fatal("object changed across restart")
	}
}

func getObject(t *testing.T, c *minio.Client, bucket, key string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return b
}

func TestS3ErrorCodes(t *testing.T) {
	s3 := StartS3(t)
	s3.CreateBucket(t, "backups")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	code := func(accessKey, secretKey string) string {
		t.Helper()
		c, err := s3.newClient(accessKey, secretKey)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.PutObject(ctx, "backups", "x", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
		if err == nil {
			t.Fatalf("PutObject with access key %q and secret %q succeeded", accessKey, secretKey)
		}
		return minio.ToErrorResponse(err).Code
	}
	if got := code(s3.AccessKey, "wrong-secret"); got != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: code %q, want SignatureDoesNotMatch", got)
	}
	if got := code("WRONGACCESSKEY", s3.SecretKey); got != "InvalidAccessKeyId" {
		t.Errorf("wrong access key: code %q, want InvalidAccessKeyId", got)
	}

	// The region is part of the signature: the server names the one it wants.
	otherRegion, err := minio.New(s3.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = otherRegion.PutObject(ctx, "backups", "x", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	if got := minio.ToErrorResponse(err).Code; got != "AuthorizationHeaderMalformed" {
		t.Errorf("signing for us-east-1: %v (code %q), want AuthorizationHeaderMalformed", err, got)
	}

	c := s3.Client(t)
	_, err = c.PutObject(ctx, "missing", "x", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{})
	if got := minio.ToErrorResponse(err).Code; got != "NoSuchBucket" {
		t.Errorf("PutObject to a missing bucket: %v (code %q), want NoSuchBucket", err, got)
	}
	if ok, err := c.BucketExists(ctx, "missing"); ok || err != nil {
		t.Errorf("BucketExists(missing) = %v, %v; want false, nil", ok, err)
	}
	_, err = c.StatObject(ctx, "backups", "missing", minio.StatObjectOptions{})
	if got := minio.ToErrorResponse(err).Code; got != "NoSuchKey" {
		t.Errorf("StatObject of a missing key: %v (code %q), want NoSuchKey", err, got)
	}
}

func TestS3IncompleteUploads(t *testing.T) {
	s3 := StartS3(t)
	s3.CreateBucket(t, "backups")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := s3.Client(t)

	oldID := s3.CreateIncompleteUpload(t, "backups", "db/old.dump", 48*time.Hour)
	freshID := s3.CreateIncompleteUpload(t, "backups", "db/fresh.dump", 0)

	uploads := func() map[string]minio.ObjectMultipartInfo {
		t.Helper()
		got := map[string]minio.ObjectMultipartInfo{}
		for u := range c.ListIncompleteUploads(ctx, "backups", "", true) {
			if u.Err != nil {
				t.Fatalf("ListIncompleteUploads: %v", u.Err)
			}
			got[u.Key] = u
		}
		return got
	}
	got := uploads()
	if len(got) != 2 || got["db/old.dump"].UploadID != oldID || got["db/fresh.dump"].UploadID != freshID {
		t.Fatalf("incomplete uploads: %+v", got)
	}
	if age := time.Since(got["db/old.dump"].Initiated); age < 47*time.Hour || age > 49*time.Hour {
		t.Errorf("old upload initiated %s ago, want 48h", age)
	}
	if age := time.Since(got["db/fresh.dump"].Initiated); age < -time.Minute || age > time.Minute {
		t.Errorf("fresh upload initiated %s ago, want about now", age)
	}
	// An incomplete upload is no object.
	for obj := range c.ListObjects(ctx, "backups", minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("listed %q (%v) while no upload completed", obj.Key, obj.Err)
	}

	// Aborting by key (what RemoveIncompleteUpload does) and by upload ID.
	if err := c.RemoveIncompleteUpload(ctx, "backups", "db/old.dump"); err != nil {
		t.Fatalf("RemoveIncompleteUpload: %v", err)
	}
	if got := uploads(); len(got) != 1 || got["db/fresh.dump"].UploadID != freshID {
		t.Fatalf("after removing the old upload: %+v", got)
	}
	core := minio.Core{Client: c}
	if err := core.AbortMultipartUpload(ctx, "backups", "db/fresh.dump", freshID); err != nil {
		t.Fatalf("AbortMultipartUpload: %v", err)
	}
	if got := uploads(); len(got) != 0 {
		t.Fatalf("after aborting every upload: %+v", got)
	}
	err := core.AbortMultipartUpload(ctx, "backups", "db/fresh.dump", freshID)
	if got := minio.ToErrorResponse(err).Code; got != "NoSuchUpload" {
		t.Errorf("aborting an aborted upload: %v (code %q), want NoSuchUpload", err, got)
	}
}
