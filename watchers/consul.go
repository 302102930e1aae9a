package watchers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/internal/ctxutil"
	"github.com/vigie/vigie/internal/tlserr"
)

// Consul's maintenance checks (agent/agent.go): a node in maintenance has a
// critical check _node_maintenance, a service instance in maintenance a
// critical check _service_maintenance:<service ID> carrying that ServiceID.
const (
	consulNodeMaint    = "_node_maintenance"
	consulServiceMaint = "_service_maintenance:"
)

const (
	consulDefaultAddress = "http://127.0.0.1:8500"
	// Consul caps a blocking query at 10 min and adds up to wait/16 of
	// jitter; asking for more would only make the request deadline lie.
	consulMaxWait = 10 * time.Minute
	// consulSlack is how long past Consul's own deadline a request may take
	// before the connection is deemed dead (a half-open TCP connection never
	// answers); it is the whole budget of a non-blocking read.
	consulSlack = 30 * time.Second
	// consulBodyQuote bounds how much of an error body goes into logs.
	consulBodyQuote = 512
)

// ConsulConfig configures the Consul health watcher.
type ConsulConfig struct {
	Address    string // http(s)://host:port; default http://127.0.0.1:8500
	Datacenter string // ?dc=; "" is the agent's own
	Token      string // ACL token sent as X-Consul-Token; never logged

	Wait        time.Duration // blocking wait, default 5m, at most 10m
	MinInterval time.Duration // least time between two requests (token bucket: burst 2, refill one per MinInterval), default 2s
	Backoff     Backoff       // on errors, default {1s, 1m}
	// HTTPClient defaults to a client without a timeout; the watcher bounds
	// every request itself. A client's own Timeout must exceed Wait*17/16.
	HTTPClient *http.Client
	// TLS for https addresses, in the default client; nil: the system's
	// CAs, no client certificate.
	TLS *tls.Config
}

// Consul watches the health of every check in a Consul datacenter with
// blocking queries on /v1/health/state/any, and delivers each changed state
// as a snapshot batch, every check in it, those the same as in the last
// snapshot delivered marked Unchanged. An answer costs in proportion to
// what changed in it, not to its size (consul_snapshot.go).
type Consul struct {
	cfg      ConsulConfig
	endpoint string // .../v1/health/state/any
}

// NewConsul returns a watcher; zero fields of cfg take their defaults.
func NewConsul(cfg ConsulConfig) *Consul {
	if cfg.Address == "" {
		cfg.Address = consulDefaultAddress
	}
	if !strings.Contains(cfg.Address, "://") {
		cfg.Address = "http://" + cfg.Address // as the consul CLI takes CONSUL_HTTP_ADDR
	}
	cfg.Address = strings.TrimRight(cfg.Address, "/")
	if cfg.Wait <= 0 {
		cfg.Wait = 5 * time.Minute
	}
	cfg.Wait = min(cfg.Wait, consulMaxWait)
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = 2 * time.Second
	}
	if cfg.Backoff.Min <= 0 || cfg.Backoff.Max <= 0 {
		cfg.Backoff = Backoff{Min: time.Second, Max: time.Minute}
	}
	if cfg.HTTPClient == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = cfg.TLS.Clone() // its own: HTTP/2 set-up writes into it
		cfg.HTTPClient = &http.Client{Transport: transport}
	}
	return &Consul{cfg: cfg, endpoint: cfg.Address + "/v1/health/state/" + api.HealthAny}
}

// Name implements Watcher.
func (c *Consul) Name() string { return "consul" }

// Address implements Watcher.
func (c *Consul) Address() string { return c.cfg.Address }

