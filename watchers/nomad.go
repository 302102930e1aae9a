package watchers

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/tlserr"
)

// NomadConfig configures the Nomad event stream watcher. Zero fields take
// the defaults documented on them.
type NomadConfig struct {
	Address string // default http://127.0.0.1:4646
	Region  string
	Token   string
	// Namespaces watched; "*" is all. Nomad takes one namespace per stream,
	// so one namespace is asked for as such, and several as "*" and
	// filtered here; "*" needs read-job in every namespace. Empty: the
	// server's default namespace.
	Namespaces []string
	// Topics, e.g. "Allocation", sent as topic=Allocation:*; "Topic:Key"
	// is sent as is. Default Allocation, Deployment, Evaluation, Job, Node.
	Topics []string
	// StreamTimeout: a stream silent this long (no frame, no heartbeat) is
	// dead and replaced. Default 45s: Nomad sends a heartbeat every 30s on a
	// fixed ticker, so a 30s timeout would race every heartbeat.
	StreamTimeout time.Duration
	// Backoff between reconnections; default {1s, 1m}.
	Backoff Backoff
	// HTTPClient must have no overall timeout, as the stream never ends.
	// Default: dial, TLS and response-header timeouts only, with TLS.
	HTTPClient *http.Client
	// TLS for https addresses, in the default client; nil: the system's
	// CAs, no client certificate.
	TLS *tls.Config
	// LogTailBytes of stderr fetched for a failed task; default 2048.
	LogTailBytes int
	// Clock dates Vigie's own events; nil is the wall clock.
	Clock clock.Clock
}

// CursorStore reads a watcher's persisted cursor; *store.Store implements it.
type CursorStore interface {
	Cursor(ctx context.Context, name string) (index uint64, skip int, ok bool, err error)
}

const (
	nomadName = "nomad"
	// nomadMaxLine bounds a frame: a Node payload is several KB, a large
	// plan result 100s of KB.
	nomadMaxLine     = 16 << 20
	nomadCallTimeout = 15 * time.Second
	// nomadMaxSkipKinds bounds the kinds of skipped items logged at warn
	// level, since kinds come from the server (topic and type names).
	nomadMaxSkipKinds = 64
	// nomadBatchEvents and nomadBatchBytes bound a batch: the frames
	// received together go to the sink together, in one transaction, up to
	// this many events or bytes of lines (a frame is never split).
	nomadBatchEvents = 512
	nomadBatchBytes  = 1 << 20
	// nomadReadBuffer sizes the stream's read buffers, which bound what is
	// read at once, so the batches.
	nomadReadBuffer = 256 << 10
)

// nomadDefaultTopics are the topics read with read-job and node:read.
var nomadDefaultTopics = []string{"Allocation", "Deployment", "Evaluation", "Job", "Node"}

// nomadTables are the list endpoints whose X-Nomad-Index is the last write
// to the table behind each topic.
var nomadTables = map[string]string{
	"Job":        "/v1/jobs",
	"Allocation": "/v1/allocations",
	"Evaluation": "/v1/evaluations",
	"Deployment": "/v1/deployments",
	"Node":       "/v1/nodes",
}

var (
	errNomadSilent   = errors.New("stream silent")
	errNomadLongLine = errors.New("frame longer than the line limit")
)

// Nomad watches Nomad's event stream (GET /v1/event/stream).
type Nomad struct {
	cfg     NomadConfig
	addr    string
	cursors CursorStore
	client  *http.Client
	maxLine int
	// batchEvents, batchBytes bound a batch (nomadBatchEvents, nomadBatchBytes).
	batchEvents, batchBytes int

	topics   []string        // topic query values, "Topic:Key"
	ns       string          // namespace query value; "" leaves the server's default
	nsFilter map[string]bool // namespaces kept when ns is "*" for several of them; nil keeps all

	mu      sync.Mutex
	skipped map[string]bool // kinds of skipped items already logged at warn level
}

