package fakeconsul

// /v1/kv/, Consul's KV store, as Consul v1.22.0 serves it (checked against
// agent/kvs_endpoint.go, agent/http.go, agent/consul/kvs_endpoint.go,
// agent/blockingquery/blockingquery.go, agent/consul/state/kvs.go and
// graveyard.go, acl/errors.go and acl/policy_authorizer.go of the v1.22.0
// tag), with real Stolon states to load (testdata/stolon, see
// testdata/README.md).
//
// What it models:
//   - GET of one key (JSON, or the value alone with ?raw), of a prefix
//     (?recurse) and of key names (?keys, ?separator=); 404 with an empty
//     body when nothing matches (?keys of the root answers []).
//   - X-Consul-Index as Consul computes it: a key's ModifyIndex; for
//     ?recurse and ?keys the highest ModifyIndex under the prefix or of a
//     tombstone (a deleted key) under it; the KV table's index (the last
//     write or delete of any key) when that is 0 or the key is missing; 1
//     rather than 0.
//   - Blocking queries (?index, ?wait) as for health, with Consul's rule
//     for a key that stays missing: a query that has seen it missing does
//     not return on writes to other keys.
//   - PUT with ?flags and ?cas (0: create only), DELETE with ?recurse and
//     ?cas (a CAS delete of a missing key answers true, as in Consul), the
//     512 KiB value limit (413), Consul's answers to bad parameters.
//   - One raft index, shared with sessions: a write takes the next index
//     above the KV's and the health state's (a failed CAS or an unchanged
//     write uses one up, as in Consul); health writes do not look at the
//     KV's index, though, unless a check write invalidates a session.
//   - ACLs: key_prefix read/write rules per token (SetKVPrefixes) resolved
//     as Consul does (longest prefix wins, default deny). A key the token
//     may not read answers 403 "Permission denied: …" (KVS.Get checks
//     key:read; it does not filter), ?recurse and ?keys leave out what it
//     may not read (404 when nothing is left), a write outside its rules
//     answers 403 "Permission denied: …", an unknown token "ACL not found".
//   - Injected failures of its own (FailNextKV), apart from health's.
//   - Session locks: PUT ?acquire=<session> (200 true/false, LockIndex
//     counting acquisitions, the key's Session set) and ?release=<session>
//     (Session cleared), both writing the request's value and flags, as
//     Consul's kvsLockTxn and kvsUnlockTxn do; an acquire refused by a
//     lock delay (see session.go) answers false without a raft index; an
//     acquire with an unknown or empty session answers 500 "raft apply
//     failed: invalid session \"<id>\"" or "… missing session", a release
//     that does not hold the key false.
//
// Server.Index stays the health state's index; KVIndex is the KV's.
//
// Deviations:
//   - The Session of entries loaded by LoadKV is kept as data: no live
//     session holds them (see session.go for live ones).
//   - Tombstones are never reaped (Consul reaps them after its 15 min
//     TombstoneTTL), and Restart leaves the KV store as it was.
//   - A query abandoned by a restore (see LoadKV) answers the new state;
//     Consul answers what it last read.
//   - ?dc, ?ns and ?partition other than the defaults are not modelled
//     (another ?dc answers 500 "No path to datacenter").

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// KVMaxValueSize is Consul's default limit on a value, limits.kv_max_value_size
// (raft.SuggestedMaxDataSize, 512 KiB).
const KVMaxValueSize = 512 * 1024

//go:embed testdata/stolon/*.kv.json
var stolonStates embed.FS

// StolonState returns a captured body of GET
// /v1/kv/stolon/cluster/main/?recurse from a real Stolon cluster, for
// LoadKV: name is the file's name without .kv.json, e.g. "normal",
// "failover" or "failover-07" (see StolonStates). It panics on an unknown
// name.
func StolonState(name string) []byte {
	b, err := stolonStates.ReadFile("testdata/stolon/" + name + ".kv.json")
	if err != nil {
		panic(fmt.Sprintf("fakeconsul: no Stolon state %q (have %s)", name, strings.Join(StolonStates(), ", ")))
	}
	return b
}

