package fakeconsul

// /v1/session/, Consul's sessions, and the clock they run on, as Consul
// v1.22.0 serves them to github.com/hashicorp/consul/api's Lock (the
// traffic in testdata/consul-lock, see testdata/README.md), checked against
// agent/session_endpoint.go, agent/http.go (wrap: an RPC error is a 500),
// agent/consul/session_endpoint.go (Apply, Renew, Get, List),
// agent/consul/session_ttl.go, agent/consul/state/session.go
// (sessionCreateTxn, validateSessionChecksTxn, deleteSessionTxn),
// agent/consul/state/catalog.go (ensureCheckTxn), agent/consul/state/delay_ce.go,
// agent/consul/kvs_endpoint.go (kvsPreApply, Apply) and agent/structs
// (Session.UnmarshalJSON, SessionTTLMultiplier, MaxLockDelay); the
// ?acquire and ?release half is in kv.go.
//
// What it models:
//   - PUT /v1/session/create with Consul's defaults (node "vm", the serfHealth
//     check, lock-delay 15 s, behavior release, no TTL), its decoding of the
//     body (LockDelay as a duration string or a number, read as seconds
//     below 1000; unknown fields ignored; "Checks": [] or "NodeChecks": []
//     for no check) and its checks: "Invalid Behavior setting", a TTL
//     outside [10s, 24h] (a 500, as every RPC error: Consul's HTTP layer
//     does not turn it into a 400), a node without checks ("Missing node
//     registration"), a missing or critical session check.
//   - PUT /v1/session/renew/<id> (404 "Session id '<id>' not found"), PUT
//     /v1/session/destroy/<id> (true, also for an unknown session), GET
//     /v1/session/info/<id>, /v1/session/node/<node> and /v1/session/list,
//     blocking on the sessions table's index.
//   - TTL expiry: a TTL session is invalidated TTL × 2 after its creation or
//     last renew (Consul's SessionTTLMultiplier), on the fake's clock.
//   - Invalidation (destroy, TTL expiry, ExpireSession, a session check
//     going critical or deregistered): the session's keys released
//     (Session cleared, LockIndex kept) or deleted (behavior delete) at the
//     invalidation's raft index, waking blocked queries, and each given the
//     session's lock-delay (at most 60 s): ?acquire answers false on it
//     until the delay is over. A ?release by the holder sets no delay.
//   - ACLs: session_prefix rules per token (SetSessionPrefixes), read for
//     info, node and list (others' sessions left out), write for create,
//     renew and destroy; injected failures (FailNextSession).
//   - One raft index with the KV store: a create, a destroy and an expiry
//     each take the next one; a renew, a rejected create (bad TTL or
//     behavior) and a lock-delay refusal take none; a create the state store
//     refuses (missing node or check) uses one up.
//
// The clock: real time plus what Advance added, so a 10 s TTL expires
// after 20 s of real time, or at once after Advance(20 * time.Second).
// Blocking queries and api.Lock's own timers stay on real time. While the
// agent is stopped (Stop), no session expires; Restart restarts every TTL
// from its start, as a new Consul leader does (initializeSessionTimers),
// and forgets lock delays, which Consul keeps in memory only.
//
// Deviations:
//   - ServiceChecks are checked on the session's node like node checks;
//     Consul looks them up as service checks with their namespace.
//   - A whole-state change of the health checks (SetChecks, ExpireTTL,
//     Restart) invalidates no session; UpdateCheck, AddCheck, RemoveCheck
//     and AddMaintenance do as Consul does.
//   - ?ns, ?partition and the session IDs' case are not modelled.

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// Consul's session limits and defaults (agent/structs, agent/config and
// agent/session_endpoint.go).
const (
	SessionTTLMin        = 10 * time.Second // session_ttl_min's default
	SessionTTLMax        = 24 * time.Hour
	SessionTTLMultiplier = 2 // a TTL session is invalidated TTL × 2 after its last renew
	DefaultLockDelay     = 15 * time.Second
	MaxLockDelay         = 60 * time.Second
	// NodeName is the captured agent's node, where sessions are created
	// by default.
	NodeName = "vm"

	serfCheckID = "serfHealth"
	// lockDelayMinThreshold: a LockDelay below it is read as seconds.
	lockDelayMinThreshold = 1000
)

