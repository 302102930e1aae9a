package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"
)

// FaultProxy sits on loopback between a client under test and a real
// homeserver. It forwards everything, but can make message sends fail the
// way networks and servers do: it can withhold the response of a send the
// homeserver already accepted (the crash window an outbox must survive), or
// refuse sends with 429 M_LIMIT_EXCEEDED in Dendrite's own format — which
// Dendrite v0.13.8 never does for /send itself.
type FaultProxy struct {
	URL string

	target *url.URL
	proxy  *httputil.ReverseProxy

	mu          sync.Mutex
	swallow     bool
	release     chan struct{} // closed by Pass: withheld responses end
	limitLeft   int
	limitDelay  time.Duration
	swallowed   int
	rateLimited int
}

var sendPath = regexp.MustCompile(`^/_matrix/client/(?:v3|r0)/rooms/[^/]+/send/`)

// StartFaultProxy starts a proxy to target (a homeserver base URL), closed
// at the end of the test.
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{target: u, proxy: httputil.NewSingleHostReverseProxy(u), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.Pass()
		srv.Close()
	})
	p.URL = srv.URL
	return p
}

// SwallowSends makes later sends reach the homeserver but get no answer
// until Pass is called (then they get 502), as when a connection dies after
// the server processed the request.
func (p *FaultProxy) SwallowSends() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.swallow = true
}

// RateLimitSends answers the next n sends with 429 M_LIMIT_EXCEEDED and
// retry_after_ms, without forwarding them.
func (p *FaultProxy) RateLimitSends(n int, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limitLeft, p.limitDelay = n, retryAfter
}

// Pass restores plain forwarding and ends withheld responses.
func (p *FaultProxy) Pass() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.swallow {
		close(p.release)
		p.release = make(chan struct{})
	}
	p.swallow, p.limitLeft = false, 0
}

// Counts reports how many sends were swallowed and rate limited so far.
func (p *FaultProxy) Counts() (swallowed, rateLimited int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swallowed, p.rateLimited
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut || !sendPath.MatchString(r.URL.Path) {
		p.proxy.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	swallow, release := p.swallow, p.release
	limited := p.limitLeft > 0
	delay := p.limitDelay
	if limited {
		p.limitLeft--
		p.rateLimited++
	} else if swallow {
		p.swallowed++
	}
	p.mu.Unlock()

	switch {
	case limited:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"errcode":"M_LIMIT_EXCEEDED","error":"You are sending too many requests too quickly!","retry_after_ms":%d}`, delay.Milliseconds())
	case swallow:
		if err := p.forward(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "connection lost", http.StatusBadGateway)
	default:
		p.proxy.ServeHTTP(w, r)
	}
}

// forward performs the request against the homeserver and drops the answer.
func (p *FaultProxy) forward(r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	u := *p.target
	u.Path, u.RawQuery = r.URL.Path, r.URL.RawQuery
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("homeserver answered %s", resp.Status)
	}
	return err
}
