// Package fakeconsul is a small HTTP fake of Consul's health state endpoint,
// GET /v1/health/state/<state>, for tests of code that watches Consul health
// with blocking queries. It follows what Consul v1.22.0 does (checked against
// its agent/http.go, agent/health_endpoint.go and agent/agent.go) and starts
// from a state captured from a real agent (see testdata/README.md).
//
// What it models: blocking queries (index, wait, wait/16 jitter, the 10 min
// cap), an index that may go backwards (a snapshot restore), ACLs with one
// token, node and service maintenance, and injected failures. What it does
// not: ?filter= and ?node-meta= are ignored, ?near= does not sort, and every
// other endpoint but GET /v1/snapshot (snapshot.go), the KV store /v1/kv/
// (kv.go), sessions /v1/session/ (session.go) and /v1/status/leader
// answers 404.
package fakeconsul

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vigie/vigie/internal/restartable"
)

// The captured states and their X-Consul-Index (from the .headers files).
const (
	IndexBefore     = 48 // testdata/health-state-any-before.json
	IndexTTLExpired = 50 // testdata/health-state-any-blocking-1.json
)

// Datacenter is the fake's datacenter, the captured agent's; any other ?dc=
// fails as on a Consul that has no route to it.
const Datacenter = "dc1"

// Check IDs and defaults of Consul's maintenance mode (agent/agent.go and
// agent/structs): a critical check of type "maintenance" whose Notes hold
// the reason and whose Output is empty.
const (
	NodeMaintCheckID   = "_node_maintenance"
	ServiceMaintPrefix = "_service_maintenance:"

	defaultNodeMaintReason    = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	defaultServiceMaintReason = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

// Consul's limits on blocking queries (agent/consul/rpc.go).
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

var (
	//go:embed testdata/health-state-any-before.json
	stateBefore []byte
	//go:embed testdata/health-state-any-blocking-1.json
	stateTTLExpired []byte
)

// StateBefore returns the captured body of GET /v1/health/state/any at
// IndexBefore: every check passing.
func StateBefore() []byte { return bytes.Clone(stateBefore) }

// StateTTLExpired returns the captured body at IndexTTLExpired: the TTL
// check chatops-ttl critical.
func StateTTLExpired() []byte { return bytes.Clone(stateTTLExpired) }

// Request is one request the fake received.
type Request struct {
	At     time.Time
	Method string
	Path   string
	Query  url.Values
	// RawQuery is the query as sent, e.g. index=48&wait=1000ms.
	RawQuery string
	Token    string // from ?token=, X-Consul-Token or Authorization: Bearer, as Consul reads it
}

// Index is the request's ?index=, 0 when absent or not a number.
func (r Request) Index() uint64 {
	n, _ := strconv.ParseUint(r.Query.Get("index"), 10, 64)
	return n
}

// String is the path and query as sent, e.g.
// /v1/health/state/any?index=48&wait=1000ms.
func (r Request) String() string {
	if r.RawQuery == "" {
		return r.Path
	}
	return r.Path + "?" + r.RawQuery
}

// check is one health check as Consul sends it. Keeping the raw fields
// (rather than api.HealthCheck, which lacks Interval and Timeout and adds a
// full Definition) serves the captures without losing or inventing fields.
type check map[string]json.RawMessage

func (c check) str(key string) string {
	var s string
	_ = json.Unmarshal(c[key], &s) // absent or not a string: ""
	return s
}

func (c check) set(key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings, numbers and string slices always marshal
	}
	c[key] = b
}