// StolonStates lists the names StolonState knows, sorted.
func StolonStates() []string {
	des, err := stolonStates.ReadDir("testdata/stolon")
	if err != nil {
		panic(err) // the directory is embedded
	}
	var names []string
	for _, de := range des {
		names = append(names, strings.TrimSuffix(de.Name(), ".kv.json"))
	}
	slices.Sort(names) // "failover" before "failover-00"
	return names
}

// kvEntry is a key as Consul's structs.DirEntry marshals it, in its field
// order.
type kvEntry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte // nil: JSON null, as Consul answers an empty value
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

// kvState is the KV store; guarded by Server.mu.
type kvState struct {
	entries    map[string]kvEntry
	tombstones map[string]uint64 // deleted key (or deleted prefix) → index
	// table is Consul's kvsMaxIndex: the index of the last change to any
	// key, deletions included.
	table uint64
	// raft is the highest raft index the KV has seen; writes take the next
	// one above it and above the health state's.
	raft uint64
	// changed is closed and replaced on every change, waking blocked queries.
	changed  chan struct{}
	restores uint64
	failures []int
	// rules holds each token's key_prefix rules: prefix → write (else read).
	rules map[string]map[string]bool
}

// kvInit makes the KV store empty.
func (s *Server) kvInit() {
	s.kv.entries = map[string]kvEntry{}
	s.kv.tombstones = map[string]uint64{}
	s.kv.changed = make(chan struct{})
}

// kvNotify wakes blocked KV queries; s.mu is held.
func (s *Server) kvNotify() {
	close(s.kv.changed)
	s.kv.changed = make(chan struct{})
}

// kvNext takes the next raft index for a KV write; s.mu is held.
func (s *Server) kvNext() uint64 {
	s.kv.raft = max(s.kv.raft, s.index) + 1
	return s.kv.raft
}

// LoadKV replaces the whole KV store with the entries of a GET ?recurse
// body, such as StolonState("normal"), keeping every field as given
// (Flags, Session, LockIndex, CreateIndex, ModifyIndex), and forgets
// tombstones. The KV index becomes at least the highest ModifyIndex, so
// that loading the states of a series one after another acts as the
// writes between them did: blocked queries return when what they watch
// changed. Loading entries whose highest ModifyIndex is below the KV
// index, or equal to it with other content, acts as a snapshot restore:
// blocked queries return at once. (Two states of a series may hold the
// same entries: loading the second changes nothing.)
func (s *Server) LoadKV(body []byte) error {
	var es []kvEntry
	if err := json.Unmarshal(body, &es); err != nil {
		return fmt.Errorf("fakeconsul: KV entries: %w", err)
	}
	entries := make(map[string]kvEntry, len(es))
	var top uint64
	for _, e := range es {
		if e.Key == "" {
			return errors.New("fakeconsul: KV entry without a Key")
		}
		if len(e.Value) == 0 {
			e.Value = nil
		}
		entries[e.Key] = e
		top = max(top, e.ModifyIndex)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if top < s.kv.table || top == s.kv.table && !maps.EqualFunc(entries, s.kv.entries, kvEqual) {
		s.kv.restores++
	}
	s.kv.entries, s.kv.tombstones = entries, map[string]uint64{}
	s.kv.table = max(s.kv.table, top)
	s.kv.raft = max(s.kv.raft, top)
	s.kvNotify()
	return nil
}

// KV returns a key's value, flags and ModifyIndex; ok is false when the
// key does not exist.
func (s *Server) KV(key string) (value []byte, flags uint64, modifyIndex uint64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv.entries[key]
	return bytes.Clone(e.Value), e.Flags, e.ModifyIndex, ok
}

// KVIndex is the KV table's index: what X-Consul-Index says for a missing
// key (1 when it is 0).
func (s *Server) KVIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv.table
}

// SetKV writes a key as the process that owns it would (a Stolon keeper
// or sentinel): at the next raft index, waking blocked queries, keeping
// the key's CreateIndex, Session and LockIndex. As in Consul, writing what
// the key already holds changes nothing but uses up a raft index.
func (s *Server) SetKV(key string, value []byte, flags uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.kv.entries[key]
	e.Key, e.Value, e.Flags = key, value, flags
	s.kvSet(s.kvNext(), e)
}