// sessionEntry is a session as Consul's structs.Session marshals it, in
// its field order (the enterprise metadata marshals to nothing).
type sessionEntry struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []serviceCheck
	Checks        []string `json:",omitempty"` // deprecated in Consul 1.7
	CreateIndex   uint64
	ModifyIndex   uint64
}

type serviceCheck struct {
	ID        string
	Namespace string
}

// UnmarshalJSON reads a LockDelay as Consul's Session.UnmarshalJSON does: a
// duration string or a number of nanoseconds, either multiplied by a second
// when below 1000. Other fields decode as usual, unknown ones ignored.
func (e *sessionEntry) UnmarshalJSON(data []byte) error {
	type Alias sessionEntry
	aux := &struct {
		LockDelay any
		*Alias
	}{Alias: (*Alias)(e)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	if aux.LockDelay != nil {
		var dur time.Duration
		switch v := aux.LockDelay.(type) {
		case string:
			d, err := time.ParseDuration(v)
			if err != nil {
				return err
			}
			dur = d
		case float64:
			dur = time.Duration(v)
		}
		if dur < lockDelayMinThreshold {
			dur *= time.Second
		}
		e.LockDelay = dur
	}
	return nil
}

// checkIDs are the checks the session is tied to (structs.Session.CheckIDs).
func (e *sessionEntry) checkIDs() []string {
	ids := slices.Concat(e.Checks, e.NodeChecks)
	for _, sc := range e.ServiceChecks {
		ids = append(ids, sc.ID)
	}
	return ids
}

// session is a live session.
type session struct {
	entry    sessionEntry
	ttl      time.Duration // 0: no TTL
	deadline time.Time     // on the fake's clock; zero without a TTL
}

// sessionState holds sessions, lock delays and the clock; guarded by
// Server.mu. Blocked session queries wait on the KV store's changed
// channel.
type sessionState struct {
	sessions map[string]*session
	table    uint64               // Consul's sessions table index
	delays   map[string]time.Time // key → end of its lock delay, on the fake's clock
	offset   time.Duration        // what Advance added to real time
	timer    *time.Timer          // fires at the next TTL deadline
	down     bool                 // the agent is stopped: no timer runs
	closed   bool
	failures []int
	// rules holds each token's session_prefix rules: prefix → write (else read).
	rules map[string]map[string]bool
}

// sessionInit makes the session table empty.
func (s *Server) sessionInit() {
	s.sess.sessions = map[string]*session{}
	s.sess.delays = map[string]time.Time{}
}

// now is the fake's clock: real time plus what Advance added; s.mu is held.
func (s *Server) now() time.Time { return time.Now().Add(s.sess.offset) }

// Advance moves the fake's clock forward by d (real time moves it too):
// TTL sessions not renewed within TTL × 2 are invalidated at once, in
// deadline order, each at its own raft index, and lock delays shorter than
// the jump are over. Blocking queries and client timers are not affected:
// a client that renews on real time (api.Lock renews every TTL/2) does not
// renew during the jump, so its session ages by d at once, and expires
// when d plus the real time since its last renew reaches TTL × 2.
func (s *Server) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sess.offset += d
	s.expireSessions()
}

// ExpireSession invalidates a session now, as its TTL expiry or the
// failure of its node would, and reports whether it existed.
func (s *Server) ExpireSession(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sess.sessions[id]; !ok {
		return false
	}
	s.invalidateSession(s.kvNext(), id)
	s.armSessionTimer()
	return true
}

