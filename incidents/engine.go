package incidents

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// Route sends incidents to one room. An incident goes to every route it
// matches; empty lists match anything.
type Route struct {
	Transport   string
	Room        string
	MinSeverity Severity
	Namespaces  []string // globs
	Jobs        []string
	Nodes       []string
	Checks      []string
	Services    []string
}

// Config tunes the engine.
type Config struct {
	Rules            []Rule
	Routes           []Route
	EditInterval     time.Duration // at most one edit per incident per interval
	RoomCap          int           // new incident messages per room per minute; more go to a summary
	ThreadCap        int           // thread details per incident per minute; more are counted
	FlapWindow       time.Duration // state changes counted over this window
	FlapThreshold    int           // changes in the window that make an incident flapping
	ReminderInterval time.Duration // remind unacknowledged critical incidents; 0: never
	SettleAfter      time.Duration // a settling resolution holds once its key stayed quiet this long
	MaxHold          time.Duration // longest an incident is held back
	MaxMessageBytes  int
	// Waker is told, once a pass has committed, which transports it queued
	// messages for, so their senders deliver at once; nil tells no one.
	Waker Waker
}

// Waker wakes the sender of a transport (the outbox).
type Waker interface {
	Wake(transport string)
}

func (c *Config) defaults() {
	if c.EditInterval <= 0 {
		c.EditInterval = 5 * time.Second
	}
	if c.RoomCap <= 0 {
		c.RoomCap = 10
	}
	if c.ThreadCap <= 0 {
		c.ThreadCap = 5
	}
	if c.FlapWindow <= 0 {
		c.FlapWindow = 10 * time.Minute
	}
	if c.FlapThreshold <= 0 {
		c.FlapThreshold = 4
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 16000
	}
	if c.SettleAfter <= 0 {
		c.SettleAfter = 2 * time.Minute
	}
	if c.MaxHold <= 0 {
		c.MaxHold = 30 * time.Minute
	}
}

// Store is the transactional state the engine needs. A transaction's
// time (Tx.Now) is the engine's time: one clock reading per pass.
type Store interface {
	InTx(ctx context.Context, fn func(*store.Tx) error) error
}

// Engine is the incident pipeline; it is the watchers' Sink.
type Engine struct {
	cfg Config
	st  Store
	mu  sync.Mutex // one batch or timer pass at a time: they read then write incidents
	// memo: the facts and latest incidents passes looked up or wrote; under mu
	memo *memo

	prunedAt time.Time // last pruning of facts
}

// New creates an engine.
func New(cfg Config, st Store) *Engine {
	cfg.defaults()
	return &Engine{cfg: cfg, st: st, memo: newMemo()}
}

// Consume applies a batch of events and persists everything it causes with
// the batch's cursor, in one transaction.
func (e *Engine) Consume(ctx context.Context, b watchers.Batch) error {
	return e.write(ctx, func(p *pass) error {
		if b.Snapshot {
			p.snapshotKeys = make(map[*watchers.Check][]string, len(b.Events))
			p.seen = make(map[string]bool, len(b.Events))
		}
		for i := range b.Events {
			ev := &b.Events[i]
			if b.Snapshot && p.skipUnchanged(b.Cursor.Name, ev) {
				continue
			}
			err := p.event(ctx, ev)
			p.eventKeys = nil
			if err != nil {
				return err
			}
		}
		if b.Snapshot {
			p.snapshotSource = b.Cursor.Name
			if err := p.snapshot(ctx, b.Events); err != nil {
				return err
			}
		}
		if b.Cursor.Name != "" {
			return p.tx.SetCursor(ctx, b.Cursor.Name, b.Cursor.Index, b.Cursor.Offset)
		}
		return nil
	})
}

