package watchers

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// A Consul health answer repeats every check of the datacenter (10,000
// checks: 4.6 MB) whenever one of them changes. Decoding it all each time
// would cost in proportion to the cluster. Instead the answer is split
// into the bytes of its checks, each known by a hash of its bytes, and
// only the checks whose bytes the last snapshot delivered did not hold are
// decoded; the others take the events they gave then, and are marked
// Unchanged. The split itself takes the spans of the last answer where the
// bytes are the same, as hashes of 4 KiB chunks tell (the last body is not
// kept: it would double the memory), so that an answer costs the hashing
// of its bytes, plus the scan and decoding of what differs.
//
// Equal hashes are taken for equal bytes: 64-bit hashes seeded at random
// per run (hash/maphash), which what a check's output holds cannot aim at.

const (
	// consulKeepBuffer: a body larger than this is not kept for the next
	// answer (one giant answer must not pin its memory for ever).
	consulKeepBuffer = 32 << 20
	// consulMaxHint bounds the Content-Length trusted to size the buffer
	// up front; a larger body grows it as it arrives.
	consulMaxHint = 256 << 20
	// consulChunk is the size of the chunks whose hashes tell what bytes
	// an answer shares with the last.
	consulChunk = 4 << 10
	// consulBulk: when more checks than this are new (a first answer),
	// they are decoded in one call rather than one call each.
	consulBulk = 64
)

// consulMemory is a run's view of the last snapshot delivered, and the
// last answer parsed and the buffers reused from one answer to the next.
type consulMemory struct {
	seed   maphash.Seed
	byHash map[uint64]*consulEntry // the checks of the last snapshot delivered, by the hash of their bytes
	prev   []*consulEntry          // the same, each once
	total  int                     // checks in the last snapshot delivered, duplicates included
	gen    uint64                  // the last answer parsed

	buf      []byte         // the body, reused from one answer to the next
	last     consulParsed   // the last answer parsed without error, delivered or not
	next     consulParsed   // buffers for the next one
	distinct []*consulEntry // the last answer's entries, each once (prev's next value)
}

// consulParsed is what the next answer is split against: an answer's
// length, the hashes of its chunks, the spans of its checks and their
// entries.
type consulParsed struct {
	length     int
	head, tail []uint64 // hashes of its whole chunks, counted from its start and from its end
	spans      []consulSpan
	entries    []*consulEntry
}

func newConsulMemory() *consulMemory {
	return &consulMemory{seed: maphash.MakeSeed(), byHash: map[uint64]*consulEntry{}}
}

// consulEntry is a check's bytes, translated.
type consulEntry struct {
	hash      uint64
	namespace string
	check     *Check // as last delivered, Maintenance included; if new, as decoded
	maint     string // the maintenance this check puts its node or service in: MaintenanceNode, MaintenanceService or ""
	count     int    // occurrences in the last snapshot delivered (0: new)
	decoded   Check  // check's first value, allocated with the entry (one allocation, and close in memory)

	// Of the last answer parsed (valid while gen is the memory's):
	gen     uint64
	n       int    // occurrences in it
	matched int    // of which unchanged (at most count)
	next    *Check // as it is in it: check, or a copy with another Maintenance
}

// consulSnapshot is one answer, parsed against the memory.
type consulSnapshot struct {
	events []Event
	// same: the answer differs from the last snapshot delivered in nothing
	// the pipeline acts on (see consulKey), so it need not be delivered.
	same bool
	gen  uint64
}

// read reads a body into the memory's buffer; hint is its announced
// length (-1: unknown). The body is valid until the next read.
func (m *consulMemory) read(r io.Reader, hint int64) ([]byte, error) {
	buf := m.buf[:0]
	if hint < 0 && m.last.length > 0 {
		hint = int64(m.last.length + m.last.length/8) // the next answer is likely as long
	}
	if hint > 0 && hint <= consulMaxHint {
		buf = slices.Grow(buf, int(hint)+1) // +1: room for the read that sees EOF
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(4096, len(buf)))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			m.keep(buf)
			if err == io.EOF {
				err = nil
			}
			return buf, err
		}
	}
}

// keep keeps buf for the next answer, unless it is too large to hold on to.
func (m *consulMemory) keep(buf []byte) {
	m.buf = nil
	if cap(buf) <= consulKeepBuffer {
		m.buf = buf[:0]
	}
}

// consulCheckJSON is what the pipeline reads of a check (api.HealthCheck's
// names and types).
type consulCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Namespace   string
}

// consulDecode translates a check's bytes, Maintenance left for the
// snapshot to tell.
func consulDecode(obj []byte, hash uint64) (*consulEntry, error) {
	var hc consulCheckJSON
	if err := json.Unmarshal(obj, &hc); err != nil {
		return nil, err
	}
	return consulNewEntry(&hc, hash), nil
}

