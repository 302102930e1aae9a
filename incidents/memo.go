package incidents

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// memo keeps in memory what nearly every event looks up, the facts and
// the latest incident of each key, so that an event that changes nothing
// costs no query. The store stays the record: a pass reads through the
// memo, writes through to its transaction, and what it read or wrote
// reaches the memo only once its transaction has committed (Engine.write);
// a pass that fails leaves the memo as it was. Every write of incidents
// and facts goes through a pass, so the memo never goes stale.
type memo struct {
	facts  map[factID]memoFact
	latest map[string]*store.Incident // nil: the key has no incident
	// by snapshot source, the keys each check of its last snapshot gave
	snapshots map[string]map[*watchers.Check][]string
	// key prefixes known to have no live incident (a job's allocation
	// incidents, resolved at once when it stops: its every stop event
	// would look again)
	noLive map[string]bool
	// by the first segment of a key ("check/"), every key under it that
	// has an incident: a snapshot's checks that never had one (nearly all
	// of a first snapshot) cost no query each
	keysUnder map[string]map[string]bool
}

type factID struct{ kind, key string }

type memoFact struct {
	value string
	found bool
	at    time.Time // when a pass wrote it; zero when read from the store
}

// memoLimit bounds each map of the memo: beyond, it starts again from the
// store, which costs one query per key, once.
const memoLimit = 100_000

// factRefresh is how often a fact set again to the value it holds is
// rewritten, to move the time its expiry counts from (holdFactTTL,
// allocFactTTL: a day and more). A fact can then expire up to this much
// earlier than its last sighting.
const factRefresh = time.Hour

func newMemo() *memo {
	return &memo{facts: map[factID]memoFact{}, latest: map[string]*store.Incident{}, snapshots: map[string]map[*watchers.Check][]string{}, noLive: map[string]bool{},
		keysUnder: map[string]map[string]bool{}}
}

// take keeps what a committed pass read and wrote.
func (m *memo) take(p *pass) {
	if p.forgetFacts {
		m.facts = map[factID]memoFact{}
	} else {
		if len(m.facts)+len(p.facts) > memoLimit {
			m.facts = map[factID]memoFact{}
		}
		for id, f := range p.facts {
			m.facts[id] = f
		}
	}
	if len(m.latest)+len(p.latest) > memoLimit {
		m.latest = map[string]*store.Incident{}
	}
	for key, in := range p.latest {
		m.latest[key] = in
	}
	if p.snapshotSource != "" {
		m.snapshots[p.snapshotSource] = p.snapshotKeys
	}
	for first, keys := range p.keysUnder {
		if len(keys) <= memoLimit {
			m.keysUnder[first] = keys
		}
	}
	for key := range p.inserted {
		if keys := m.keysUnder[firstSegment(key)]; keys != nil {
			keys[key] = true
		}
	}
	for prefix := range p.livened {
		delete(m.noLive, prefix)
	}
	if len(m.noLive)+len(p.noLive) > memoLimit {
		m.noLive = map[string]bool{}
	}
	for prefix := range p.noLive {
		m.noLive[prefix] = true
	}
}

// keyPrefixes calls fn with each prefix of key that ends with "/" (the
// prefixes "/*" resolutions name).
func keyPrefixes(key string, fn func(prefix string)) {
	for i := range len(key) {
		if key[i] == '/' {
			fn(key[:i+1])
		}
	}
}

// liveIncidentsWithPrefix returns the held and open incidents under a key
// prefix, from the store unless the memo knows there is none.
func (p *pass) liveIncidentsWithPrefix(ctx context.Context, prefix string) ([]store.Incident, error) {
	if p.noLive[prefix] || p.e.memo.noLive[prefix] && !p.livened[prefix] {
		return nil, nil
	}
	live, err := p.synced(ctx).LiveIncidentsWithPrefix(ctx, prefix)
	if err == nil && len(live) == 0 {
		if p.noLive == nil {
			p.noLive = map[string]bool{}
		}
		p.noLive[prefix] = true
	}
	return live, err
}