// write runs fn as one pass: one transaction at a time, at the
// transaction's time. Once it has committed, the senders of the messages
// it queued are woken: an alert leaves as soon as it is stored.
func (e *Engine) write(ctx context.Context, fn func(*pass) error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var p *pass
	err := e.st.InTx(ctx, func(tx *store.Tx) error {
		p = &pass{e: e, tx: tx, now: tx.Now()}
		if err := fn(p); err != nil {
			return err
		}
		if p.flushErr != nil {
			return p.flushErr
		}
		return p.flush(ctx)
	})
	if err != nil || p == nil {
		return err
	}
	e.memo.take(p)
	if e.cfg.Waker != nil {
		for transport := range p.queued {
			e.cfg.Waker.Wake(transport)
		}
	}
	return nil
}

// pass is the work of one transaction.
type pass struct {
	e   *Engine
	tx  *store.Tx
	now time.Time
	// signaled keys of a snapshot's batch, for its reconciliation; nil in
	// other passes
	seen map[string]bool
	// queued: transports this pass queued messages for
	queued map[string]bool
	// what the pass read and wrote of facts and latest incidents, for the
	// memo once committed; forgetFacts: the memo's facts are out of date
	facts       map[factID]memoFact
	latest      map[string]*store.Incident
	forgetFacts bool
	// incident changes save kept back for flush, in the order first saved
	unsaved      map[int64]unsavedIncident
	unsavedOrder []int64
	addedFacts   []store.Fact
	flushErr     error
	// snapshot passes: the keys each check of the snapshot gave (for the
	// memo, under snapshotSource), and the check being evaluated
	snapshotKeys   map[*watchers.Check][]string
	snapshotSource string
	eventKeys      *watchers.Check
	// prefixes found without live incidents, and the prefixes of the keys
	// of incidents saved live (which undo such findings), for the memo
	noLive  map[string]bool
	livened map[string]bool
	// keys under a first segment with an incident, read by this pass
	// (neverHad), and the keys of the incidents it inserted
	keysUnder map[string]map[string]bool
	inserted  map[string]bool
}

// enqueue queues a message in the pass's transaction.
func (p *pass) enqueue(ctx context.Context, m store.OutMessage) (int64, error) {
	ids, err := p.tx.Enqueue(ctx, m)
	if err != nil {
		return 0, err
	}
	if p.queued == nil {
		p.queued = map[string]bool{}
	}
	p.queued[m.Transport] = true
	return ids[0], nil
}

func (p *pass) event(ctx context.Context, ev *watchers.Event) error {
	if err := p.learn(ctx, ev); err != nil {
		return err
	}
	for _, r := range p.e.cfg.Rules {
		for _, sig := range r.Evaluate(ev) {
			if sig.Rule == "" {
				sig.Rule = r.Name()
			}
			if err := p.apply(ctx, sig, ev); err != nil {
				return fmt.Errorf("rule %s, key %s: %w", sig.Rule, sig.Key, err)
			}
		}
	}
	return p.failoverEnded(ctx, ev)
}

// Fact kinds.
const (
	factDeploy   = "deploy"   // ns/job -> running deployment ID
	factDrain    = "drain"    // node name -> "1" while draining
	factAlloc    = "alloc"    // alloc ID -> ns/job
	factServices = "services" // "consul" -> services of the last snapshot
	factFailover = "failover" // Stolon cluster -> "1" while Vigie fails it over
)

// learn remembers what suppression needs and releases held incidents when
// a deployment or a drain ends (the end of a Stolon failover: see
// failoverEnded).
func (p *pass) learn(ctx context.Context, ev *watchers.Event) error {
	switch {
	case ev.Deployment != nil:
		d := ev.Deployment
		job := ev.Namespace + "/" + d.Job
		switch d.Status {
		case "running", "pending", "paused", "blocked", "unblocking", "initializing":
			return p.setFact(ctx, factDeploy, job, d.ID)
		default:
			if cur, ok, err := p.fact(ctx, factDeploy, job); err != nil || !ok || cur != d.ID {
				return err
			}
			if err := p.deleteFact(ctx, factDeploy, job); err != nil {
				return err
			}
			return p.release(ctx, holdDeploy+job)
		}
	case ev.Node != nil:
		n := ev.Node
		if n.Draining {
			// Set, or refreshed: facts unseen for long are forgotten.
			return p.setFact(ctx, factDrain, n.Name, "1")
		}
		if _, draining, err := p.fact(ctx, factDrain, n.Name); err != nil || !draining {
			return err
		}
		if err := p.deleteFact(ctx, factDrain, n.Name); err != nil {
			return err
		}
		return p.release(ctx, holdDrain+n.Name)
	case ev.Alloc != nil:
		return p.addFact(ctx, factAlloc, ev.Alloc.ID, ev.Namespace+"/"+ev.Alloc.Job)
	case ev.Stolon != nil && ev.Stolon.Failover:
		// Set, or refreshed: facts unseen for long are forgotten.
		return p.setFact(ctx, factFailover, ev.Stolon.Cluster, "1")
	}
	return nil
}