// failure is a queued answer that replaces the next normal one.
type failure struct {
	status  int
	corrupt bool // 200 with valid headers and a truncated body
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base address, e.g. http://127.0.0.1:41234.
	URL string

	srv       *restartable.Server
	done      chan struct{} // closed by Close: blocked queries return
	closeOnce sync.Once

	mu     sync.Mutex
	index  uint64
	checks []check
	// changed is closed and replaced on every change, waking blocked queries.
	changed chan struct{}
	// restores counts replacements that did not move the index forward:
	// Consul abandons blocking queries on a snapshot restore, so they return
	// at once even though the index did not grow.
	restores uint64
	token    string
	// scoped tokens read every node but only the services whose names
	// start with one of their prefixes (service_prefix rules).
	scoped   map[string][]string
	failures []failure
	requests []Request
	snap     snapshotState // GET /v1/snapshot, snapshot.go
	kv       kvState       // /v1/kv/, kv.go
	sess     sessionState  // /v1/session/ and the clock, session.go
}

// New starts a fake holding the captured state at IndexBefore, without ACLs.
func New() *Server {
	s := &Server{done: make(chan struct{}), changed: make(chan struct{})}
	checks, err := parseChecks(stateBefore)
	if err != nil {
		panic(err) // the embedded capture is valid JSON
	}
	s.index, s.checks = IndexBefore, checks
	s.kvInit()
	s.sessionInit()
	if s.srv, err = restartable.Start(http.HandlerFunc(s.serve)); err != nil {
		panic("fakeconsul: " + err.Error()) // as httptest does: no loopback port
	}
	s.URL = s.srv.URL
	return s
}

// Close stops the server; blocked queries see their connection drop, and
// no session expires any more.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.sessionsClose()
	s.srv.Stop()
}

// Stop takes the agent down: connections are refused, blocked queries cut,
// and, with no leader, no session expires.
func (s *Server) Stop() {
	s.sessionsStop()
	s.srv.Stop()
}

// Restart brings a stopped agent back on the same address as a new agent
// (a dev agent, or one whose data was lost): its state is body at index,
// whatever came before, and it remembers no earlier query. The KV store
// and the sessions are kept; as a new Consul leader does, every session
// TTL starts again and lock delays are forgotten.
func (s *Server) Restart(index uint64, body []byte) error {
	cs, err := parseChecks(body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.index, s.checks = index, cs
	s.notify()
	s.sessionsRestart()
	s.mu.Unlock()
	return s.srv.Restart()
}

// Index is the current X-Consul-Index.
func (s *Server) Index() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Requests returns every request received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// SetToken turns ACLs on with token as the only known secret ("" turns them
// off). As in Consul with default policy deny: another token gets 403 "ACL
// not found", and no token means the anonymous token, whose answer is an
// empty list (200, not 403).
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// SetScopedToken adds a token that may read every node but only the
// services whose names start with one of prefixes. As Consul's ACL filter
// does, its answers leave out the checks of other services, without an
// error, and say so in X-Consul-Results-Filtered-By-ACLs. ACLs must be on
// (SetToken). As Consul resolves a token once per request, a query
// already blocked keeps the rights it started with.
func (s *Server) SetScopedToken(token string, prefixes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scoped == nil {
		s.scoped = map[string][]string{}
	}
	s.scoped[token] = prefixes
}

// FailNext makes the next n health queries answer status with Consul's body
// for it (500 "No cluster leader", 403 "ACL not found", 429 empty, else the
// status text), before any ACL check or blocking.
func (s *Server) FailNext(n, status int) {
	s.queue(n, failure{status: status})
}

// CorruptNext makes the next n health queries answer 200 with valid headers
// and a body cut in the middle, as a broken proxy would.
func (s *Server) CorruptNext(n int) {
	s.queue(n, failure{status: http.StatusOK, corrupt: true})
}

func (s *Server) queue(n int, f failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, f)
	}
}

// SetChecks replaces the whole state. An index that does not move forward
// acts as a snapshot restore: blocked queries return at once with it, so a
// client sees the index go backwards. Index 0 is allowed, to test the
// clamping rule, though Consul itself never answers 0 any more.
func (s *Server) SetChecks(index uint64, checks []api.HealthCheck) {
	cs := make([]check, len(checks))
	for i, hc := range checks {
		b, err := json.Marshal(hc)
		if err != nil {
			panic(err) // api.HealthCheck always marshals
		}
		if err := json.Unmarshal(b, &cs[i]); err != nil {
			panic(err)
		}
		if hc.ServiceTags == nil {
			cs[i].set("ServiceTags", []string{}) // Consul sends [] rather than null
		}
	}
	s.replace(index, cs)
}