// cachedFact is what the pass or the memo knows of a fact.
func (p *pass) cachedFact(id factID) (memoFact, bool) {
	if f, ok := p.facts[id]; ok {
		return f, true
	}
	f, ok := p.e.memo.facts[id]
	return f, ok && !p.forgetFacts
}

func (p *pass) noteFact(id factID, f memoFact) {
	if p.facts == nil {
		p.facts = map[factID]memoFact{}
	}
	p.facts[id] = f
}

// fact returns a remembered fact.
func (p *pass) fact(ctx context.Context, kind, key string) (string, bool, error) {
	id := factID{kind, key}
	if f, ok := p.cachedFact(id); ok {
		return f.value, f.found, nil
	}
	v, found, err := p.tx.Fact(ctx, kind, key)
	if err != nil {
		return "", false, err
	}
	p.noteFact(id, memoFact{value: v, found: found})
	return v, found, nil
}

// setFact remembers a fact; the same value again is only rewritten after
// factRefresh.
func (p *pass) setFact(ctx context.Context, kind, key, value string) error {
	id := factID{kind, key}
	if f, ok := p.cachedFact(id); ok && f.found && f.value == value && !f.at.IsZero() && p.now.Sub(f.at) < factRefresh {
		return nil
	}
	if err := p.tx.SetFact(ctx, kind, key, value); err != nil {
		return err
	}
	p.noteFact(id, memoFact{value: value, found: true, at: p.now})
	return nil
}

// addFact remembers a fact unless one is remembered for its key, without
// reading it first: for facts whose value never changes (the job of an
// allocation), so the memo may take the value as the remembered one.
func (p *pass) addFact(ctx context.Context, kind, key, value string) error {
	id := factID{kind, key}
	if f, ok := p.cachedFact(id); ok && f.found {
		return nil
	}
	p.addedFacts = append(p.addedFacts, store.Fact{Kind: kind, Key: key, Value: value}) // written by flush, in one statement
	p.noteFact(id, memoFact{value: value, found: true})
	return nil
}

// deleteFact forgets a fact.
func (p *pass) deleteFact(ctx context.Context, kind, key string) error {
	if err := p.tx.DeleteFact(ctx, kind, key); err != nil {
		return err
	}
	p.noteFact(factID{kind, key}, memoFact{})
	return nil
}

// forgetFactsBefore drops the facts of a kind not set since before; the
// memo forgets all its facts once the pass commits.
func (p *pass) forgetFactsBefore(ctx context.Context, kind string, before time.Time) error {
	p.forgetFacts, p.facts = true, nil
	return p.tx.ForgetFactsBefore(ctx, kind, before)
}

// cachedLatest is what the pass or the memo knows of a key's latest
// incident (nil: none).
func (p *pass) cachedLatest(key string) (*store.Incident, bool) {
	if in, ok := p.latest[key]; ok {
		return in, true
	}
	in, ok := p.e.memo.latest[key]
	return in, ok
}

func (p *pass) noteLatest(key string, in *store.Incident) {
	if p.latest == nil {
		p.latest = map[string]*store.Incident{}
	}
	p.latest[key] = in
}

// firstSegment is a key's first segment with its "/", "" if it has none.
func firstSegment(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i+1]
	}
	return ""
}

// neverHad tells whether a key has no incident at all, by the keys under
// its first segment that have one (read once, then kept by the memo):
// only in snapshot passes, whose every check would otherwise be a query.
func (p *pass) neverHad(ctx context.Context, key string) (bool, error) {
	first := firstSegment(key)
	if p.snapshotKeys == nil || first == "" || p.inserted[key] {
		return false, nil
	}
	keys, ok := p.keysUnder[first]
	if !ok {
		keys, ok = p.e.memo.keysUnder[first]
	}
	if !ok {
		var err error
		if keys, err = p.synced(ctx).IncidentKeysWithPrefix(ctx, first); err != nil {
			return false, err
		}
		if p.keysUnder == nil {
			p.keysUnder = map[string]map[string]bool{}
		}
		p.keysUnder[first] = keys
	}
	return !keys[key], nil
}