// failoverEnded posts, on the first Stolon event of a cluster after Vigie
// failed it over, the incidents held meanwhile that still fire. It runs
// once the rules have judged the event, unlike learn: the event carries
// the cluster's whole state, and what it shows recovered is resolved, not
// posted. The fact spares every other event a look at the held incidents.
func (p *pass) failoverEnded(ctx context.Context, ev *watchers.Event) error {
	s := ev.Stolon
	if s == nil || s.Failover {
		return nil
	}
	if _, failingOver, err := p.fact(ctx, factFailover, s.Cluster); err != nil || !failingOver {
		return err
	}
	if err := p.deleteFact(ctx, factFailover, s.Cluster); err != nil {
		return err
	}
	return p.release(ctx, stolonHold(s.Cluster))
}

// Hold reasons, stored with the incident.
const (
	holdDeploy = "deployment of "
	holdDrain  = "drain of node "
)

// holdReason says why a new incident must wait: its rule says so (the
// check is under maintenance), or it is a Consul check whose service
// belongs to a job being deployed, or whose node is draining.
func (p *pass) holdReason(ctx context.Context, sig Signal, ev *watchers.Event) (string, error) {
	if sig.Hold != "" {
		return sig.Hold, nil
	}
	if ev == nil || ev.Check == nil {
		return "", nil
	}
	if sig.Labels.Node != "" {
		if _, ok, err := p.fact(ctx, factDrain, sig.Labels.Node); err != nil || ok {
			return holdDrain + sig.Labels.Node, err
		}
	}
	var jobs []string
	// Nomad registers services with IDs "_nomad-task-<alloc ID>-...".
	if rest, ok := strings.CutPrefix(ev.Check.ServiceID, "_nomad-task-"); ok && len(rest) >= 36 {
		if job, ok, err := p.fact(ctx, factAlloc, rest[:36]); err != nil {
			return "", err
		} else if ok {
			jobs = append(jobs, job)
		}
	}
	if ev.Check.ServiceName != "" {
		for _, ns := range []string{"default", ""} {
			jobs = append(jobs, ns+"/"+ev.Check.ServiceName)
		}
	}
	for _, job := range jobs {
		if _, ok, err := p.fact(ctx, factDeploy, job); err != nil || ok {
			return holdDeploy + job, err
		}
	}
	return "", nil
}

// release posts the incidents held for reason: they outlived it.
func (p *pass) release(ctx context.Context, reason string) error {
	held, err := p.synced(ctx).IncidentsInState(ctx, store.IncidentHeld)
	if err != nil {
		return err
	}
	for i := range held {
		if held[i].HoldReason == reason {
			if err := p.unhold(ctx, &held[i], "still failing after the "+reason+" ended"); err != nil {
				return err
			}
		}
	}
	return nil
}

// unhold posts a held incident, saying why now.
func (p *pass) unhold(ctx context.Context, in *store.Incident, why string) error {
	in.State = store.IncidentOpen
	in.Reason += " (" + why + ")"
	in.HoldReason, in.HoldUntil = "", time.Time{}
	in.OpenedAt, in.UpdatedAt = p.now, p.now
	return p.post(ctx, in, nil)
}

// maxOccurrences bounds the occurrences an incident remembers: enough to
// know again the recent states of all the allocations of a group.
const maxOccurrences = 32