func consulNewEntry(hc *consulCheckJSON, hash uint64) *consulEntry {
	e := &consulEntry{hash: hash, namespace: hc.Namespace, decoded: Check{
		Node:        hc.Node,
		CheckID:     hc.CheckID,
		Name:        hc.Name,
		Status:      hc.Status,
		Output:      hc.Output,
		ServiceID:   hc.ServiceID,
		ServiceName: hc.ServiceName,
		ServiceTags: hc.ServiceTags,
		Notes:       hc.Notes,
	}}
	e.check = &e.decoded
	switch {
	case hc.CheckID == consulNodeMaint:
		e.maint = MaintenanceNode
	case strings.HasPrefix(hc.CheckID, consulServiceMaint):
		e.maint = MaintenanceService
	}
	return e
}

// parse splits body into checks and translates them into one event each,
// marked Unchanged when its bytes and its maintenance are those of a check
// of the last snapshot delivered; only checks whose bytes that snapshot
// did not hold are decoded. It changes nothing the memory holds of that
// snapshot: commit does, once the snapshot is delivered.
func (m *consulMemory) parse(body []byte, index uint64) (consulSnapshot, error) {
	var prior *consulPrior
	if m.last.length > 0 {
		prefix, suffix := m.chunk(body)
		prior = &consulPrior{length: m.last.length, prefix: prefix, suffix: suffix, spans: m.last.spans}
	} else {
		m.chunk(body)
	}
	spans, reuse, err := consulSplit(body, m.next.spans, prior)
	m.next.spans = spans
	if err != nil {
		return consulSnapshot{}, err
	}
	m.gen++
	gen := m.gen
	clear(m.distinct)
	distinct := m.distinct[:0]
	defer func() { m.distinct = distinct }()

	// Each check's entry: the last answer's where the split took its span,
	// else found by hash (and decoded if new) below.
	entries := slices.Grow(m.next.entries[:0], len(spans))
	entries = append(entries, m.last.entries[:reuse.prefix]...)
	entries = entries[:reuse.at]
	clear(entries[reuse.prefix:]) // found below
	entries = append(entries, m.last.entries[reuse.from:]...)
	m.next.entries = entries

	// Many checks to find (a first answer): decode the body in one call,
	// which spends far less than a call per check. If it fails, the
	// checks are decoded one by one, to tell which is wrong.
	var bulk []consulCheckJSON
	if n := reuse.at - reuse.prefix; n > consulBulk && n > len(spans)/2 {
		bulk = make([]consulCheckJSON, 0, len(spans))
		if json.Unmarshal(body, &bulk) != nil || len(bulk) != len(spans) {
			bulk = nil
		}
	}

	type instance struct{ node, namespace, serviceID string }
	var (
		fresh    map[uint64]*consulEntry // entries new in this answer
		nodes    map[string]bool
		services map[instance]bool
	)
	for i, e := range entries {
		switch {
		case e == nil:
			obj := body[spans[i].start:spans[i].end]
			h := maphash.Bytes(m.seed, obj)
			if e = m.byHash[h]; e == nil {
				e = fresh[h]
			}
			if e == nil {
				if bulk != nil {
					e = consulNewEntry(&bulk[i], h)
				} else if e, err = consulDecode(obj, h); err != nil {
					return consulSnapshot{}, fmt.Errorf("check %d (byte %d): %w", i, spans[i].start, err)
				}
				if fresh == nil {
					fresh = make(map[uint64]*consulEntry, len(bulk))
				}
				fresh[h] = e
			}
			entries[i] = e
		case e.count == 0:
			// New in the last answer, which was not delivered: new in
			// this one too, and one entry per hash.
			if f := fresh[e.hash]; f != nil {
				e, entries[i] = f, f
			} else {
				if fresh == nil {
					fresh = map[uint64]*consulEntry{}
				}
				fresh[e.hash] = e
			}
		}
		if e.gen != gen {
			e.gen, e.n, e.matched, e.next = gen, 0, 0, nil
			distinct = append(distinct, e)
		}
		e.n++
		switch e.maint {
		case MaintenanceNode:
			if nodes == nil {
				nodes = map[string]bool{}
			}
			nodes[e.check.Node] = true
		case MaintenanceService:
			if services == nil {
				services = map[instance]bool{}
			}
			services[instance{e.check.Node, e.namespace, e.check.ServiceID}] = true
		}
	}

	// What maintenance covers each check (the same for copies of the same
	// bytes).
	for _, e := range distinct {
		c := e.check
		maint := ""
		switch {
		case nodes != nil && nodes[c.Node]:
			maint = MaintenanceNode
		case services != nil && c.ServiceID != "" && services[instance{c.Node, e.namespace, c.ServiceID}]:
			maint = MaintenanceService
		case c.Status == api.HealthMaint && c.ServiceID != "":
			maint = MaintenanceService
		case c.Status == api.HealthMaint:
			maint = MaintenanceNode
		}
		switch {
		case c.Maintenance == maint:
			e.next = c
		case e.count == 0:
			c.Maintenance = maint // decoded since the last delivery: no one has it
			e.next = c
		default:
			cc := *c
			cc.Maintenance = maint
			e.next = &cc
		}
	}

	events := make([]Event, len(entries))
	// What the checks not unchanged say, if there are as many checks as in
	// the last snapshot (else it is not the same anyway).
	var changed []consulKey
	for i, e := range entries {
		unchanged := e.next == e.check && e.matched < e.count
		if unchanged {
			e.matched++
		} else if len(entries) == m.total {
			changed = append(changed, consulKeyOf(e.namespace, e.next))
		}
		events[i] = Event{Source: "consul", Topic: "Check", Type: e.next.Status, Index: index, Namespace: e.namespace, Unchanged: unchanged, Check: e.next}
	}

	s := consulSnapshot{events: events, gen: gen, same: len(events) == m.total && len(changed) == 0}
	if !s.same && len(events) == m.total {
		// Some checks changed, maybe in nothing the pipeline acts on
		// (Consul's indexes, a name, tags): compare what they say with
		// what the checks of the last snapshot they replace said.
		lost := make([]consulKey, 0, len(changed))
		for _, e := range m.prev {
			left := e.count
			if e.gen == gen {
				left -= e.matched
			}
			for range left {
				lost = append(lost, consulKeyOf(e.namespace, e.check))
			}
		}
		slices.SortFunc(changed, consulKey.compare)
		slices.SortFunc(lost, consulKey.compare)
		s.same = slices.Equal(changed, lost)
	}

	// This answer is the one the next is split against.
	old := m.last
	m.last = consulParsed{length: len(body), head: m.next.head, tail: m.next.tail, spans: spans, entries: entries}
	clear(old.entries)
	m.next = consulParsed{head: old.head[:0], tail: old.tail[:0], spans: old.spans[:0], entries: old.entries[:0]}
	return s, nil
}

