package backups

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// counter counts the bytes that pass, readable while they do.
type counter struct{ n atomic.Int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// countingReader counts what is read from r.
type countingReader struct {
	r io.Reader
	c *counter
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.n.Add(int64(n))
	return n, err
}

// streamed is what went into one object.
type streamed struct {
	raw, stored int64
	sha256      string
}

// uploader is where streams go: Storage, or a test double.
type uploader interface {
	Upload(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
}

// copyBuffer is what is read from a source at once: large reads from
// pg_dump's pipe mean fewer wake-ups of every stage.
const copyBuffer = 256 << 10

// transfer counts what a run has read and stored so far, for progress.
type transfer struct{ raw, stored counter }

// stream copies src through zstd into an upload at key, hashing exactly
// what is stored. Nothing is buffered beyond zstd's window and the
// uploader's parts; t counts as it goes.
func stream(ctx context.Context, up uploader, key string, src io.Reader, t *transfer) (streamed, error) {
	rawBefore, storedBefore := t.raw.n.Load(), t.stored.n.Load()
	pr, pw := io.Pipe()
	hash := sha256.New()
	compressed := make(chan error, 1)
	go func() { // owned here: it ends when src ends or the pipe is closed below
		// One encoder goroutine: the stream comes from one pg_dump or one
		// snapshot at a time, and pg_dump and the server need the other
		// cores (measured: faster than one per core on two cores).
		enc, err := zstd.NewWriter(io.MultiWriter(pw, hash, &t.stored), zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err == nil {
			_, err = io.CopyBuffer(enc, countingReader{src, &t.raw}, make([]byte, copyBuffer))
			if cerr := enc.Close(); err == nil {
				err = cerr
			}
		}
		pw.CloseWithError(err) // nil: a clean EOF for the uploader
		compressed <- err
	}()
	size, err := up.Upload(ctx, key, pr, "application/zstd")
	pr.CloseWithError(errUploadEnded) // unblocks the compressor if the upload stopped early
	cerr := <-compressed
	sent := t.stored.n.Load() - storedBefore
	switch {
	case cerr != nil && !errors.Is(cerr, errUploadEnded):
		return streamed{}, cerr // the source's error explains the upload's
	case err != nil:
		return streamed{}, err
	case size != sent:
		return streamed{}, fmt.Errorf("S3 stored %d bytes of %s, %d were sent", size, key, sent)
	}
	return streamed{raw: t.raw.n.Load() - rawBefore, stored: size, sha256: hex.EncodeToString(hash.Sum(nil))}, nil
}

// errUploadEnded stops the compressor when the upload is over.
var errUploadEnded = errors.New("upload ended")