// Watch implements Watcher. It follows Consul's rules for blocking queries:
// start at index 0 (a plain read), then block on the last index; start
// again from the answer when the index goes backwards, and from a plain
// read after any error; never block on 0; and space requests with a token
// bucket, since a busy cluster answers blocking queries at once. Errors are
// retried here with backoff, so that an outage is logged once; only a
// failing sink ends the run.
func (c *Consul) Watch(ctx context.Context, sink Sink, lookout Lookout) error {
	log := zerolog.Ctx(ctx)
	bucket := consulBucket{interval: c.cfg.MinInterval, burst: 2, tokens: 2, last: time.Now()}
	var (
		index uint64 // 0: read the current state without blocking
		// deliver forces the next snapshot out even if unchanged: the first
		// of a run (the pipeline reconciles a restart against it) and the
		// first after a reset (its cursor must follow the lower index).
		deliver = true
		// mem holds the last snapshot delivered: its checks' bytes and
		// events. It lives as long as the run: a failed delivery ends the
		// run, and the next starts with nothing, everything changed.
		mem     = newConsulMemory()
		outage  consulOutage
		missing string // what the last answer left out, as told to the lookout
	)
	for {
		if err := bucket.take(ctx); err != nil {
			return nil
		}
		res, err := c.fetch(ctx, index, mem)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// The agent may have restarted, lost its data or been replaced:
			// it may never reach an index from before the error, and a
			// query blocking on it would wait the whole wait (5 min) while
			// checks fail. Start again with a plain read, diffed against
			// the last snapshot delivered.
			index = 0
			lookout.Lost(err)
			wait := outage.failed(log, c.cfg.Address, c.cfg.Backoff, err)
			if ctxutil.Sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		lookout.Seen()
		outage.recovered(log, c.cfg.Address)
		if m := c.missing(res); m != missing || index == 0 {
			if m != "" && m != missing {
				log.Warn().Str("address", c.cfg.Address).Msg(m)
			}
			missing = m
			lookout.Partial(m)
		}

		next := max(res.index, 1) // never block on 0: it would return at once
		if index > 0 && next < index {
			// Consul answered at once (a restore abandons blocking queries)
			// with its whole current state: that answer is the fresh read
			// the index rules ask for, delivered now.
			log.Info().Uint64("from", index).Uint64("to", res.index).Msg("Consul index went backwards (snapshot restore or server change); starting again from this state")
			deliver = true
		}
		index = next

		snap := res.snapshot
		if !deliver && snap.same {
			continue
		}
		if deliver {
			// The pipeline may have lost its memory (a restart, a restored
			// state): every check is news to it.
			for i := range snap.events {
				snap.events[i].Unchanged = false
			}
		}
		b := Batch{Snapshot: true, Cursor: Cursor{Name: c.Name(), Index: res.index}, Events: snap.events}
		if err := sink.Consume(ctx, b); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("consul: deliver snapshot at index %d: %w", res.index, err)
		}
		mem.commit(snap)
		log.Debug().Uint64("index", res.index).Int("checks", len(snap.events)).Msg("Consul health snapshot delivered")
		deliver = false
	}
}

// missing says what an answer leaves out, "" if nothing: the pipeline
// reads a snapshot's silence as "healthy", so checks the token cannot read
// would never raise anything.
func (c *Consul) missing(res consulResponse) string {
	switch {
	case res.filtered:
		return "Consul leaves out the health checks the token may not read (ACL): it needs read on every node and service (deploy/acl/consul-watch.hcl)"
	case c.cfg.Token == "" && res.aclPolicy == "deny":
		return "Consul's default ACL policy is deny and no token is configured: Vigie sees only the checks the anonymous token may read (consul.token_file, deploy/acl/consul-watch.hcl)"
	}
	return ""
}

// consulResponse is one answer of the health endpoint.
type consulResponse struct {
	index     uint64
	snapshot  consulSnapshot
	filtered  bool   // X-Consul-Results-Filtered-By-ACLs
	aclPolicy string // X-Consul-Default-Acl-Policy
}

// consulFailure kinds, each logged once per outage.
type consulFailureKind int

const (
	consulUnreachable consulFailureKind = iota // network, timeout, 5xx, 429: wait it out
	consulRefused                              // 403: the token needs fixing
	consulRejected                             // other 4xx: the request needs fixing
	consulMalformed                            // 200 that is not a health list
)

type consulFailure struct {
	kind consulFailureKind
	msg  string
}

func (f *consulFailure) Error() string { return f.msg }

// fetch performs one request. Plain net/http rather than the api client:
// the latter ignores a missing or unparsable X-Consul-Index (leaving 0, a
// busy loop), reads CONSUL_HTTP_* variables behind the config's back, and
// hides the status code and body that the 403 message needs.
//
// The answer is parsed against mem, the last snapshot delivered, as its
// body is read.
func (c *Consul) fetch(ctx context.Context, index uint64, mem *consulMemory) (consulResponse, error) {
	q := url.Values{}
	budget := consulSlack
	if index > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", c.cfg.Wait.String()) // Consul parses it with time.ParseDuration
		budget += c.cfg.Wait + c.cfg.Wait/16
	}
	if c.cfg.Datacenter != "" {
		q.Set("dc", c.cfg.Datacenter)
	}
	u := c.endpoint
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return consulResponse{}, &consulFailure{consulRejected, fmt.Sprintf("Consul address %q is not usable: %v", c.cfg.Address, err)}
	}
	if c.cfg.Token != "" {
		req.Header.Set("X-Consul-Token", c.cfg.Token) // a header, not ?token=, so that it stays out of URLs in errors
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is noise; the address is in the message
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return consulResponse{}, &consulFailure{consulUnreachable, fmt.Sprintf("Consul at %s did not answer within %s", c.cfg.Address, budget)}
		}
		return consulResponse{}, &consulFailure{consulUnreachable, fmt.Sprintf("Consul at %s is unreachable: %v", c.cfg.Address, tlserr.Explain(err, "consul"))}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return consulResponse{}, c.failure(resp)
	}

	// A body that breaks off is told as such, whatever came before: the
	// whole body is read, even past what is wrong in it.
	body := &consulBody{r: resp.Body}
	raw := resp.Header.Get("X-Consul-Index")
	n, indexErr := strconv.ParseUint(raw, 10, 64)
	var (
		snap     consulSnapshot
		parseErr error
	)
	if indexErr == nil {
		snap, parseErr = mem.parse(body, n)
	}
	if _, _ = io.Copy(io.Discard, body); body.err != nil {
		return consulResponse{}, &consulFailure{consulUnreachable, fmt.Sprintf("Consul at %s broke off its answer: %v", c.cfg.Address, body.err)}
	}
	if indexErr != nil {
		return consulResponse{}, &consulFailure{consulMalformed, fmt.Sprintf("Consul at %s sent an invalid health response: X-Consul-Index %q is not an index (is the address a Consul agent?)", c.cfg.Address, raw)}
	}
	if parseErr != nil {
		return consulResponse{}, &consulFailure{consulMalformed, fmt.Sprintf("Consul at %s sent an invalid health response at index %d (%d bytes): %v", c.cfg.Address, n, body.n, parseErr)}
	}
	return consulResponse{
		index:     n,
		snapshot:  snap,
		filtered:  resp.Header.Get("X-Consul-Results-Filtered-By-ACLs") == "true",
		aclPolicy: resp.Header.Get("X-Consul-Default-Acl-Policy"),
	}, nil
}