// chunk hashes body's chunks into m.next, and returns how many bytes
// it shares with the last answer parsed at its start and at its end (as
// the chunks tell: a lower bound).
func (m *consulMemory) chunk(body []byte) (prefix, suffix int) {
	n := len(body) / consulChunk
	head, tail := m.next.head[:0], m.next.tail[:0]
	same := true
	for k := range n {
		h := maphash.Bytes(m.seed, body[k*consulChunk:(k+1)*consulChunk])
		if same = same && k < len(m.last.head) && h == m.last.head[k]; same {
			prefix += consulChunk
		}
		head = append(head, h)
	}
	same = true
	for k := range n {
		h := maphash.Bytes(m.seed, body[len(body)-(k+1)*consulChunk:len(body)-k*consulChunk])
		if same = same && k < len(m.last.tail) && h == m.last.tail[k]; same {
			suffix += consulChunk
		}
		tail = append(tail, h)
	}
	m.next.head, m.next.tail = head, tail
	return prefix, suffix
}

// commit makes s, the last answer parsed, the last snapshot delivered.
func (m *consulMemory) commit(s consulSnapshot) {
	if s.gen != m.gen {
		// Not the last answer parsed: its entries are gone. Forget all
		// rather than remember wrong.
		*m = consulMemory{seed: m.seed, byHash: map[uint64]*consulEntry{}, gen: m.gen, buf: m.buf}
		return
	}
	for _, e := range m.prev {
		if e.gen != s.gen {
			delete(m.byHash, e.hash)
		}
	}
	for _, e := range m.distinct {
		if e.count == 0 {
			m.byHash[e.hash] = e
		}
		e.check, e.count = e.next, e.n
	}
	clear(m.prev)
	m.prev, m.distinct = m.distinct, m.prev[:0]
	m.total = len(s.events)
}

// consulKey is what makes two snapshots different. Names, tags and Consul's
// modify indexes are left out: they change nothing the pipeline acts on.
type consulKey struct {
	Namespace, Node, CheckID, Status, Output, ServiceID, ServiceName, Notes, Maintenance string
}

func consulKeyOf(namespace string, c *Check) consulKey {
	return consulKey{namespace, c.Node, c.CheckID, c.Status, c.Output, c.ServiceID, c.ServiceName, c.Notes, c.Maintenance}
}

func (a consulKey) compare(b consulKey) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Node, b.Node), strings.Compare(a.CheckID, b.CheckID),
		strings.Compare(a.Status, b.Status), strings.Compare(a.Output, b.Output), strings.Compare(a.ServiceID, b.ServiceID),
		strings.Compare(a.ServiceName, b.ServiceName), strings.Compare(a.Notes, b.Notes), strings.Compare(a.Maintenance, b.Maintenance))
}