// SetChecksJSON is SetChecks with a body such as StateBefore().
func (s *Server) SetChecksJSON(index uint64, body []byte) error {
	cs, err := parseChecks(body)
	if err != nil {
		return err
	}
	s.replace(index, cs)
	return nil
}

// ExpireTTL moves to the captured state at IndexTTLExpired: what Consul
// answered when the TTL of chatops-ttl expired.
func (s *Server) ExpireTTL() {
	if err := s.SetChecksJSON(IndexTTLExpired, stateTTLExpired); err != nil {
		panic(err) // the embedded capture is valid JSON
	}
}

func (s *Server) replace(index uint64, checks []check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.index {
		s.restores++
	}
	s.index, s.checks = index, checks
	s.notify()
}

// UpdateCheck sets a check's status and output, as a TTL update or a check
// run does, and bumps the index. A critical check invalidates the sessions
// tied to it (e.g. serfHealth: the node died), at the same index.
func (s *Server) UpdateCheck(node, checkID, status, output string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(node, checkID)
	if i < 0 {
		return fmt.Errorf("fakeconsul: no check %q on node %q", checkID, node)
	}
	s.bumpForCheck(node, checkID, status == api.HealthCritical)
	c := s.checks[i]
	c.set("Status", status)
	c.set("Output", output)
	c.set("ModifyIndex", s.index)
	s.notify()
	return nil
}

// AddCheck registers a check (or replaces the one with the same node and
// ID) and bumps the index.
func (s *Server) AddCheck(hc api.HealthCheck) {
	if hc.ServiceTags == nil {
		hc.ServiceTags = []string{}
	}
	b, err := json.Marshal(hc)
	if err != nil {
		panic(err) // api.HealthCheck always marshals
	}
	var c check
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(c)
}

// RemoveCheck deregisters a check and bumps the index, invalidating the
// sessions tied to it.
func (s *Server) RemoveCheck(node, checkID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(node, checkID)
	if i < 0 {
		return fmt.Errorf("fakeconsul: no check %q on node %q", checkID, node)
	}
	s.bumpForCheck(node, checkID, true)
	s.checks = slices.Delete(s.checks, i, i+1)
	s.notify()
	return nil
}

// AddMaintenance puts a node (serviceID "") or one service instance of the
// node into maintenance, registering the check Consul registers: critical,
// type "maintenance", Consul's default reason in Notes. Like Consul it does
// nothing when maintenance is already on. The service must have a check on
// the node, which gives its name and tags.
func (s *Server) AddMaintenance(node, serviceID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := check{}
	if serviceID == "" {
		c.set("CheckID", NodeMaintCheckID)
		c.set("Name", "Node Maintenance Mode")
		c.set("Notes", defaultNodeMaintReason)
		c.set("ServiceName", "")
		c.set("ServiceTags", []string{})
	} else {
		svc := slices.IndexFunc(s.checks, func(c check) bool { return c.str("Node") == node && c.str("ServiceID") == serviceID })
		if svc < 0 {
			return fmt.Errorf("No service registered with ID %q", serviceID) // Consul's text
		}
		c.set("CheckID", ServiceMaintPrefix+serviceID)
		c.set("Name", "Service Maintenance Mode")
		c.set("Notes", defaultServiceMaintReason)
		c["ServiceName"] = s.checks[svc]["ServiceName"]
		c["ServiceTags"] = s.checks[svc]["ServiceTags"]
	}
	if s.find(node, c.str("CheckID")) >= 0 {
		return nil
	}
	c.set("Node", node)
	c.set("Status", api.HealthCritical)
	c.set("Output", "")
	c.set("ServiceID", serviceID)
	c.set("Type", "maintenance")
	c.set("Interval", "")
	c.set("Timeout", "")
	c.set("ExposedPort", 0)
	c["Definition"] = json.RawMessage("{}")
	s.put(c)
	return nil
}

