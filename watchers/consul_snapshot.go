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
// would cost in proportion to the cluster, and holding it whole would
// double the memory the checks take. Instead the answer is split, as it is
// read, into the bytes of its checks, each known by a hash of its bytes,
// and only the checks whose bytes the last snapshot delivered did not hold
// are decoded; the others take the events they gave then, and are marked
// Unchanged. Most checks come where they came in the last answer: the
// bytes where the next one is expected are hashed and compared with its
// hash, so that the JSON structure is scanned only where the answers
// differ, and an answer costs the hashing of its bytes, plus the scan and
// decoding of what differs.
//
// Equal hashes are taken for equal bytes: 64-bit hashes seeded at random
// per run (hash/maphash), which what a check's output holds cannot aim at.

// consulMemory is a run's view of the last snapshot delivered, and of the
// last answer parsed.
type consulMemory struct {
	seed   maphash.Seed
	byHash map[uint64]*consulEntry // the checks of the last snapshot delivered, by the hash of their bytes
	prev   []*consulEntry          // the same, each once
	total  int                     // checks in the last snapshot delivered, duplicates included
	gen    uint64                  // the last answer parsed

	last     []*consulEntry // the entries of the last answer parsed without error, delivered or not, in its order
	next     []*consulEntry // storage for the next one
	distinct []*consulEntry // the last answer's entries, each once (prev's next value)
	events   []Event        // the last answer's events, whose storage the next takes (a sink keeps no batch)
}

func newConsulMemory() *consulMemory {
	return &consulMemory{seed: maphash.MakeSeed(), byHash: map[uint64]*consulEntry{}}
}

// consulEntry is a check's bytes, translated. Its counts are int32s: they
// keep it in 256 bytes rather than 288, of which a run holds one per check.
type consulEntry struct {
	hash      uint64
	size      int // of its bytes
	namespace string
	check     *Check // as last delivered, Maintenance included; if new, as decoded
	maint     string // the maintenance this check puts its node or service in: MaintenanceNode, MaintenanceService or ""
	count     int32  // occurrences in the last snapshot delivered (0: new)
	at        int32  // where it was in the last answer it came in: where the next likely has it
	decoded   Check  // check's first value, allocated with the entry (one allocation, and close in memory)

	// Of the last answer parsed (valid while gen is the memory's):
	gen        uint64
	n, matched int32  // occurrences in it, of which unchanged (at most count)
	next       *Check // as it is in it: check, or a copy with another Maintenance
}