// Sessions returns the live sessions, oldest first.
func (s *Server) Sessions() []api.SessionEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.SessionEntry, 0, len(s.sess.sessions))
	for _, se := range s.sess.sessions {
		e := se.entry
		ae := api.SessionEntry{
			CreateIndex: e.CreateIndex, ID: e.ID, Name: e.Name, Node: e.Node, LockDelay: e.LockDelay,
			Behavior: e.Behavior, TTL: e.TTL, Checks: slices.Clone(e.Checks), NodeChecks: slices.Clone(e.NodeChecks),
		}
		for _, sc := range e.ServiceChecks {
			ae.ServiceChecks = append(ae.ServiceChecks, api.ServiceCheck{ID: sc.ID, Namespace: sc.Namespace})
		}
		out = append(out, ae)
	}
	slices.SortFunc(out, func(a, b api.SessionEntry) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return out
}

// KVHolder returns the session holding a key's lock ("" when free) and the
// key's LockIndex; ok is false when the key does not exist.
func (s *Server) KVHolder(key string) (session string, lockIndex uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv.entries[key]
	return e.Session, e.LockIndex, ok
}

// SetSessionPrefixes gives token session_prefix rules on node names, as a
// Consul policy `session_prefix "<prefix>" { policy = "write" }` (or
// "read") would: the longest matching prefix decides, no match denies.
// Rules add up over calls. ACLs must be on (SetToken); the token ""
// gives them to the anonymous token. Any other token becomes known to the
// other endpoints, as with SetKVPrefixes.
func (s *Server) SetSessionPrefixes(token string, write bool, prefixes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addPrefixRules(&s.sess.rules, token, write, prefixes)
}

// FailNextSession makes the next n /v1/session/ requests answer status
// with Consul's body for it (500 "No cluster leader", 403 "ACL not found",
// 429 empty, else the status text), after the parameter checks and before
// the ACL check, where Consul forwards to the leader; a failed write
// changes nothing. Other endpoints do not consume them.
func (s *Server) FailNextSession(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.sess.failures = append(s.sess.failures, status)
	}
}

// armSessionTimer sets the timer for the next TTL deadline; s.mu is held.
func (s *Server) armSessionTimer() {
	if s.sess.timer != nil {
		s.sess.timer.Stop()
		s.sess.timer = nil
	}
	if s.sess.down || s.sess.closed {
		return
	}
	var next time.Time
	for _, se := range s.sess.sessions {
		if !se.deadline.IsZero() && (next.IsZero() || se.deadline.Before(next)) {
			next = se.deadline
		}
	}
	if next.IsZero() {
		return
	}
	s.sess.timer = time.AfterFunc(next.Sub(s.now()), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.expireSessions()
	})
}

// expireSessions invalidates the TTL sessions whose deadline has passed,
// as Consul's session timers do (session_ttl.go: invalidateSession, one
// raft entry each), then sets the timer for the next; s.mu is held.
func (s *Server) expireSessions() {
	if s.sess.down || s.sess.closed {
		return
	}
	now := s.now()
	var due []*session
	for _, se := range s.sess.sessions {
		if !se.deadline.IsZero() && !se.deadline.After(now) {
			due = append(due, se)
		}
	}
	slices.SortFunc(due, func(a, b *session) int {
		if c := a.deadline.Compare(b.deadline); c != 0 {
			return c
		}
		return strings.Compare(a.entry.ID, b.entry.ID)
	})
	for _, se := range due {
		s.invalidateSession(s.kvNext(), se.entry.ID)
	}
	s.armSessionTimer()
}