// DeleteKV deletes a key, leaving a tombstone, as DELETE /v1/kv/<key>
// does; a missing key is left alone.
func (s *Server) DeleteKV(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.kv.entries[key]; ok {
		s.kvDelete(s.kvNext(), key)
	}
}

// SetKVPrefixes gives token key_prefix rules, as a Consul policy
// `key_prefix "<prefix>" { policy = "write" }` (or "read") would: for each
// key the longest matching prefix decides, and a key no rule covers is
// denied. Rules add up over calls; a later rule for the same prefix
// replaces the earlier one. ACLs must be on (SetToken). The token ""
// gives the rules to the anonymous token. Any other token becomes known
// to the other endpoints too, as a SetScopedToken token without service
// prefixes (it reads the node checks, no service's).
func (s *Server) SetKVPrefixes(token string, write bool, prefixes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addPrefixRules(&s.kv.rules, token, write, prefixes)
}

// addPrefixRules adds a token's prefix rules to one resource's (KV keys,
// session nodes) and makes the token known; s.mu is held.
func (s *Server) addPrefixRules(rules *map[string]map[string]bool, token string, write bool, prefixes []string) {
	if *rules == nil {
		*rules = map[string]map[string]bool{}
	}
	if (*rules)[token] == nil {
		(*rules)[token] = map[string]bool{}
	}
	for _, p := range prefixes {
		(*rules)[token][p] = write
	}
	if token == "" {
		return
	}
	if s.scoped == nil {
		s.scoped = map[string][]string{}
	}
	if _, ok := s.scoped[token]; !ok {
		s.scoped[token] = nil
	}
}

// FailNextKV makes the next n KV requests (any method) answer status with
// Consul's body for it, as FailNext does for health queries (500 "No
// cluster leader", 403 "ACL not found", 429 empty, else the status text),
// after the parameter checks and before the ACL check, where Consul
// forwards to the leader; a failed write changes nothing. Health queries
// do not consume them, nor KV requests health failures.
func (s *Server) FailNextKV(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.kv.failures = append(s.kv.failures, status)
	}
}

// kvEqual compares every field of two entries.
func kvEqual(a, b kvEntry) bool {
	return a.LockIndex == b.LockIndex && a.Key == b.Key && a.Flags == b.Flags && bytes.Equal(a.Value, b.Value) &&
		a.Session == b.Session && a.CreateIndex == b.CreateIndex && a.ModifyIndex == b.ModifyIndex
}

// kvSet writes e at index idx as Consul's kvsSetTxn does: CreateIndex
// kept, and nothing changes when the entry is equal; s.mu is held.
func (s *Server) kvSet(idx uint64, e kvEntry) {
	if len(e.Value) == 0 {
		e.Value = nil // Consul answers an empty value as null
	} else {
		e.Value = bytes.Clone(e.Value)
	}
	old, exists := s.kv.entries[e.Key]
	e.CreateIndex = idx
	if exists {
		e.CreateIndex = old.CreateIndex
		if old.LockIndex == e.LockIndex && old.Flags == e.Flags && bytes.Equal(old.Value, e.Value) && old.Session == e.Session {
			return
		}
	}
	e.ModifyIndex = idx
	s.kv.entries[e.Key] = e
	s.kv.table = idx
	s.kvNotify()
}

// kvDelete deletes an existing key and leaves a tombstone; s.mu is held.
func (s *Server) kvDelete(idx uint64, key string) {
	delete(s.kv.entries, key)
	s.kv.tombstones[key] = idx
	s.kv.table = idx
	s.kvNotify()
}

// kvAccess is what a request's token may do with keys.
type kvAccess struct {
	all      bool            // ACLs off, or the management token
	rules    map[string]bool // key_prefix rules: prefix → write
	accessor string          // for "Permission denied" texts; "" for the anonymous token
}