// RemoveMaintenance ends the maintenance AddMaintenance started; like
// Consul it does nothing when maintenance is off.
func (s *Server) RemoveMaintenance(node, serviceID string) {
	id := NodeMaintCheckID
	if serviceID != "" {
		id = ServiceMaintPrefix + serviceID
	}
	_ = s.RemoveCheck(node, id) // absent: nothing to do
}

// put registers c at a new index (a critical check invalidates the
// sessions tied to it); s.mu is held.
func (s *Server) put(c check) {
	s.bumpForCheck(c.str("Node"), c.str("CheckID"), c.str("Status") == api.HealthCritical)
	c.set("CreateIndex", s.index)
	c.set("ModifyIndex", s.index)
	if i := s.find(c.str("Node"), c.str("CheckID")); i >= 0 {
		c["CreateIndex"] = s.checks[i]["CreateIndex"]
		s.checks[i] = c
	} else {
		s.checks = append(s.checks, c)
	}
	s.notify()
}

// find returns the position of a check, or -1; s.mu is held.
func (s *Server) find(node, checkID string) int {
	return slices.IndexFunc(s.checks, func(c check) bool { return c.str("Node") == node && c.str("CheckID") == checkID })
}

// bump moves the index forward for a write; s.mu is held.
func (s *Server) bump() { s.index++ }

// notify wakes blocked queries; s.mu is held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func parseChecks(body []byte) ([]check, error) {
	var cs []check
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("fakeconsul: checks: %w", err)
	}
	return cs, nil
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	token := requestToken(r)
	s.mu.Lock()
	s.requests = append(s.requests, Request{At: time.Now(), Method: r.Method, Path: r.URL.Path, Query: q, RawQuery: r.URL.RawQuery, Token: token})
	s.mu.Unlock()

	if r.URL.Path == "/v1/status/leader" {
		// A single dev agent leads itself, on its server RPC port. Consul
		// answers it to any token, without an index.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"127.0.0.1:8300"`))
		return
	}
	if r.URL.Path == "/v1/snapshot" {
		s.snapshot(w, r, token) // snapshot.go
		return
	}
	if s.serveKV(w, r, token) { // kv.go, once the KV store is on
		return
	}
	if s.serveSession(w, r, token) { // session.go
		return
	}
	state, ok := strings.CutPrefix(r.URL.Path, "/v1/health/state/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		plain(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		return
	}
	// In Consul's order: parse() checks consistency, wait and index, then
	// the handler the state (an unknown one is no error: it matches
	// nothing), then the RPC fails to forward to an unknown datacenter.
	_, stale := q["stale"]
	_, consistent := q["consistent"]
	if stale && consistent {
		plain(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid wait time")
			return
		}
		wait = d
	}
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid index")
			return
		}
		minIndex = n
	}
	if state == "" {
		plain(w, http.StatusBadRequest, "Missing check state")
		return
	}
	if dc := q.Get("dc"); dc != "" && dc != Datacenter {
		plain(w, http.StatusInternalServerError, "No path to datacenter")
		return
	}

	s.mu.Lock()
	var fail failure
	failing := len(s.failures) > 0
	if failing {
		fail = s.failures[0]
		s.failures = s.failures[1:]
	}
	acl := s.token
	prefixes, scoped := s.scoped[token]
	restores := s.restores
	s.mu.Unlock()
	if failing && !fail.corrupt {
		plain(w, fail.status, failureBody(fail.status))
		return
	}
	if acl != "" && token != "" && token != acl && !scoped {
		plain(w, http.StatusForbidden, "ACL not found")
		return
	}
	// What the token may read: nothing for the anonymous token of a deny
	// policy, some services for a scoped one.
	readable := func(check) bool { return acl == "" || token != "" }
	if scoped {
		readable = func(c check) bool {
			svc := c.str("ServiceName")
			return svc == "" || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(svc, p) })
		}
	}

	timeout, stop := waitTimer(minIndex, wait)
	defer stop()