// invalidateSession is Consul's deleteSessionTxn at raft index idx: the
// session goes, its keys are released or deleted and get its lock-delay;
// s.mu is held. The caller re-arms the timer.
func (s *Server) invalidateSession(idx uint64, id string) {
	se, ok := s.sess.sessions[id]
	if !ok {
		return
	}
	delete(s.sess.sessions, id)
	s.sess.table = idx
	s.kv.raft = max(s.kv.raft, idx)
	delay := min(se.entry.LockDelay, MaxLockDelay)
	now := s.now()
	var keys []string
	for k, e := range s.kv.entries {
		if e.Session == id {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if se.entry.Behavior == api.SessionBehaviorDelete {
			s.kvDelete(idx, k)
		} else {
			e := s.kv.entries[k]
			e.Session = ""
			s.kvSet(idx, e)
		}
		if delay > 0 {
			s.sess.delays[k] = now.Add(delay)
		}
	}
	s.kvNotify() // wakes blocked session queries too
}

// lockDelayed reports whether key is under a lock delay; s.mu is held.
func (s *Server) lockDelayed(key string) bool {
	end, ok := s.sess.delays[key]
	if ok && !end.After(s.now()) {
		delete(s.sess.delays, key) // Consul's time.AfterFunc does it
		return false
	}
	return ok
}

// sessionsOnCheck returns the sessions tied to a check; s.mu is held.
func (s *Server) sessionsOnCheck(node, checkID string) []string {
	var ids []string
	for id, se := range s.sess.sessions {
		if strings.EqualFold(se.entry.Node, node) &&
			slices.ContainsFunc(se.entry.checkIDs(), func(c string) bool { return strings.EqualFold(c, checkID) }) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// bumpForCheck moves the health index for a write of check (node,
// checkID). When the check goes critical or away (invalidate), the
// sessions tied to it are invalidated in the same raft entry, as Consul's
// ensureCheckTxn and deleteCheckTxn do: the index then moves past the
// KV's too. s.mu is held.
func (s *Server) bumpForCheck(node, checkID string, invalidate bool) {
	var ids []string
	if invalidate {
		ids = s.sessionsOnCheck(node, checkID)
	}
	if len(ids) == 0 {
		s.bump()
		return
	}
	s.index = max(s.index, s.kv.raft) + 1
	for _, id := range ids {
		s.invalidateSession(s.index, id)
	}
	s.armSessionTimer()
}

// sessionsStop suspends the session timers while the agent is down.
func (s *Server) sessionsStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sess.down = true
	s.armSessionTimer()
}

// sessionsRestart is a new leader's initializeSessionTimers: every TTL
// starts again from now; lock delays, kept in memory only, are gone.
// s.mu is held.
func (s *Server) sessionsRestart() {
	s.sess.down = false
	now := s.now()
	for _, se := range s.sess.sessions {
		if se.ttl > 0 {
			se.deadline = now.Add(se.ttl * SessionTTLMultiplier)
		}
	}
	clear(s.sess.delays)
	s.armSessionTimer()
}

// sessionsClose stops the timer for good.
func (s *Server) sessionsClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sess.closed = true
	s.armSessionTimer()
}

// newSessionID makes a random UUID, as go-uuid's GenerateUUID does.
func newSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// fixupEmptySessionChecks is Consul's: "Checks": [] (or null) means no
// check at all; the default serfHealth in Checks gives way to NodeChecks.
func fixupEmptySessionChecks(e *sessionEntry) {
	switch {
	case len(e.Checks) == 0:
		e.NodeChecks = []string{}
	case len(e.Checks) == 1 && e.Checks[0] == serfCheckID:
		e.Checks = nil
	case len(e.NodeChecks) == 0:
		e.Checks = nil
	}
}

// validateTTL is Session.Apply's check of a TTL.
func validateTTL(ttl string) error {
	if ttl == "" {
		return nil
	}
	d, err := time.ParseDuration(ttl)
	if err != nil {
		return fmt.Errorf("Session TTL '%s' invalid: %v", ttl, err)
	}
	if d != 0 && (d < SessionTTLMin || d > SessionTTLMax) {
		return fmt.Errorf("Invalid Session TTL '%d', must be between [%v=%v]", d, SessionTTLMin, SessionTTLMax)
	}
	return nil
}

// sessionTTL is resetSessionTimer's reading of a valid TTL: 0 for none.
func sessionTTL(ttl string) time.Duration {
	switch ttl {
	case "", "0", "0s", "0m", "0h":
		return 0
	}
	d, _ := time.ParseDuration(ttl) // validated by validateTTL
	return d
}

// createSession is the state store's sessionCreateTxn at raft index idx;
// s.mu is held.
func (s *Server) createSession(idx uint64, e sessionEntry) (string, error) {
	if !slices.ContainsFunc(s.checks, func(c check) bool { return strings.EqualFold(c.str("Node"), e.Node) }) {
		return "", errors.New("Missing node registration")
	}
	for _, id := range e.checkIDs() {
		i := slices.IndexFunc(s.checks, func(c check) bool {
			return strings.EqualFold(c.str("Node"), e.Node) && strings.EqualFold(c.str("CheckID"), id)
		})
		if i < 0 {
			return "", fmt.Errorf("Missing check '%s' registration", id)
		}
		if st := s.checks[i].str("Status"); st == api.HealthCritical {
			return "", fmt.Errorf("Check '%s' is in %s state", id, st)
		}
	}
	for e.ID = newSessionID(); s.sess.sessions[e.ID] != nil; e.ID = newSessionID() {
	}
	e.CreateIndex, e.ModifyIndex = idx, idx
	se := &session{entry: e, ttl: sessionTTL(e.TTL)}
	if se.ttl > 0 {
		se.deadline = s.now().Add(se.ttl * SessionTTLMultiplier)
	}
	s.sess.sessions[e.ID] = se
	s.sess.table = idx
	s.armSessionTimer()
	s.kvNotify()
	return e.ID, nil
}

// sessionRequest is what every /v1/session/ request resolves first.
type sessionRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	q      url.Values
	token  string
	access kvAccess // session_prefix rules, on node names
	known  bool     // the token resolves (else "ACL not found")
}