// level returns whether the rules allow reading and writing key: the
// longest matching prefix decides, and no match denies (default policy
// deny).
func (a kvAccess) level(key string) (read, write bool) {
	if a.all {
		return true, true
	}
	best := -1
	for p, w := range a.rules {
		if len(p) > best && strings.HasPrefix(key, p) {
			best, write = len(p), w
		}
	}
	return best >= 0, best >= 0 && write
}

// writePrefix is Consul's KeyWritePrefix: write on prefix and on every
// rule under it.
func (a kvAccess) writePrefix(prefix string) bool {
	if a.all {
		return true
	}
	if _, w := a.level(prefix); !w {
		return false
	}
	for p, w := range a.rules {
		if strings.HasPrefix(p, prefix) && !w {
			return false
		}
	}
	return true
}

// denied is Consul's PermissionDeniedError text for a key.
func (a kvAccess) denied(level, key string) string { return a.deniedOn("key", level, key) }

// deniedOn is Consul's PermissionDeniedError text for a resource ("key",
// "session") and a name.
func (a kvAccess) deniedOn(resource, level, name string) string {
	if a.accessor == "" {
		return fmt.Sprintf("Permission denied: anonymous token lacks permission '%s:%s' on %q. The anonymous token is used implicitly when a request does not specify a token.", resource, level, name)
	}
	return fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission '%s:%s' on %q", a.accessor, resource, level, name)
}

// serveKV serves /v1/kv/ once the KV store is on and reports whether it
// did; serve has recorded the request.
func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, token string) bool {
	raw, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	if !ok {
		return false
	}
	s.mu.Lock()
	acl := s.token
	_, scoped := s.scoped[token]
	rules, hasRules := s.kv.rules[token]
	rules = maps.Clone(rules) // SetKVPrefixes may change them meanwhile
	s.mu.Unlock()

	h := w.Header()
	// Consul's HTTP wrapper and its gzip handler set them on every answer.
	setACLPolicy(h, acl)
	h.Set("Vary", "Accept-Encoding")
	switch r.Method {
	case http.MethodGet, http.MethodPut, http.MethodDelete:
	case http.MethodOptions:
		h.Set("Allow", "OPTIONS,GET,PUT,DELETE")
		return true
	default:
		h.Set("Allow", "OPTIONS,GET,PUT,DELETE")
		plain(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed", r.Method))
		return true
	}

	// parse(): consistency, then wait and index, for every method.
	q := r.URL.Query()
	_, stale := q["stale"]
	_, consistent := q["consistent"]
	if stale && consistent {
		plain(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return true
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid wait time")
			return true
		}
		wait = d
	}
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			plain(w, http.StatusBadRequest, "Invalid index")
			return true
		}
		minIndex = n
	}

	// The key: cleaned, keeping a trailing slash, then validated (an
	// invalid one is a plain error, hence 500).
	key := raw
	if key != "" {
		key = path.Clean(raw)
		if strings.HasSuffix(raw, "/") && !strings.HasSuffix(key, "/") {
			key += "/"
		}
		if err := validateKVKey(key); err != nil {
			plain(w, http.StatusInternalServerError, err.Error())
			return true
		}
	}

	// What the token may do, resolved once per request as Consul does.
	access := kvAccess{all: acl == "" || token == acl, rules: rules}
	if token != "" {
		access.accessor = AccessorID(token)
	}
	known := access.all || token == "" || scoped || hasRules
	// rpc plays the part of Consul's RPC: the datacenter, then an injected
	// failure (no leader), then the token. It answers and returns false
	// when the request stops there.
	rpc := func() bool {
		if !s.reachLeader(w, q, &s.kv.failures) {
			return false
		}
		if !known {
			plain(w, http.StatusForbidden, "ACL not found")
			return false
		}
		return true
	}

	switch r.Method {
	case http.MethodGet:
		s.kvGet(w, r, q, key, access, token, minIndex, wait, rpc)
	case http.MethodPut:
		s.kvPut(w, r, q, key, access, rpc)
	case http.MethodDelete:
		s.kvDeleteRequest(w, q, key, access, rpc)
	}
	return true
}