// consulSnapshot is one answer, parsed against the memory.
type consulSnapshot struct {
	events []Event
	// same: the answer differs from the last snapshot delivered in nothing
	// the pipeline acts on (see consulKey), so it need not be delivered.
	same bool
	gen  uint64
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
func consulDecode(obj []byte, hash uint64, strs *consulStrings) (*consulEntry, error) {
	var hc consulCheckJSON
	if err := json.Unmarshal(obj, &hc); err != nil {
		return nil, err
	}
	e := &consulEntry{hash: hash, size: len(obj), namespace: strs.intern(hc.Namespace), decoded: Check{
		Node:        strs.intern(hc.Node),
		CheckID:     hc.CheckID,
		Name:        strs.intern(hc.Name),
		Status:      strs.intern(hc.Status),
		Output:      strs.intern(hc.Output),
		ServiceID:   hc.ServiceID,
		ServiceName: strs.intern(hc.ServiceName),
		ServiceTags: hc.ServiceTags,
		Notes:       strs.intern(hc.Notes),
	}}
	for i, tag := range e.decoded.ServiceTags {
		e.decoded.ServiceTags[i] = strs.intern(tag)
	}
	e.check = &e.decoded
	switch {
	case hc.CheckID == consulNodeMaint:
		e.maint = MaintenanceNode
	case strings.HasPrefix(hc.CheckID, consulServiceMaint):
		e.maint = MaintenanceService
	}
	return e, nil
}

// consulStrings interns the strings of the checks an answer decodes:
// most are those of many checks (a node's name, a status, a service's name
// and tags, outputs such as "Agent alive and reachable"), and a first
// answer decodes every check. IDs are left out: each is one check's.
type consulStrings map[string]string

func (t *consulStrings) intern(s string) string {
	if s == "" {
		return s
	}
	if v, ok := (*t)[s]; ok {
		return v
	}
	if *t == nil {
		*t = consulStrings{}
	}
	(*t)[s] = s
	return s
}

// parse reads an answer's body and translates its checks into one event
// each, marked Unchanged when its bytes and its maintenance are those of a
// check of the last snapshot delivered; only checks whose bytes that
// snapshot did not hold are decoded. It changes nothing the memory holds
// of that snapshot: commit does, once the snapshot is delivered.
func (m *consulMemory) parse(body io.Reader, index uint64) (consulSnapshot, error) {
	m.gen++
	gen := m.gen
	clear(m.distinct)
	distinct := m.distinct[:0]
	defer func() { m.distinct = distinct }()

	type instance struct{ node, namespace, serviceID string }
	var (
		split    = consulSplitter{r: body}
		entries  = m.next[:0]
		last     = m.last
		j        int                     // where in last the next check likely is: after the last one found there
		fresh    map[uint64]*consulEntry // entries new in this answer
		strs     consulStrings
		bad      error // the first check that does not decode, told if the rest of the body is well formed
		nodes    map[string]bool
		services map[instance]bool
	)
	for {
		more, err := split.next()
		if err != nil {
			return consulSnapshot{}, err
		}
		if !more {
			break
		}
		i := split.n - 1 // the check's index
		var e *consulEntry
		if j < len(last) {
			if b := split.peek(last[j].size); b != nil && maphash.Bytes(m.seed, b) == last[j].hash {
				split.skip(len(b))
				e = last[j]
				j++
			}
		}
		if e == nil {
			start := split.pos()
			obj, err := split.object()
			if err != nil {
				return consulSnapshot{}, fmt.Errorf("check %d (from byte %d): %w", i, start, err)
			}
			if bad != nil {
				continue
			}
			h := maphash.Bytes(m.seed, obj)
			if e = m.byHash[h]; e == nil {
				e = fresh[h]
			}
			switch {
			case e == nil:
				if e, bad = consulDecode(obj, h, &strs); bad != nil {
					bad = fmt.Errorf("check %d (byte %d): %w", i, start, bad)
					continue
				}
			case int(e.at) < len(last) && last[e.at] == e:
				j = int(e.at) + 1 // the answer goes on as the last went on from there
			}
		}
		if e.count == 0 {
			// New in this answer, or in the last, which was not
			// delivered: one entry per hash.
			if f := fresh[e.hash]; f != nil {
				e = f
			} else {
				if fresh == nil {
					fresh = map[uint64]*consulEntry{}
				}
				fresh[e.hash] = e
			}
		}
		e.at = int32(i)
		entries = append(entries, e)
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
	if bad != nil {
		return consulSnapshot{}, bad
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

	clear(m.events[min(len(entries), len(m.events)):]) // past this answer's: they would keep checks gone alive
	events := slices.Grow(m.events[:0], len(entries))[:len(entries)]
	m.events = events
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

	// This answer is the one the next is read against.
	clear(m.last)
	m.last, m.next = entries, m.last[:0]
	return s, nil
}

// commit makes s, the last answer parsed, the last snapshot delivered.
func (m *consulMemory) commit(s consulSnapshot) {
	if s.gen != m.gen {
		// Not the last answer parsed: its entries are gone. Forget all
		// rather than remember wrong.
		*m = consulMemory{seed: m.seed, byHash: map[uint64]*consulEntry{}, gen: m.gen}
		return
	}
	if len(m.byHash) == 0 {
		m.byHash = make(map[uint64]*consulEntry, len(m.distinct)) // at its size at once: a first snapshot holds every check
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