// failure tells what an answer other than 200 means.
func (c *Consul) failure(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return &consulFailure{consulUnreachable, fmt.Sprintf("Consul at %s broke off its answer: %v", c.cfg.Address, err)}
	}
	switch code := resp.StatusCode; {
	case code == http.StatusForbidden:
		who := "refused the token"
		if c.cfg.Token == "" {
			who = "refused the request (no token configured)"
		}
		return &consulFailure{consulRefused, fmt.Sprintf("Consul at %s %s (403): %s", c.cfg.Address, who, consulQuote(body))}
	case code == http.StatusTooManyRequests || code >= 500:
		return &consulFailure{consulUnreachable, fmt.Sprintf("Consul at %s answered %s: %s", c.cfg.Address, resp.Status, consulQuote(body))}
	default:
		return &consulFailure{consulRejected, fmt.Sprintf("Consul at %s rejected the health query (%s): %s", c.cfg.Address, resp.Status, consulQuote(body))}
	}
}

// consulBody is a body as it is read: how much, and what broke it off.
type consulBody struct {
	r   io.Reader
	n   int
	err error // other than io.EOF
}

func (b *consulBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += n
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// consulQuote is an error body fit for a log line.
func consulQuote(body []byte) string {
	s := strings.TrimSpace(string(body))
	if len(s) > consulBodyQuote {
		s = strings.ToValidUTF8(s[:consulBodyQuote], "") + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// consulOutage tracks one stretch of failures, so that it is logged when it
// starts, when its cause changes (say 500s, then 403 after a restart), and
// when it ends, rather than on every retry.
type consulOutage struct {
	failures int
	since    time.Time
	said     map[consulFailureKind]bool
}

// failed records a failure and returns how long to wait before retrying.
func (o *consulOutage) failed(log *zerolog.Logger, address string, backoff Backoff, err error) time.Duration {
	kind := consulUnreachable
	var f *consulFailure
	if errors.As(err, &f) {
		kind = f.kind
	}
	o.failures++
	if o.failures == 1 {
		o.since = time.Now()
		o.said = map[consulFailureKind]bool{}
	}
	wait := backoff.delay(o.failures)
	if o.said[kind] {
		log.Debug().Err(err).Int("failures", o.failures).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Consul health watch still failing")
		return wait
	}
	o.said[kind] = true
	ev := log.Warn()
	if kind != consulUnreachable {
		ev = log.Error() // a person must act: token, address or proxy
	}
	ev.Err(err).Str("address", address).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Consul health watch failing; retrying with backoff")
	return wait
}

// recovered ends an outage, if one is under way.
func (o *consulOutage) recovered(log *zerolog.Logger, address string) {
	if o.failures == 0 {
		return
	}
	log.Info().Str("address", address).Stringer("down_for", time.Since(o.since).Round(time.Millisecond)).Int("failures", o.failures).Msg("Consul health watch recovered")
	o.failures = 0
}

// consulBucket is a token bucket: up to burst requests at once, then one per
// interval. It spaces the blocking loop when every query returns at once (a
// churning cluster) without delaying the quiet case, as a fixed sleep would.
type consulBucket struct {
	interval time.Duration
	burst    float64
	tokens   float64 // may go negative: a debt paid by waiting
	last     time.Time
}

func (b *consulBucket) take(ctx context.Context) error {
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.interval))
	b.last = now
	b.tokens--
	if b.tokens >= 0 {
		return nil
	}
	return ctxutil.Sleep(ctx, time.Duration(-b.tokens*float64(b.interval)))
}