// forward plays the part of Consul's RPC forwarding: the datacenter, then
// an injected failure (no leader). It answers and returns false when the
// request stops there.
func (s *Server) forward(sr *sessionRequest) bool {
	return s.reachLeader(sr.w, sr.q, &s.sess.failures)
}

// reachLeader plays the part of Consul's RPC forwarding, for one kind of
// request: the datacenter, then the next failure injected for that kind
// (no leader). It answers and returns false when the request stops there.
func (s *Server) reachLeader(w http.ResponseWriter, q url.Values, failures *[]int) bool {
	if dc := q.Get("dc"); dc != "" && dc != Datacenter {
		plain(w, http.StatusInternalServerError, "No path to datacenter")
		return false
	}
	s.mu.Lock()
	fail := 0
	if len(*failures) > 0 {
		fail = (*failures)[0]
		*failures = (*failures)[1:]
	}
	s.mu.Unlock()
	if fail != 0 {
		plain(w, fail, failureBody(fail))
		return false
	}
	return true
}

// resolve is the token's resolution: "ACL not found" for an unknown one.
func (sr *sessionRequest) resolve() bool {
	if !sr.known {
		plain(sr.w, http.StatusForbidden, "ACL not found")
	}
	return sr.known
}

// mayWrite answers Consul's "Permission denied" when the token lacks
// session:write on node.
func (sr *sessionRequest) mayWrite(node string) bool {
	if _, write := sr.access.level(node); !write {
		plain(sr.w, http.StatusForbidden, sr.access.deniedOn("session", "write", node))
		return false
	}
	return true
}

// parseQuery is Consul's parse() for the endpoints that use it:
// consistency, wait and index.
func parseQuery(w http.ResponseWriter, q url.Values) (minIndex uint64, wait time.Duration, ok bool) {
	_, stale := q["stale"]
	_, consistent := q["consistent"]
	if stale && consistent {
		plain(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return 0, 0, false
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid wait time")
			return 0, 0, false
		}
		wait = d
	}
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid index")
			return 0, 0, false
		}
		minIndex = n
	}
	return minIndex, wait, true
}

