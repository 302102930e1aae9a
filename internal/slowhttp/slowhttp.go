// Package slowhttp serves a body slowly, for fakes of servers whose
// downloads tests interrupt (snapshots).
package slowhttp

import (
	"net/http"
	"time"
)

// Stream writes a 200 with body as a stream: the headers flushed first,
// so that it goes chunked as the real servers' do, then body chunk bytes
// at a time (all at once when chunk is 0), pausing every between writes.
// It gives up when the client goes away.
func Stream(w http.ResponseWriter, r *http.Request, body []byte, chunk int, every time.Duration) {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	if chunk <= 0 {
		chunk = len(body)
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		if _, err := w.Write(body[:n]); err != nil || rc.Flush() != nil {
			return
		}
		body = body[n:]
		if len(body) == 0 || every <= 0 {
			continue
		}
		t := time.NewTimer(every)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
}
