package replica

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/vigie/vigie/backups"
)

// Storage is the part of the S3 bucket replication uses; *backups.Storage
// is one.
type Storage interface {
	// Upload streams r into key and returns the stored size.
	Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	// Open streams an object; it fails if the object is not there.
	Open(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns every object under prefix.
	List(ctx context.Context, prefix string) ([]backups.StoredObject, error)
	// Remove deletes an object; a missing one is no error.
	Remove(ctx context.Context, key string) error
	// PutJSON writes a small JSON document in one request.
	PutJSON(ctx context.Context, key string, v any) error
}

var _ Storage = (*backups.Storage)(nil)

// ErrUnavailable marks the failures of the storage itself: S3 unreachable,
// or refusing Vigie's requests (credentials, a missing bucket). They say
// nothing about the replicas: a restore that meets one should be tried
// again, where a refused replica would not get better.
var ErrUnavailable = errors.New("replica storage unavailable")

// unavailable marks err, a storage failure, as ErrUnavailable. The
// storage's own message (it names the endpoint and the S3 error code)
// stays the message.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	return &storageError{err}
}

type storageError struct{ err error }

func (e *storageError) Error() string        { return e.err.Error() }
func (e *storageError) Unwrap() error        { return e.err }
func (e *storageError) Is(target error) bool { return target == ErrUnavailable }

// sourceReader records the error of the object stream it reads, so that a
// download cut off (storage) is told apart from an object whose bytes do
// not decode (the replica).
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// readSmall reads a small object whole, at most limit bytes (and one more,
// to tell that it is larger).
func readSmall(ctx context.Context, st Storage, key string, limit int64) ([]byte, error) {
	rc, err := st.Open(ctx, key)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, unavailable(fmt.Errorf("read %s: %w", key, err))
	}
	return data, nil
}