// serveSession serves /v1/session/ and reports whether it did; serve has
// recorded the request.
func (s *Server) serveSession(w http.ResponseWriter, r *http.Request, token string) bool {
	var op, arg string
	method := http.MethodGet
	switch p := r.URL.Path; {
	case p == "/v1/session/create":
		op, method = "create", http.MethodPut
	case p == "/v1/session/list":
		op = "list"
	case strings.HasPrefix(p, "/v1/session/destroy/"):
		op, arg, method = "destroy", strings.TrimPrefix(p, "/v1/session/destroy/"), http.MethodPut
	case strings.HasPrefix(p, "/v1/session/renew/"):
		op, arg, method = "renew", strings.TrimPrefix(p, "/v1/session/renew/"), http.MethodPut
	case strings.HasPrefix(p, "/v1/session/info/"):
		op, arg = "info", strings.TrimPrefix(p, "/v1/session/info/")
	case strings.HasPrefix(p, "/v1/session/node/"):
		op, arg = "node", strings.TrimPrefix(p, "/v1/session/node/")
	default:
		return false
	}

	s.mu.Lock()
	acl := s.token
	_, scoped := s.scoped[token]
	rules, hasRules := s.sess.rules[token]
	rules = maps.Clone(rules)
	_, hasKVRules := s.kv.rules[token]
	s.mu.Unlock()

	h := w.Header()
	setACLPolicy(h, acl)
	h.Set("Vary", "Accept-Encoding")
	switch r.Method {
	case method:
	case http.MethodOptions:
		h.Set("Allow", "OPTIONS,"+method)
		return true
	default:
		h.Set("Allow", "OPTIONS,"+method)
		plain(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		return true
	}

	sr := &sessionRequest{w: w, r: r, q: r.URL.Query(), token: token,
		access: kvAccess{all: acl == "" || token == acl, rules: rules}}
	if token != "" {
		sr.access.accessor = AccessorID(token)
	}
	sr.known = sr.access.all || token == "" || scoped || hasRules || hasKVRules
	switch op {
	case "create":
		s.sessionCreate(sr)
	case "destroy":
		s.sessionDestroy(sr, arg)
	case "renew":
		s.sessionRenew(sr, arg)
	default:
		s.sessionRead(sr, op, arg)
	}
	return true
}

func (s *Server) sessionCreate(sr *sessionRequest) {
	// The HTTP handler's defaults, then the body (read only when its length
	// is known, as Consul does).
	e := sessionEntry{
		Node:       NodeName,
		NodeChecks: []string{serfCheckID},
		Checks:     []string{serfCheckID},
		LockDelay:  DefaultLockDelay,
		Behavior:   api.SessionBehaviorRelease,
	}
	if sr.r.ContentLength > 0 {
		dec := json.NewDecoder(sr.r.Body)
		dec.DisallowUnknownFields() // lib.DecodeJSON; UnmarshalJSON ignores them anyway
		if err := dec.Decode(&e); err != nil {
			plain(sr.w, http.StatusBadRequest, fmt.Sprintf("Request decode failed: %v", err))
			return
		}
	}
	fixupEmptySessionChecks(&e)
	if !s.forward(sr) {
		return
	}
	// Session.Apply, in its order.
	if e.Node == "" {
		plain(sr.w, http.StatusInternalServerError, "Must provide Node")
		return
	}
	if !sr.resolve() || !sr.mayWrite(e.Node) {
		return
	}
	switch e.Behavior {
	case "":
		e.Behavior = api.SessionBehaviorRelease
	case api.SessionBehaviorRelease, api.SessionBehaviorDelete:
	default:
		plain(sr.w, http.StatusInternalServerError, fmt.Sprintf("Invalid Behavior setting '%s'", e.Behavior))
		return
	}
	if err := validateTTL(e.TTL); err != nil {
		plain(sr.w, http.StatusInternalServerError, err.Error())
		return
	}
	s.mu.Lock()
	id, err := s.createSession(s.kvNext(), e)
	s.mu.Unlock()
	if err != nil {
		plain(sr.w, http.StatusInternalServerError, "apply failed: "+err.Error())
		return
	}
	writeJSON(sr.w, sr.q, struct{ ID string }{id})
}

func (s *Server) sessionDestroy(sr *sessionRequest, id string) {
	if id == "" {
		plain(sr.w, http.StatusBadRequest, "Missing session")
		return
	}
	if !s.forward(sr) || !sr.resolve() {
		return
	}
	s.mu.Lock()
	se, ok := s.sess.sessions[id]
	var node string
	if ok {
		node = se.entry.Node
	}
	s.mu.Unlock()
	if ok && !sr.mayWrite(node) {
		return
	}
	if ok {
		s.mu.Lock()
		if _, still := s.sess.sessions[id]; still {
			s.invalidateSession(s.kvNext(), id)
			s.armSessionTimer()
		}
		s.mu.Unlock()
	}
	writeJSON(sr.w, sr.q, true) // an unknown session too: nothing to do
}

func (s *Server) sessionRenew(sr *sessionRequest, id string) {
	if _, _, ok := parseQuery(sr.w, sr.q); !ok {
		return
	}
	if id == "" {
		plain(sr.w, http.StatusBadRequest, "Missing session")
		return
	}
	if !s.forward(sr) || !sr.resolve() {
		return
	}
	s.mu.Lock()
	se, ok := s.sess.sessions[id]
	var e sessionEntry
	if ok {
		e = se.entry
	}
	s.mu.Unlock()
	if !ok {
		plain(sr.w, http.StatusNotFound, fmt.Sprintf("Session id '%s' not found", id))
		return
	}
	if !sr.mayWrite(e.Node) {
		return
	}
	s.mu.Lock()
	if se, ok := s.sess.sessions[id]; ok && se.ttl > 0 {
		se.deadline = s.now().Add(se.ttl * SessionTTLMultiplier)
		s.armSessionTimer()
	}
	s.mu.Unlock()
	writeJSON(sr.w, sr.q, []sessionEntry{e})
}

// sessionRead serves info, node and list: blocking queries on the
// sessions table's index.
func (s *Server) sessionRead(sr *sessionRequest, op, arg string) {
	minIndex, wait, ok := parseQuery(sr.w, sr.q)
	if !ok {
		return
	}
	switch {
	case op == "info" && arg == "":
		plain(sr.w, http.StatusBadRequest, "Missing session")
		return
	case op == "node" && arg == "":
		plain(sr.w, http.StatusBadRequest, "Missing node name")
		return
	}
	if !s.forward(sr) || !sr.resolve() {
		return
	}
	read := func() (index uint64, out []sessionEntry, filtered, notFound bool) {
		out = []sessionEntry{}
		for _, se := range s.sess.sessions {
			switch {
			case op == "info" && se.entry.ID != arg, op == "node" && !strings.EqualFold(se.entry.Node, arg):
				continue
			}
			if ok, _ := sr.access.level(se.entry.Node); !ok {
				filtered = true
				continue
			}
			out = append(out, se.entry)
		}
		slices.SortFunc(out, func(a, b sessionEntry) int { return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID)) })
		return s.sess.table, out, filtered, op == "info" && s.sess.sessions[arg] == nil
	}

	timeout, stop := waitTimer(minIndex, wait)
	defer stop()
	var index uint64
	var out []sessionEntry
	var filtered, notFound, seenMissing bool
wake:
	for {
		s.mu.Lock()
		index, out, filtered, notFound = read()
		changed := s.kv.changed
		s.mu.Unlock()
		if minIndex == 0 {
			break
		}
		// blockingquery.Query: a session seen missing twice pins the index.
		if notFound {
			if seenMissing {
				minIndex = index
			}
			seenMissing = true
		}
		if index > minIndex {
			break
		}
		if woke, gone := s.awaitChange(sr.r, changed, timeout); gone {
			return
		} else if !woke {
			break wake
		}
	}
	h := sr.w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", "blocking-query")
	if filtered && sr.token != "" { // Consul masks it from the anonymous token
		h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	writeJSON(sr.w, sr.q, out)
}