wake:
	for {
		s.mu.Lock()
		ready := minIndex == 0 || s.index > minIndex || s.restores != restores
		changed := s.changed
		s.mu.Unlock()
		if ready {
			break
		}
		if woke, gone := s.awaitChange(r, changed, timeout); gone {
			return
		} else if !woke {
			break wake // Consul answers the unchanged state
		}
	}

	consistency := "leader"
	switch {
	case stale:
		consistency = "stale"
	case consistent:
		consistency = "consistent"
	}
	_, pretty := q["pretty"]
	index, body, filtered := s.render(state, readable, pretty)
	if fail.corrupt {
		body = body[:len(body)/2]
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	setACLPolicy(h, acl)
	h.Set("X-Consul-Effective-Consistency", consistency)
	h.Set("X-Consul-Index", strconv.FormatUint(index, 10))
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", "blocking-query")
	if filtered && token != "" { // Consul masks it from the anonymous token
		h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// render returns the index and the body for a state, sorted as Consul's
// memdb "id" index sorts (node, then check ID, case-insensitively), and
// whether checks the token may not read were left out.
func (s *Server) render(state string, readable func(check) bool, pretty bool) (uint64, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []check{}
	filtered := false
	for _, c := range s.checks {
		switch {
		case state != api.HealthAny && c.str("Status") != state:
		case !readable(c):
			filtered = true
		default:
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b check) int {
		if c := strings.Compare(strings.ToLower(a.str("Node")), strings.ToLower(b.str("Node"))); c != 0 {
			return c
		}
		return strings.Compare(strings.ToLower(a.str("CheckID")), strings.ToLower(b.str("CheckID")))
	})
	var body []byte
	var err error
	if pretty {
		body, err = json.MarshalIndent(out, "", "    ")
	} else {
		body, err = json.Marshal(out)
	}
	if err != nil {
		panic(err) // raw JSON values that parsed always marshal
	}
	return s.index, body, filtered
}

// requestToken reads the token where Consul's parseToken does, in its order.
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func failureBody(status int) string {
	switch status {
	case http.StatusInternalServerError:
		return "No cluster leader"
	case http.StatusForbidden:
		return "ACL not found"
	case http.StatusTooManyRequests:
		return "" // Consul sends the status alone
	}
	return http.StatusText(status)
}

// plain answers an error as Consul does: a text body, no index headers.
func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprint(w, body)
}

// waitTimer ends a blocking query: after wait (Consul's default when 0, at
// most its maximum) plus Consul's stagger of up to wait/16. A plain read
// (minIndex 0) never times out: nil. stop releases the timer.
func waitTimer(minIndex uint64, wait time.Duration) (timeout <-chan time.Time, stop func()) {
	if minIndex == 0 {
		return nil, func() {}
	}
	if wait <= 0 {
		wait = defaultWait
	}
	wait = min(wait, maxWait)
	if wait >= 16 {
		wait += rand.N(wait / 16) // Consul's lib.RandomStagger(wait/16)
	}
	t := time.NewTimer(wait)
	return t.C, func() { t.Stop() }
}

// awaitChange waits, in a blocking query, for the state to change (woke),
// the query's wait to end, or the client to leave (gone). A server
// stopping drops the connection, as a dying agent does.
func (s *Server) awaitChange(r *http.Request, changed <-chan struct{}, timeout <-chan time.Time) (woke, gone bool) {
	select {
	case <-changed:
		return true, false
	case <-timeout:
		return false, false
	case <-r.Context().Done():
		return false, true
	case <-s.done:
		panic(http.ErrAbortHandler)
	}
}

// setACLPolicy sets the header Consul's HTTP wrapper puts on every
// answer, errors included: the default policy, deny once ACLs are on.
func setACLPolicy(h http.Header, acl string) {
	policy := "allow"
	if acl != "" {
		policy = "deny"
	}
	h.Set("X-Consul-Default-Acl-Policy", policy)
}