// NewNomad returns a watcher of the Nomad at cfg.Address, resuming from the
// cursor named "nomad" in cursors.
func NewNomad(cfg NomadConfig, cursors CursorStore) *Nomad {
	if cfg.Address == "" {
		cfg.Address = "http://127.0.0.1:4646"
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = 45 * time.Second
	}
	if cfg.Backoff.Min <= 0 {
		cfg.Backoff.Min = time.Second
	}
	if cfg.Backoff.Max < cfg.Backoff.Min {
		cfg.Backoff.Max = max(time.Minute, cfg.Backoff.Min)
	}
	if cfg.LogTailBytes <= 0 {
		cfg.LogTailBytes = 2048
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	n := &Nomad{
		cfg:     cfg,
		addr:    strings.TrimRight(cfg.Address, "/"),
		cursors: cursors,
		client:  cfg.HTTPClient,
		maxLine: nomadMaxLine,
		skipped: map[string]bool{},

		batchEvents: nomadBatchEvents,
		batchBytes:  nomadBatchBytes,
	}
	if n.client == nil {
		n.client = &http.Client{Transport: NomadTransport(cfg.TLS)}
	}
	topics := cfg.Topics
	if len(topics) == 0 {
		topics = nomadDefaultTopics
	}
	for _, t := range topics {
		if !strings.Contains(t, ":") {
			t += ":*"
		}
		n.topics = append(n.topics, t)
	}
	switch {
	case len(cfg.Namespaces) == 0:
	case slices.Contains(cfg.Namespaces, "*"):
		n.ns = "*"
	case len(cfg.Namespaces) == 1:
		n.ns = cfg.Namespaces[0]
	default:
		n.ns = "*"
		n.nsFilter = map[string]bool{}
		for _, ns := range cfg.Namespaces {
			n.nsFilter[ns] = true
		}
	}
	return n
}

// NomadTransport returns the transport of the watcher's default HTTP
// client, for a client of one's own (NomadConfig.HTTPClient): dial, TLS and
// response-header timeouts only, as the stream never ends, and read
// buffers sized for the stream.
func NomadTransport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     tlsConfig.Clone(), // its own: HTTP/2 set-up writes into it
		// Above the 30s heartbeat: Nomad 1.x sends a stream's headers
		// with its first line.
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		// The stream comes chunked (HTTP/1.1), and a body read goes on to
		// the next chunk only if its header is already buffered: a larger
		// buffer lets the frames received together be read together, and
		// go to the sink in one batch.
		ReadBufferSize:    nomadReadBuffer,
		ForceAttemptHTTP2: true,
	}
}

// Name implements Watcher.
func (n *Nomad) Name() string { return nomadName }

// Address implements Watcher.
func (n *Nomad) Address() string { return n.addr }

// nomadFatal marks an error that reconnecting cannot fix (a refused token,
// a bad request, a failing sink): Watch returns it to the supervisor.
type nomadFatal struct{ err error }

func (e *nomadFatal) Error() string { return e.err.Error() }
func (e *nomadFatal) Unwrap() error { return e.err }

// nomadRun is the state of one Watch call.
type nomadRun struct {
	n        *Nomad
	sink     Sink
	lookout  Lookout
	pos      Cursor // the last position handed to the sink
	started  bool   // pos is known (read from the store or set on first start)
	checked  bool   // the token was validated
	tails    *tailCache
	failures int       // consecutive failed connections
	down     time.Time // start of the current outage

	dec     nomadDecoder // this run's: not shared between goroutines
	lineBuf []byte       // for lines longer than the read buffer
	batch   nomadBatch   // frames read, not yet handed to the sink
}

// nomadBatch gathers the frames received together, for one sink call: their
// events in order, and the position after the last of them, so that the
// cursor is stored with everything they cause.
type nomadBatch struct {
	pos    Cursor // the position after the frames gathered
	frames int    // frames gathered (each moved pos)
	bytes  int    // the size of their lines
	events []Event
}