// validateKVKey is Consul's check of a key name.
func validateKVKey(key string) error {
	if strings.HasPrefix(key, " ") || strings.HasSuffix(key, " ") {
		return errors.New("invalid key name, leading/trailing spaces are not allowed")
	}
	if slices.Contains(strings.Split(key, "/"), "..") {
		return errors.New("invalid key name, path traversal is not allowed")
	}
	if decoded, err := url.PathUnescape(key); err == nil && decoded != key {
		if strings.Contains(decoded, "..") {
			return errors.New("invalid key name, path traversal is not allowed")
		}
		if strings.Contains(decoded, " ") {
			return errors.New("invalid key name, leading/trailing spaces are not allowed")
		}
	}
	return nil
}

// kvResult is one evaluation of a read.
type kvResult struct {
	index    uint64
	body     any    // []kvEntry or []string; nil: 404
	raw      []byte // the value, for ?raw
	notFound bool   // a single key that does not exist (Consul's errNotFound)
	filtered bool   // entries the token may not read were left out
	denied   string // a "Permission denied" answer
}

// kvRead evaluates a read as Consul's KVS.Get, KVS.List and KVS.ListKeys
// do; s.mu is held.
func (s *Server) kvRead(kind, key, sep string, access kvAccess) kvResult {
	if kind == "get" {
		if read, _ := access.level(key); !read {
			return kvResult{denied: access.denied("read", key)}
		}
		e, ok := s.kv.entries[key]
		if !ok {
			return kvResult{index: max(s.kv.table, 1), notFound: true}
		}
		return kvResult{index: e.ModifyIndex, body: []kvEntry{e}, raw: e.Value}
	}

	// kvsListTxn: the highest ModifyIndex under the prefix or of a
	// tombstone under it (the table index for the root), else the table's.
	var es []kvEntry
	var index uint64
	for k, e := range s.kv.entries {
		if strings.HasPrefix(k, key) {
			es = append(es, e)
			index = max(index, e.ModifyIndex)
		}
	}
	if key == "" {
		index = s.kv.table
	} else {
		for k, i := range s.kv.tombstones {
			if strings.HasPrefix(k, key) {
				index = max(index, i)
			}
		}
	}
	if index == 0 {
		index = s.kv.table
	}
	res := kvResult{index: max(index, 1)}
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	readable := es[:0]
	for _, e := range es {
		if read, _ := access.level(e.Key); read {
			readable = append(readable, e)
		} else {
			res.filtered = true
		}
	}
	if kind == "list" {
		if len(readable) > 0 {
			res.body = readable
		}
		return res
	}
	keys := []string{}
	seen := map[string]bool{}
	for _, e := range readable {
		k := e.Key
		if sep != "" {
			if i := strings.Index(k[len(key):], sep); i >= 0 {
				k = k[:len(key)+i+len(sep)]
				if seen[k] {
					continue
				}
				seen[k] = true
			}
		}
		keys = append(keys, k)
	}
	if len(keys) > 0 || key == "" { // the root answers [], not 404
		res.body = keys
	}
	return res
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request, q url.Values, key string, access kvAccess, token string,
	minIndex uint64, wait time.Duration, rpc func() bool) {
	kind := "get"
	_, recurse := q["recurse"]
	_, keys := q["keys"]
	var sep string
	switch {
	case keys:
		kind = "keys"
		// Consul still reads its historic misspelling, the right one first.
		if v, ok := q["seperator"]; ok {
			sep = v[0]
		}
		if v, ok := q["separator"]; ok {
			sep = v[0]
		}
	case recurse:
		kind = "list"
	case key == "":
		plain(w, http.StatusBadRequest, "Missing key name")
		return
	}
	if !rpc() {
		return
	}

	s.mu.Lock()
	restores := s.kv.restores
	s.mu.Unlock()
	timeout, stop := waitTimer(minIndex, wait)
	defer stop()
	// blockingquery.Query: a missing key seen missing twice pins the index,
	// so that writes to other keys do not end the query.
	var res kvResult
	notFound := false
wake:
	for {
		s.mu.Lock()
		res = s.kvRead(kind, key, sep, access)
		changed, abandoned := s.kv.changed, s.kv.restores != restores
		s.mu.Unlock()
		if res.denied != "" {
			plain(w, http.StatusForbidden, res.denied)
			return
		}
		if minIndex == 0 || abandoned {
			break
		}
		if res.notFound {
			if notFound {
				minIndex = res.index
			}
			notFound = true
		}
		if res.index > minIndex {
			break
		}
		if woke, gone := s.awaitChange(r, changed, timeout); gone {
			return
		} else if !woke {
			break wake // Consul answers the unchanged state
		}
	}

	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(res.index, 10))
	h.Set("X-Consul-Knownleader", "true")
	h.Set("X-Consul-Lastcontact", "0")
	h.Set("X-Consul-Query-Backend", "blocking-query")
	if res.filtered && token != "" { // Consul masks it from the anonymous token
		h.Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	if res.body == nil {
		w.WriteHeader(http.StatusNotFound) // no body, no Content-Type
		return
	}
	if _, raw := q["raw"]; raw && kind == "get" {
		h.Set("Content-Length", strconv.Itoa(len(res.raw)))
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "sandbox")
		_, _ = w.Write(res.raw)
		return
	}
	writeJSON(w, q, res.body)
}