// occurrenceID is what an incident remembers of an occurrence: a 64-bit
// hash (11 characters) instead of its name, which an allocation's ID
// makes some 60 bytes long, since the incident's row is written at every
// event.
func occurrenceID(occurrence string) string {
	h := fnv.New64a()
	h.Write([]byte(occurrence))
	return strconv.FormatUint(h.Sum64(), 36)
}

// repeats reports whether the incident already counted the signal's
// occurrence: the same failure told again by another event. (Incidents
// stored before occurrences were hashed remember names.)
func repeats(in *store.Incident, sig Signal) bool {
	return sig.Occurrence != "" && (hasLine(in.Occurrences, occurrenceID(sig.Occurrence)) ||
		hasLine(in.Occurrences, sig.Occurrence))
}

// hasLine reports whether line is one of the lines of text.
func hasLine(text, line string) bool {
	for from := 0; ; {
		i := strings.Index(text[from:], line)
		if i < 0 {
			return false
		}
		start, end := from+i, from+i+len(line)
		if (start == 0 || text[start-1] == '\n') && (end == len(text) || text[end] == '\n') {
			return true
		}
		from = start + 1
	}
}

// counted records a new occurrence on the incident, forgetting the oldest
// beyond maxOccurrences.
func counted(in *store.Incident, sig Signal) {
	if sig.Occurrence == "" {
		return
	}
	id := occurrenceID(sig.Occurrence)
	if in.Occurrences == "" {
		in.Occurrences = id
		return
	}
	kept := in.Occurrences
	for n := strings.Count(kept, "\n") + 1; n >= maxOccurrences; n-- {
		kept = kept[strings.IndexByte(kept, '\n')+1:]
	}
	in.Occurrences = kept + "\n" + id
}

// apply folds one signal into its incident.
func (p *pass) apply(ctx context.Context, sig Signal, ev *watchers.Event) error {
	if p.seen != nil {
		p.seen[sig.Key] = true
	}
	p.keyGiven(sig.Key)
	if prefix, ok := strings.CutSuffix(sig.Key, "/*"); ok && sig.Status == Resolved {
		live, err := p.liveIncidentsWithPrefix(ctx, prefix+"/")
		if err != nil {
			return err
		}
		for i := range live {
			if err := p.resolve(ctx, &live[i], sig.Reason); err != nil {
				return err
			}
		}
		return nil
	}
	latest, found, err := p.latestIncident(ctx, sig.Key)
	if err != nil {
		return err
	}
	live := found && (latest.State == store.IncidentOpen || latest.State == store.IncidentHeld)
	switch sig.Status {
	case Notice:
		return p.notice(ctx, sig, latest, found)
	case Resolved:
		switch {
		case !live:
			return nil
		case sig.Settle && latest.State == store.IncidentOpen:
			return p.settle(ctx, &latest, sig.Reason)
		}
		return p.resolve(ctx, &latest, sig.Reason)
	}
	switch {
	case found && repeats(&latest, sig):
		return nil // one failure, one event, even after its resolution
	case live:
		return p.update(ctx, &latest, sig)
	case found && latest.State == store.IncidentResolved && posted(&latest) && p.now.Sub(latest.ResolvedAt) < p.e.cfg.FlapWindow:
		return p.reopen(ctx, &latest, sig)
	}
	// New, or resolved while held: a fresh incident, held again if its
	// hold lasts (reopened, it would be open with no message).
	return p.open(ctx, sig, ev)
}

func (p *pass) open(ctx context.Context, sig Signal, ev *watchers.Event) error {
	labels, err := json.Marshal(sig.Labels)
	if err != nil {
		return err
	}
	in := &store.Incident{
		Key: sig.Key, Rule: sig.Rule, Severity: int(sig.Severity), State: store.IncidentOpen,
		Title: sig.Title, Reason: sig.Reason, Labels: string(labels), Events: 1,
		OpenedAt: p.when(sig), UpdatedAt: p.now, Releases: sig.Releases,
	}
	counted(in, sig)
	hold, err := p.holdReason(ctx, sig, ev)
	if err != nil {
		return err
	}
	if hold != "" {
		in.State, in.HoldReason, in.HoldUntil = store.IncidentHeld, hold, p.now.Add(p.e.cfg.MaxHold)
		return p.save(ctx, in)
	}
	return p.post(ctx, in, sig.Detail)
}