// latestIncident returns the newest incident of a key, live or not, as a
// copy the caller may change.
func (p *pass) latestIncident(ctx context.Context, key string) (store.Incident, bool, error) {
	in, ok := p.cachedLatest(key)
	if !ok {
		never, err := p.neverHad(ctx, key)
		if err != nil {
			return store.Incident{}, false, err
		}
		if never {
			p.noteLatest(key, nil)
			return store.Incident{}, false, nil
		}
		got, found, err := p.tx.LatestIncident(ctx, key)
		if err != nil {
			return store.Incident{}, false, err
		}
		if found {
			in = &got
		}
		p.noteLatest(key, in)
	}
	if in == nil {
		return store.Incident{}, false, nil
	}
	return cloneIncident(in), true, nil
}

// save writes an incident, and keeps it as its key's latest when it is.
// A new incident is inserted at once (its ID is needed); a change of an
// existing one is written once, by flush, however often the pass saves it.
func (p *pass) save(ctx context.Context, in *store.Incident) error {
	inserted := in.ID == 0
	if inserted {
		// After the changes kept back: one may end the live incident of
		// the key (one live incident per key).
		if err := p.flush(ctx); err != nil {
			return err
		}
		if err := p.tx.SaveIncident(ctx, in); err != nil {
			return err
		}
		if p.inserted == nil {
			p.inserted = map[string]bool{}
		}
		p.inserted[in.Key] = true
	}
	if in.State == store.IncidentOpen || in.State == store.IncidentHeld {
		if p.livened == nil {
			p.livened = map[string]bool{}
		}
		keyPrefixes(in.Key, func(prefix string) {
			p.livened[prefix] = true
			delete(p.noLive, prefix)
		})
	}
	cur, known := p.cachedLatest(in.Key)
	// One copy for both: neither is ever changed, the next save replaces it.
	c := cloneIncident(in)
	if !inserted {
		p.keepUnsaved(&c, cur)
	}
	if inserted || known && (cur == nil || cur.ID <= in.ID) {
		p.noteLatest(in.Key, &c)
	}
	return nil
}

// unsavedIncident is a change save kept back: the incident now, and its
// row as stored when known (only what changed is written).
type unsavedIncident struct{ now, stored *store.Incident }

// keepUnsaved keeps a change of an existing incident for flush. cur is
// its key's latest incident (nil: none or not known).
func (p *pass) keepUnsaved(now, cur *store.Incident) {
	u, ok := p.unsaved[now.ID]
	if !ok {
		if cur != nil && cur.ID == now.ID {
			u.stored = cur // what its row holds: the memo follows every write
		}
		if p.unsaved == nil {
			p.unsaved = map[int64]unsavedIncident{}
		}
		p.unsavedOrder = append(p.unsavedOrder, now.ID)
	}
	u.now = now
	p.unsaved[now.ID] = u
}

// flush writes the changes save and addFact kept back.
func (p *pass) flush(ctx context.Context) error {
	if len(p.addedFacts) > 0 {
		if err := p.tx.AddFacts(ctx, p.addedFacts); err != nil {
			return err
		}
		p.addedFacts = nil
	}
	for _, id := range p.unsavedOrder {
		u := p.unsaved[id]
		if err := p.tx.SaveIncidentOver(ctx, u.now, u.stored); err != nil {
			return err
		}
	}
	p.unsaved, p.unsavedOrder = nil, nil
	return nil
}

// synced is the pass's transaction once the changes save kept back are
// written, for a query of the incidents table. A failed write is kept for
// Engine.write, which then rolls the pass back: what the query read meanwhile
// is lost with it.
func (p *pass) synced(ctx context.Context) *store.Tx {
	if err := p.flush(ctx); err != nil && p.flushErr == nil {
		p.flushErr = err
	}
	return p.tx
}

// cloneIncident copies an incident and the changes it holds, which the
// engine changes in place.
func cloneIncident(in *store.Incident) store.Incident {
	c := *in
	c.Changes = slices.Clone(in.Changes)
	return c
}