// writeJSON answers 200 with obj as Consul's marshalJSON does: compact, or
// indented by four spaces with a final newline for ?pretty. (A dev agent
// always indents, without the newline: so are the captures.)
func writeJSON(w http.ResponseWriter, q url.Values, obj any) {
	var b []byte
	var err error
	if _, pretty := q["pretty"]; pretty {
		b, err = json.MarshalIndent(obj, "", "    ")
		b = append(b, '\n')
	} else {
		b, err = json.Marshal(obj)
	}
	if err != nil {
		panic(err) // entries, strings and bools always marshal
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// conflicting is Consul's conflictingFlags: more than one of flags given.
func conflicting(w http.ResponseWriter, q url.Values, flags ...string) bool {
	n := 0
	for _, f := range flags {
		if _, ok := q[f]; ok {
			n++
		}
	}
	if n > 1 {
		plain(w, http.StatusBadRequest, fmt.Sprintf("Conflicting flags: %v\n", q.Encode()))
		return true
	}
	return false
}

// uintParam parses ?name= as Consul does, answering its parse error (a
// plain error, hence 500).
func uintParam(w http.ResponseWriter, q url.Values, name string) (uint64, bool, bool) {
	if _, ok := q[name]; !ok {
		return 0, false, true
	}
	n, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil {
		plain(w, http.StatusInternalServerError, err.Error())
		return 0, true, false
	}
	return n, true, true
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, q url.Values, key string, access kvAccess, rpc func() bool) {
	if key == "" {
		plain(w, http.StatusBadRequest, "Missing key name")
		return
	}
	if conflicting(w, q, "cas", "acquire", "release") {
		return
	}
	flags, _, ok := uintParam(w, q, "flags")
	if !ok {
		return
	}
	cas, isCAS, ok := uintParam(w, q, "cas")
	if !ok {
		return
	}
	_, acquire := q["acquire"]
	_, release := q["release"]

	var value []byte
	switch {
	case r.ContentLength > KVMaxValueSize:
		plain(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body(%d bytes) too large, max size: %d bytes. See %s.",
			r.ContentLength, KVMaxValueSize, "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"))
		return
	case r.ContentLength <= 0:
		// No length (chunked): Consul reads at most one byte more than the
		// limit, so a body of exactly limit+1 bytes still passes.
		b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, KVMaxValueSize+1))
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			plain(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large. Max allowed is %d bytes.", KVMaxValueSize))
			return
		}
		if err != nil {
			plain(w, http.StatusInternalServerError, err.Error())
			return
		}
		value = b
	default:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			plain(w, http.StatusInternalServerError, err.Error())
			return
		}
		value = b
	}

	if !rpc() {
		return
	}
	if _, write := access.level(key); !write {
		plain(w, http.StatusForbidden, access.denied("write", key))
		return
	}
	if acquire || release {
		sessionID := q.Get("release")
		if acquire {
			sessionID = q.Get("acquire")
		}
		s.kvLock(w, q, key, value, flags, acquire, sessionID) // session.go holds the sessions
		return
	}

	s.mu.Lock()
	idx := s.kvNext()
	old, exists := s.kv.entries[key]
	done := true
	switch {
	case isCAS && cas == 0 && exists, isCAS && cas != 0 && (!exists || old.ModifyIndex != cas):
		done = false
	default:
		// A plain set keeps the key's Session; LockIndex comes from the
		// request, which has none: 0.
		s.kvSet(idx, kvEntry{Key: key, Flags: flags, Value: value, Session: old.Session})
	}
	s.mu.Unlock()
	writeJSON(w, q, done)
}