// posted reports whether the incident was ever posted (or, silenced,
// would have been): a held one resolved before it could be was not.
func posted(in *store.Incident) bool {
	return !in.LastEditAt.IsZero()
}

// when is the signal's time at the source, or now.
func (p *pass) when(sig Signal) time.Time {
	if sig.At.IsZero() || sig.At.After(p.now) {
		return p.now
	}
	return sig.At
}

// fired takes what a firing signal says into the incident: its reason, and
// its title and severity when it is at least as severe (a failed
// deployment is titled so after its canaries were unhealthy; a restart
// reported after a failure leaves the failure's title).
func fired(in *store.Incident, sig Signal) {
	if int(sig.Severity) >= in.Severity && sig.Title != "" {
		in.Title = sig.Title
	}
	in.Severity = max(in.Severity, int(sig.Severity))
	in.Reason = sig.Reason
	in.Events++
	counted(in, sig)
}

func (p *pass) update(ctx context.Context, in *store.Incident, sig Signal) error {
	// It fires: whatever looked healthy a moment ago was not.
	settling := !in.SettleAt.IsZero()
	in.SettleAt, in.SettleReason = time.Time{}, ""
	// Level-triggered sources (a Consul snapshot, a node's state repeated by
	// Nomad) say the same thing again: that is no new event.
	if sig.Occurrence == "" && sig.Reason == in.Reason && int(sig.Severity) <= in.Severity && sig.Detail == nil {
		if settling {
			return p.save(ctx, in)
		}
		return nil
	}
	fired(in, sig)
	in.UpdatedAt = p.now
	if in.State == store.IncidentHeld {
		return p.save(ctx, in)
	}
	if err := p.editSoon(ctx, in); err != nil {
		return err
	}
	if sig.Detail != nil && !in.Flapping && in.SilencedBy == "" {
		return p.thread(ctx, in, renderDetail(*sig.Detail), true)
	}
	return nil
}

func (p *pass) reopen(ctx context.Context, in *store.Incident, sig Signal) error {
	in.State, in.ResolvedAt, in.Resolution = store.IncidentOpen, time.Time{}, ""
	fired(in, sig)
	in.UpdatedAt = p.now
	p.stateChanged(in)
	if err := p.editSoon(ctx, in); err != nil {
		return err
	}
	if in.Flapping {
		return nil
	}
	return p.thread(ctx, in, renderReopened(in), true)
}

// settle starts the quiet period after which a settling resolution holds;
// a firing signal meanwhile cancels it (see update).
func (p *pass) settle(ctx context.Context, in *store.Incident, reason string) error {
	if in.SettleAt.IsZero() {
		in.SettleAt = p.now.Add(p.e.cfg.SettleAfter)
	}
	in.SettleReason = reason
	return p.save(ctx, in)
}

func (p *pass) resolve(ctx context.Context, in *store.Incident, reason string) error {
	wasHeld := in.State == store.IncidentHeld
	in.State, in.ResolvedAt, in.Resolution, in.UpdatedAt = store.IncidentResolved, p.now, reason, p.now
	in.HoldReason, in.HoldUntil = "", time.Time{}
	in.SettleAt, in.SettleReason = time.Time{}, ""
	var err error
	if wasHeld {
		err = p.save(ctx, in) // never posted: nothing to say
	} else {
		err = p.sayResolved(ctx, in)
	}
	if err != nil || in.Releases == "" {
		return err
	}
	return p.release(ctx, in.Releases)
}

