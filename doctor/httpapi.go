package doctor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/vigie/vigie/internal/tlserr"
)

// httpAPI is the HTTP API of Nomad or Consul.
type httpAPI struct {
	name   string // "Nomad" or "Consul"
	table  string // its configuration table: "nomad" or "consul"
	addr   string
	client *http.Client
	header string     // the token header
	token  string     // the configured token, sent even where no ACL applies (a proxy may want it)
	query  url.Values // region or dc
}

func newHTTPAPI(name, table, addr string, tc *tls.Config, header, token string, query url.Values) *httpAPI {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tc.Clone()
	return &httpAPI{name: name, table: table, addr: strings.TrimRight(addr, "/"), client: &http.Client{Transport: transport},
		header: header, token: token, query: query}
}

// url is path on the server with the API's query and q.
func (a *httpAPI) url(path string, q url.Values) string {
	all := url.Values{}
	for k, v := range a.query {
		all[k] = v
	}
	for k, v := range q {
		all[k] = v
	}
	u := a.addr + path
	if len(all) > 0 {
		u += "?" + all.Encode()
	}
	return u
}

// get sends a GET with token (none if ""); the caller closes the body.
func (a *httpAPI) get(ctx context.Context, path string, q url.Values, token string) (*http.Response, error) {
	return a.do(ctx, http.MethodGet, path, q, token, nil)
}

// put sends a PUT with token and returns the status and the start of
// the body.
func (a *httpAPI) put(ctx context.Context, path string, q url.Values, token string, body []byte) (int, string, error) {
	resp, err := a.do(ctx, http.MethodPut, path, q, token, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// do sends a request with token (none if ""), saying which server failed
// and which setting to check.
func (a *httpAPI) do(ctx context.Context, method, path string, q url.Values, token string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.url(path, q), body)
	if err != nil {
		return nil, fmt.Errorf("%s address %q: %w", a.name, a.addr, err)
	}
	if token != "" {
		req.Header.Set(a.header, token)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s at %s did not answer %s %s in time", a.name, a.addr, method, path)
		}
		return nil, fmt.Errorf("%s at %s is unreachable: %w (check %s.address)", a.name, a.addr, tlserr.Explain(err, a.table), a.table)
	}
	return resp, nil
}

// impossibleIndex is a check-and-set index no key has: a write with it
// goes through Consul's ACL check and then fails, writing nothing.
const impossibleIndex = "4611686018427387904"

// mayWriteKey tells whether token may write a Consul key, without
// writing it; hint says which policy grants it.
func (a *httpAPI) mayWriteKey(ctx context.Context, key, token, hint string) error {
	status, body, err := a.put(ctx, "/v1/kv/"+key, url.Values{"cas": {impossibleIndex}}, token, nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusForbidden:
		return fmt.Errorf("Consul refused a write to %s (%s): the token needs %s", key, body, hint)
	case status != http.StatusOK:
		return fmt.Errorf("Consul answered %d to a check-and-set write of %s: %s", status, key, body)
	case body != "false":
		return fmt.Errorf("Consul answered %q to a check-and-set write of %s that cannot succeed", body, key)
	}
	return nil
}

// getJSON reads a small JSON answer into v when the status is 200; it
// returns the status and, otherwise, the start of the body.
func (a *httpAPI) getJSON(ctx context.Context, path string, q url.Values, token string, v any) (int, string, error) {
	resp, err := a.get(ctx, path, q, token)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("%s at %s: GET %s: %w", a.name, a.addr, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, snippet(body), nil
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			return resp.StatusCode, "", fmt.Errorf("%s at %s: GET %s: not the JSON expected: %w", a.name, a.addr, path, err)
		}
	}
	return resp.StatusCode, "", nil
}

// snippet is the start of a body, for messages.
func snippet(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// leader asks who leads the cluster.
func (a *httpAPI) leader(ctx context.Context) (string, error) {
	var leader string
	status, body, err := a.getJSON(ctx, "/v1/status/leader", nil, a.token, &leader)
	switch {
	case err != nil:
		return "", err
	case status != http.StatusOK:
		return "", fmt.Errorf("%s at %s answered %d to GET /v1/status/leader: %s", a.name, a.addr, status, body)
	case leader == "":
		return "", fmt.Errorf("%s at %s has no leader: the cluster has lost its quorum", a.name, a.addr)
	}
	return leader, nil
}

// reachableCheck is the "reachable" line of a cluster.
func (a *httpAPI) reachableCheck(leader *Lazy[string]) func(context.Context) Result {
	return func(ctx context.Context) Result {
		l, err := leader.Get(ctx)
		if err != nil {
			return Fail("%v", err)
		}
		return OK("%s answers, leader %s", a.addr, l)
	}
}

// tlsCheck says whether the connection is encrypted and verified.
func (a *httpAPI) tlsCheck(leader *Lazy[string], tc tlsSettings) func(context.Context) Result {
	return func(ctx context.Context) Result {
		u, err := url.Parse(a.addr)
		if err != nil {
			return Fail("%s.address %q is not a URL", a.table, a.addr)
		}
		if u.Scheme == "http" {
			if loopbackHost(u.Hostname()) {
				return OK("plain http on the loopback interface")
			}
			return Warn("plain http: the token travels unencrypted; use an https:// address with %s.tls.ca_file", a.table)
		}
		if _, err := leader.Get(ctx); err != nil {
			return Skip("not reachable (see above)")
		}
		roots := "the system's CAs"
		if tc.CAFile != "" {
			roots = tc.CAFile
		}
		detail := "https, certificate verified against " + roots
		if tc.CertFile != "" {
			detail += ", client certificate " + tc.CertFile
		}
		return OK("%s", detail)
	}
}

// tlsSettings are the files of a [*.tls] table, for messages.
type tlsSettings struct{ CAFile, CertFile string }

// loopbackURL tells whether a URL's host is a loopback address.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && loopbackHost(u.Hostname())
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// snapshotCheck starts saving a snapshot and hangs up after its first
// bytes: the only way to know the token may, without downloading the
// whole state. hint says which token is needed.
func (a *httpAPI) snapshotCheck(path, token, hint string) func(context.Context) Result {
	return func(ctx context.Context) Result {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // hangs up: the server stops streaming
		resp, err := a.get(ctx, path, url.Values{"stale": {"true"}}, token)
		if err != nil {
			return Fail("%v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			msg := fmt.Sprintf("%s refused to save a snapshot (%d: %s)", a.name, resp.StatusCode, snippet(body))
			switch {
			case resp.StatusCode == http.StatusForbidden:
				msg += ": " + hint
			case strings.Contains(string(body), "open is not supported"), strings.Contains(string(body), "failed to open snapshot"):
				msg += ": a dev agent keeps raft in memory and has no snapshot to save"
			}
			return Fail("%s", msg)
		}
		head := make([]byte, 2)
		if _, err := io.ReadFull(resp.Body, head); err != nil {
			return Fail("%s started a snapshot but sent nothing: %v", a.name, err)
		}
		if head[0] != 0x1f || head[1] != 0x8b {
			return Fail("%s answered the snapshot request with what is not a gzip archive (a proxy page?)", a.name)
		}
		return OK("the token may save snapshots (one was started and cancelled)")
	}
}