func (s *Server) kvDeleteRequest(w http.ResponseWriter, q url.Values, key string, access kvAccess, rpc func() bool) {
	if conflicting(w, q, "recurse", "cas") {
		return
	}
	_, recurse := q["recurse"]
	if !recurse && key == "" {
		plain(w, http.StatusBadRequest, "Missing key name")
		return
	}
	cas, isCAS, ok := uintParam(w, q, "cas")
	if !ok {
		return
	}
	if !rpc() {
		return
	}
	if recurse {
		if !access.writePrefix(key) {
			plain(w, http.StatusForbidden, access.denied("write", key))
			return
		}
	} else if _, write := access.level(key); !write {
		plain(w, http.StatusForbidden, access.denied("write", key))
		return
	}

	s.mu.Lock()
	idx := s.kvNext()
	old, exists := s.kv.entries[key]
	done := true
	switch {
	case recurse:
		// kvsDeleteTreeTxn: one tombstone for the prefix (none for the root).
		deleted := false
		for k := range s.kv.entries {
			if strings.HasPrefix(k, key) {
				delete(s.kv.entries, k)
				deleted = true
			}
		}
		if deleted {
			if key != "" {
				s.kv.tombstones[key] = idx
			}
			s.kv.table = idx
			s.kvNotify()
		}
	case isCAS && exists && old.ModifyIndex != cas:
		done = false
	case isCAS && !exists:
		// kvsDeleteCASTxn answers true when the key is already gone.
	case exists:
		s.kvDelete(idx, key)
	}
	s.mu.Unlock()
	writeJSON(w, q, done)
}

// kvLock serves PUT ?acquire and ?release once the request passed the ACL
// check: Consul's kvsPreApply lock-delay check, then the state store's
// kvsLockTxn or kvsUnlockTxn. The value and flags are the request's.
func (s *Server) kvLock(w http.ResponseWriter, q url.Values, key string, value []byte, flags uint64, acquire bool, sessionID string) {
	s.mu.Lock()
	if acquire && s.lockDelayed(key) {
		s.mu.Unlock()
		writeJSON(w, q, false) // refused before raft: no index used
		return
	}
	idx := s.kvNext()
	done, err := s.kvLockTxn(idx, key, value, flags, acquire, sessionID)
	s.mu.Unlock()
	if err != nil {
		plain(w, http.StatusInternalServerError, "raft apply failed: "+err.Error())
		return
	}
	writeJSON(w, q, done)
}

// kvLockTxn is kvsLockTxn (acquire) or kvsUnlockTxn at raft index idx;
// s.mu is held.
func (s *Server) kvLockTxn(idx uint64, key string, value []byte, flags uint64, acquire bool, sessionID string) (bool, error) {
	if sessionID == "" {
		return false, errors.New("missing session")
	}
	old, exists := s.kv.entries[key]
	e := kvEntry{Key: key, Flags: flags, Value: value}
	if !acquire {
		if !exists || old.Session != sessionID {
			return false, nil
		}
		e.LockIndex = old.LockIndex
		s.kvSet(idx, e)
		return true, nil
	}
	if s.sess.sessions[sessionID] == nil {
		return false, fmt.Errorf("invalid session %#v", sessionID)
	}
	switch {
	case !exists:
		e.LockIndex = 1
	case old.Session == sessionID: // already held: good to go
		e.LockIndex = old.LockIndex
	case old.Session != "":
		return false, nil // someone else holds it
	default:
		e.LockIndex = old.LockIndex + 1
	}
	e.Session = sessionID
	s.kvSet(idx, e)
	return true, nil
}