// sayResolved edits a resolved incident's messages and says so in their
// thread, whatever its cap: the thread must say it ended.
func (p *pass) sayResolved(ctx context.Context, in *store.Incident) error {
	p.stateChanged(in)
	if err := p.tx.EndIncidentSilences(ctx, in.ID); err != nil {
		return err
	}
	if err := p.editSoon(ctx, in); err != nil || in.Flapping {
		return err
	}
	return p.thread(ctx, in, renderResolvedReply(in), false)
}

// notice posts a one-off fact, once: the same notice again within a minute,
// or the occurrence the latest notice of its key told, only counts.
func (p *pass) notice(ctx context.Context, sig Signal, latest store.Incident, found bool) error {
	// Processing time, not source time: a replay of old events must dedup too.
	if found && latest.State == store.IncidentNotice &&
		(latest.Title == sig.Title && p.now.Sub(latest.UpdatedAt) < time.Minute || repeats(&latest, sig)) {
		latest.Events++
		latest.UpdatedAt = p.now
		return p.save(ctx, &latest)
	}
	labels, err := json.Marshal(sig.Labels)
	if err != nil {
		return err
	}
	in := &store.Incident{
		Key: sig.Key, Rule: sig.Rule, Severity: int(sig.Severity), State: store.IncidentNotice,
		Title: sig.Title, Reason: sig.Reason, Labels: string(labels), Events: 1,
		OpenedAt: p.when(sig), UpdatedAt: p.now,
	}
	counted(in, sig)
	return p.post(ctx, in, nil)
}

// maxFlapHistory bounds the state changes an incident remembers (unless
// FlapThreshold needs more): enough to judge flapping, and to say "at
// least" that many.
const maxFlapHistory = 64

func (e *Engine) flapHistory() int { return max(maxFlapHistory, e.cfg.FlapThreshold) }

// stateChanged counts a state change and updates flapping.
func (p *pass) stateChanged(in *store.Incident) {
	cutoff := p.now.Add(-p.e.cfg.FlapWindow).UnixMilli()
	kept := in.Changes[:0]
	for _, c := range in.Changes[max(0, len(in.Changes)-(p.e.flapHistory()-1)):] {
		if c >= cutoff {
			kept = append(kept, c)
		}
	}
	in.Changes = append(kept, p.now.UnixMilli())
	if len(in.Changes) >= p.e.cfg.FlapThreshold {
		in.Flapping = true
	}
}

// editSoon saves the incident and edits its messages: now if the last edit
// is at least EditInterval old, else at that time (the tick flushes it).
// State changes included, so a flapping incident is edited at most once
// per interval, and the edit shows the state at its time: the last wins.
func (p *pass) editSoon(ctx context.Context, in *store.Incident) error {
	if next := in.LastEditAt.Add(p.e.cfg.EditInterval); p.now.Before(next) {
		if in.EditDueAt.IsZero() || in.EditDueAt.After(next) {
			in.EditDueAt = next
		}
		return p.save(ctx, in)
	}
	in.EditDueAt, in.LastEditAt = time.Time{}, p.now
	if err := p.save(ctx, in); err != nil {
		return err
	}
	return p.edit(ctx, in)
}

// labelsOf decodes an incident's labels.
func labelsOf(in *store.Incident) Labels {
	var l Labels
	json.Unmarshal([]byte(in.Labels), &l) //nolint:errcheck // written by us; zero labels if ever corrupt
	return l
}

// routes returns the routes an incident goes to.
func (e *Engine) routes(in *store.Incident) []Route {
	l := labelsOf(in)
	var out []Route
	for _, r := range e.cfg.Routes {
		if Severity(in.Severity) < r.MinSeverity {
			continue
		}
		if l.Sight != "" || globsMatch(r.Namespaces, l.Namespace) && globsMatch(r.Jobs, l.Job) && globsMatch(r.Nodes, l.Node) &&
			globsMatch(r.Checks, l.Check) && globsMatch(r.Services, l.Service) {
			out = append(out, r)
		}
	}
	return out
}

// globsMatch: an empty list matches anything; otherwise one glob must
// match the (non-empty) value.
func globsMatch(globs []string, v string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, v); ok && v != "" {
			return true
		}
	}
	return false
}