// Watch implements Watcher. It reconnects by itself, with backoff, after
// network errors, 5xx, EOF and silent streams, so that each outage is
// logged once (warn) with its recovery (info, with its duration). It
// returns, for the supervisor to restart it, only what reconnecting cannot
// fix: a refused token or request, an unreadable cursor, a failing sink.
func (n *Nomad) Watch(ctx context.Context, sink Sink, lookout Lookout) error {
	index, skip, ok, err := n.cursors.Cursor(ctx, nomadName)
	if err != nil {
		return fmt.Errorf("nomad: read cursor: %w", err)
	}
	r := &nomadRun{
		n: n, sink: sink, lookout: lookout, started: ok, tails: newTailCache(),
		pos: Cursor{Name: nomadName, Index: index, Offset: skip},
	}
	log := zerolog.Ctx(ctx)
	for {
		err := r.attempt(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if _, ok := errors.AsType[*nomadFatal](err); ok {
			return err
		}
		lookout.Lost(err)
		r.failures++
		wait := n.cfg.Backoff.delay(r.failures)
		if r.failures == 1 {
			r.down = n.cfg.Clock.Now()
			log.Warn().Err(err).Str("address", n.addr).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Nomad event stream unavailable; reconnecting")
		} else {
			log.Debug().Err(err).Str("address", n.addr).Int("failures", r.failures).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Nomad event stream still unavailable")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// recovered ends the current outage, if any.
func (r *nomadRun) recovered(ctx context.Context) {
	if r.failures == 0 {
		return
	}
	zerolog.Ctx(ctx).Info().Str("address", r.n.addr).Stringer("outage", r.n.cfg.Clock.Now().Sub(r.down).Round(time.Millisecond)).Msg("Nomad event stream recovered")
	r.failures = 0
}

// attempt validates the token if not done yet, compares the position with
// the cluster's, then follows one stream until it breaks.
func (r *nomadRun) attempt(ctx context.Context) error {
	if !r.checked {
		if err := r.n.checkToken(ctx); err != nil {
			return err
		}
		r.checked = true
	}
	// On every connection, since the cluster may be another one now.
	index, err := r.n.currentIndex(ctx)
	if err != nil {
		return err
	}
	r.lookout.Seen()
	switch {
	case !r.started:
		// First start: begin after the cluster's current index, so that
		// the server's replay buffer (up to 100 old raft batches) is not
		// taken for news. The position goes to the sink at once, in an
		// empty batch, so that a restart before the first event resumes
		// here instead of skipping what happened meanwhile.
		if err := r.moveTo(ctx, Cursor{Name: nomadName, Index: index + 1}); err != nil {
			return err
		}
		r.started = true
	case r.pos.behind(index):
		// The cluster's history restarted below what was read (rebuilt,
		// snapshot restored, a new dev agent): every frame until it climbs
		// back past the old position would be dropped as already seen.
		// Resume from where the cluster is, and say so.
		now := r.n.cfg.Clock.Now()
		zerolog.Ctx(ctx).Error().Str("address", r.n.addr).Uint64("read_up_to", r.pos.Index).Uint64("cluster_index", index).
			Msg("Nomad's index is behind what Vigie had read: its history restarted; resuming from the cluster's index")
		rewound := Event{Source: nomadName, Topic: TopicSight, Type: SightRewound, Index: index, Time: now,
			Sight: &Sight{Source: "Nomad", Address: r.n.addr, Since: now, From: r.pos.Index, To: index}}
		if err := r.moveTo(ctx, Cursor{Name: nomadName, Index: index + 1}, rewound); err != nil {
			return err
		}
	}
	return r.stream(ctx)
}

// moveTo hands the sink a new position, with what explains the move.
func (r *nomadRun) moveTo(ctx context.Context, pos Cursor, events ...Event) error {
	if err := r.sink.Consume(ctx, Batch{Cursor: pos, Events: events}); err != nil {
		return &nomadFatal{fmt.Errorf("nomad: sink: %w", err)}
	}
	r.pos = pos
	return nil
}

// checkToken fails early and clearly on a token Nomad refuses, since the
// stream itself may only show that as an empty response (Nomad 2.x).
func (n *Nomad) checkToken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, nomadCallTimeout)
	defer cancel()
	resp, err := n.get(ctx, "/v1/acl/token/self", nil)
	if err != nil {
		return fmt.Errorf("Nomad at %s: %w", n.addr, err)
	}
	defer closeBody(resp)
	switch body := readSnippet(resp); {
	case resp.StatusCode == http.StatusForbidden:
		return &nomadFatal{fmt.Errorf("Nomad at %s rejected the token (403): %s", n.addr, body)}
	case resp.StatusCode >= 500:
		return n.statusError("token check", resp.StatusCode, body)
	case resp.StatusCode != http.StatusOK && !strings.Contains(body, "ACL support disabled"):
		// Not a verdict on the token (a proxy, an old server): the stream
		// will tell.
		zerolog.Ctx(ctx).Debug().Int("status", resp.StatusCode).Str("body", body).Str("address", n.addr).Msg("Could not check the Nomad token")
	}
	return nil
}

// currentIndex is the cluster's latest index as far as the watched topics
// go: the highest X-Nomad-Index of the list endpoints of their tables.
// /v1/jobs alone is not enough: allocation and evaluation updates do not
// touch the jobs table, which can lag the cluster by days, and starting
// there would replay the whole buffer. /v1/status/leader has no index.
// per_page=1 keeps each answer small; servers without pagination ignore it.
func (n *Nomad) currentIndex(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, nomadCallTimeout)
	defer cancel()
	paths := []string{"/v1/jobs"}
	for _, t := range n.topics {
		topic, _, _ := strings.Cut(t, ":")
		for _, tt := range nomadTopics {
			if p := nomadTables[tt]; (topic == tt || topic == "*") && !slices.Contains(paths, p) {
				paths = append(paths, p)
			}
		}
	}
	var index uint64
	for _, p := range paths {
		q := url.Values{"per_page": {"1"}}
		if n.ns != "" && p != "/v1/nodes" {
			q.Set("namespace", n.ns)
		}
		resp, err := n.get(ctx, p, q)
		if err != nil {
			return 0, fmt.Errorf("Nomad at %s: %w", n.addr, err)
		}
		body := readSnippet(resp)
		closeBody(resp)
		if resp.StatusCode == http.StatusForbidden {
			return 0, &nomadFatal{fmt.Errorf("Nomad at %s refused GET %s (403: %s): the token needs read-job in namespace %q (node:read for nodes)", n.addr, p, body, n.nsLabel())}
		}
		if resp.StatusCode != http.StatusOK {
			return 0, n.statusError("GET "+p, resp.StatusCode, body)
		}
		i, err := strconv.ParseUint(resp.Header.Get("X-Nomad-Index"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("nomad: GET %s at %s: bad X-Nomad-Index %q", p, n.addr, resp.Header.Get("X-Nomad-Index"))
		}
		index = max(index, i)
	}
	return index, nil
}

// stream follows one event stream from r.pos until it breaks.
func (r *nomadRun) stream(ctx context.Context) error {
	n := r.n
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The watchdog runs only while waiting for the server: handling frames
	// (sink, log fetches) and reading lines already received do not count
	// as silence.
	watchdog := time.AfterFunc(n.cfg.StreamTimeout, func() { cancel(errNomadSilent) })
	defer watchdog.Stop()

	q := url.Values{"index": {strconv.FormatUint(r.pos.Index, 10)}, "topic": n.topics}
	if n.ns != "" {
		q.Set("namespace", n.ns)
	}
	resp, err := n.get(sctx, "/v1/event/stream", q)
	if err != nil {
		return n.streamError(sctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body := readSnippet(resp)
		if resp.StatusCode == http.StatusForbidden {
			return &nomadFatal{fmt.Errorf("Nomad at %s refused the event stream (403: %s): the token lacks read-job in namespace %q or node:read for the topics %s",
				n.addr, body, n.nsLabel(), strings.Join(n.topics, ", "))}
		}
		return n.statusError("event stream", resp.StatusCode, body)
	}

	lines, err := r.follow(ctx, bufio.NewReaderSize(resp.Body, nomadReadBuffer), func(waiting bool) {
		if waiting {
			watchdog.Reset(n.cfg.StreamTimeout)
		} else {
			watchdog.Stop()
		}
	})
	if _, ok := errors.AsType[*nomadFatal](err); ok {
		return err
	}
	if err == io.EOF && lines == 0 {
		return fmt.Errorf("nomad: event stream at %s closed before sending anything (Nomad 2.x does so for a token it refuses)", n.addr)
	}
	return n.streamError(sctx, err)
}

// follow reads the lines of a stream from r.pos until a read fails, and
// hands their frames to the sink, those received together in one batch.
// It calls waiting(true) before a read that waits for the server,
// waiting(false) after it. It returns the lines read and the read error,
// or a *nomadFatal.
func (r *nomadRun) follow(ctx context.Context, br *bufio.Reader, waiting func(bool)) (lines int, err error) {
	n := r.n
	skip := r.pos.Offset // events at r.pos.Index the server replays but the sink has
	clear(r.batch.events)
	r.batch = nomadBatch{events: r.batch.events[:0]}
	for {
		// A batch closes when no whole line is left to read (it never
		// waits for more) or when it is full.
		buffered := lineBuffered(br)
		if r.batch.frames > 0 && (!buffered || len(r.batch.events) >= n.batchEvents || r.batch.bytes >= n.batchBytes) {
			if err := r.flush(ctx); err != nil {
				return lines, err
			}
		}
		if !buffered {
			waiting(true)
		}
		line, err := r.readLine(br)
		if !buffered {
			waiting(false)
		}
		if err != nil {
			if ferr := r.flush(ctx); ferr != nil {
				return lines, ferr
			}
			return lines, err
		}
		lines++
		r.lookout.Seen()
		if lines == 1 {
			r.recovered(ctx)
		}
		r.handleLine(ctx, line, &skip)
	}
}

// lineBuffered reports whether a whole line has been received and not read.
func lineBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// handleLine decodes one line of the stream and adds its frame to the
// batch. Frames at or before the position (that of the batch, if it has
// frames) are dropped: skip counts the events at that index still to
// drop, as the server replays from the first frame at an index.
func (r *nomadRun) handleLine(ctx context.Context, line []byte, skip *int) {
	n := r.n
	index, events, heartbeat, err := r.dec.decodeLine(line)
	if err != nil {
		n.skip(ctx, "undecodable line", err, 0, "line", string(line[:min(len(line), 120)]))
		return
	}
	if heartbeat {
		return
	}
	b := &r.batch
	pos := r.pos
	if b.frames > 0 {
		pos = b.pos
	}
	var next Cursor
	switch {
	case index < pos.Index:
		return
	case index == pos.Index:
		if *skip >= len(events) {
			*skip -= len(events)
			return
		}
		events = events[*skip:]
		*skip = 0
		next = Cursor{Name: nomadName, Index: index, Offset: pos.Offset + len(events)}
	default:
		*skip = 0
		next = Cursor{Name: nomadName, Index: index, Offset: len(events)}
	}

	start := len(b.events)
	for _, raw := range events {
		ev, err := r.dec.translate(raw, index)
		if err != nil {
			if se, ok := errors.AsType[*nomadSkip](err); ok {
				n.skip(ctx, se.kind, err, index, "", "")
			}
			continue
		}
		if n.nsFilter != nil && ev.Namespace != "" && !n.nsFilter[ev.Namespace] {
			continue
		}
		b.events = append(b.events, ev)
	}
	// A revert's job comes in the same frame as its deployment.
	joinReverts(b.events[start:])
	b.pos = next
	b.frames++
	b.bytes += len(line)
}

// flush hands the batch to the sink, with the stderr tails of its failed
// tasks, and moves the position to its end. The sink must not keep
// Batch.Events, whose array is reused.
func (r *nomadRun) flush(ctx context.Context) error {
	b := &r.batch
	if b.frames == 0 {
		return nil
	}
	events := b.events
	if len(events) == 0 {
		events = nil
	}
	r.addStderrTails(ctx, events)
	if err := r.sink.Consume(ctx, Batch{Cursor: b.pos, Events: events}); err != nil {
		return &nomadFatal{fmt.Errorf("nomad: sink: %w", err)}
	}
	r.pos = b.pos
	clear(b.events)
	events = b.events[:0]
	if cap(events) > 4*r.n.batchEvents {
		events = nil // a frame of many events
	}
	*b = nomadBatch{events: events}
	return nil
}

// readLine reads a line into the run's line buffer (a line within the
// read buffer is returned in place): valid until the next read.
func (r *nomadRun) readLine(br *bufio.Reader) ([]byte, error) {
	line, buf, err := readLine(br, r.n.maxLine, r.lineBuf[:0])
	if cap(buf) <= nomadParserKeep {
		r.lineBuf = buf[:0]
	} else {
		r.lineBuf = nil
	}
	return line, err
}

// skip logs an item of the stream that was skipped: at warn level the
// first time for its kind, at debug level afterwards, so that a server
// sending many of them does not flood the log.
func (n *Nomad) skip(ctx context.Context, kind string, err error, index uint64, key, value string) {
	n.mu.Lock()
	first := !n.skipped[kind] && len(n.skipped) < nomadMaxSkipKinds
	if first {
		n.skipped[kind] = true
	}
	n.mu.Unlock()
	log := zerolog.Ctx(ctx)
	e := log.Debug()
	if first {
		e = log.Warn()
	}
	if key != "" {
		e = e.Str(key, value)
	}
	e.Err(err).Str("kind", kind).Uint64("index", index).Str("address", n.addr).
		Msg("Skipping what Vigie cannot read in the Nomad event stream (warned once per kind)")
}

// readLine reads a line of at most limit bytes, appending it to buf when
// it is longer than br's buffer, and returns buf as grown. A longer line,
// or a last one cut by EOF, is an error: the stream is then replaced and
// the server replays from the cursor.
func readLine(br *bufio.Reader, limit int, buf []byte) (line, grown []byte, err error) {
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > limit {
			return nil, buf, errNomadLongLine
		}
		switch {
		case err == bufio.ErrBufferFull:
			buf = append(buf, chunk...)
			long = true
		case err != nil:
			return nil, buf, err
		case !long:
			return chunk, buf, nil
		default:
			buf = append(buf, chunk...)
			return buf, buf, nil
		}
	}
}

// streamError explains why a stream broke.
func (n *Nomad) streamError(sctx context.Context, err error) error {
	switch {
	case errors.Is(context.Cause(sctx), errNomadSilent):
		return fmt.Errorf("nomad: event stream at %s sent nothing for %s, not even a heartbeat", n.addr, n.cfg.StreamTimeout)
	case errors.Is(err, errNomadLongLine):
		return fmt.Errorf("nomad: event stream at %s sent a frame over %d bytes", n.addr, n.maxLine)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("nomad: event stream at %s ended", n.addr)
	}
	return fmt.Errorf("nomad: event stream at %s: %w", n.addr, err)
}

// statusError wraps an unexpected HTTP status; client errors other than
// timeouts and rate limits are fatal, as retrying the same request cannot
// help.
func (n *Nomad) statusError(what string, code int, body string) error {
	err := fmt.Errorf("nomad: %s at %s: %d %s: %s", what, n.addr, code, http.StatusText(code), body)
	if code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests {
		return &nomadFatal{err}
	}
	return err
}

// nsLabel names the namespace(s) asked for, for error messages.
func (n *Nomad) nsLabel() string {
	switch {
	case n.ns == "":
		return "default"
	case n.nsFilter != nil:
		return "* (" + strings.Join(n.cfg.Namespaces, ", ") + ")"
	}
	return n.ns
}

// get sends a GET with the token and region. Its errors name the method
// and path but not the whole URL, whose query is noise in a message.
func (n *Nomad) get(ctx context.Context, path string, q url.Values) (*http.Response, error) {
	if q == nil {
		q = url.Values{}
	}
	if n.cfg.Region != "" {
		q.Set("region", n.cfg.Region)
	}
	u := n.addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &nomadFatal{fmt.Errorf("nomad: %w", err)}
	}
	if n.cfg.Token != "" {
		req.Header.Set("X-Nomad-Token", n.cfg.Token)
	}
	resp, err := n.client.Do(req)
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = fmt.Errorf("GET %s: %w", path, tlserr.Explain(ue.Err, "nomad"))
	}
	return resp, err
}

// readSnippet returns the start of a response body, for error messages.
func readSnippet(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return string(bytes.TrimSpace(b))
}

// closeBody drains a little of a body so the connection can be reused.
func closeBody(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
