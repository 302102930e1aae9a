package watchers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
)

// Lookout is how a watcher says whether it reads its source. It is called
// from the watcher's goroutine, often (every frame, heartbeat or answer).
type Lookout interface {
	// Seen: the source answered (a frame, a heartbeat, a response).
	Seen()
	// Lost: an attempt to read the source failed; err says why and where.
	Lost(err error)
	// Partial: the source answers but leaves out part of what Vigie
	// watches (an ACL filtering its answers): missing says what and why.
	// "" says it shows everything.
	Partial(missing string)
}

// SourceStatus is what Vigie knows of its view of one source.
type SourceStatus struct {
	Name        string // the watcher's name, e.g. "nomad"
	Display     string // for people, e.g. "Nomad"
	Address     string
	Up          bool      // the last attempt succeeded
	Blind       bool      // not up for longer than the grace period
	Since       time.Time // up: since when; not up: since the first failure (or the start)
	Reason      string    // not up: the latest failure
	Missing     string    // what the source leaves out of its answers ("" if nothing)
	LastContact time.Time // the latest answer, frame or heartbeat; zero if none yet
	LastEvent   time.Time // when the latest events from it were stored; zero if none yet
}

// Visibility tracks whether Vigie sees each of its sources. A source not
// seen for longer than the grace period (down, refusing the token, stuck)
// is blind: Run tells the sink, so that it becomes an incident, and
// Statuses feeds /readyz, the metrics and the chat.
type Visibility struct {
	clock clock.Clock
	grace time.Duration

	mu      sync.Mutex
	sources map[string]*sourceState
	order   []string
	changed chan struct{} // a buffered wake-up for Run
}

type sourceState struct {
	SourceStatus
	said        string // the last Sight type delivered: "", SightBlind or SightSeeing
	partKnown   bool   // the watcher said whether the source shows everything
	saidPartial string // the last delivered of SightPartial and SightWhole
}

// NewVisibility returns a tracker whose sources go blind after grace.
func NewVisibility(clk clock.Clock, grace time.Duration) *Visibility {
	return &Visibility{clock: clock.OrSystem(clk), grace: grace, sources: map[string]*sourceState{}, changed: make(chan struct{}, 1)}
}

// Add starts tracking a source. Until it is first seen, it counts as down
// since now: a source never reached goes blind like one that was lost.
func (v *Visibility) Add(name, display, address string) Lookout {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.sources[name]; !ok {
		v.sources[name] = &sourceState{SourceStatus: SourceStatus{
			Name: name, Display: display, Address: address, Since: v.clock.Now(), Reason: "not reached yet",
		}}
		v.order = append(v.order, name)
	}
	return lookout{v: v, name: name}
}

type lookout struct {
	v    *Visibility
	name string
}

// stored records that events of a source were stored.
func (v *Visibility) stored(name string) {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sources[name].LastEvent = now
}

// recordingSink notes when a watcher's events are stored.
type recordingSink struct {
	Sink
	v    *Visibility
	name string
}

func (s recordingSink) Consume(ctx context.Context, b Batch) error {
	err := s.Sink.Consume(ctx, b)
	if err == nil && len(b.Events) > 0 {
		s.v.stored(s.name)
	}
	return err
}

func (l lookout) Seen()                  { l.v.seen(l.name) }
func (l lookout) Lost(err error)         { l.v.lost(l.name, err) }
func (l lookout) Partial(missing string) { l.v.partial(l.name, missing) }

func (v *Visibility) partial(name, missing string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.sources[name]
	if !s.partKnown || s.Missing != missing {
		s.partKnown, s.Missing = true, missing
		v.wake()
	}
}

func (v *Visibility) seen(name string) {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.sources[name]
	s.LastContact = now
	if !s.Up {
		s.Up, s.Blind, s.Since, s.Reason = true, false, now, ""
		v.wake()
	}
}

func (v *Visibility) lost(name string, err error) {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.sources[name]
	if s.Up {
		s.Up, s.Since = false, now
		v.wake()
	}
	s.Reason = err.Error()
}

func (v *Visibility) wake() {
	select {
	case v.changed <- struct{}{}:
	default:
	}
}

// Statuses returns every source's status, in the order they were added.
func (v *Visibility) Statuses() []SourceStatus {
	now := v.clock.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]SourceStatus, 0, len(v.order))
	for _, name := range v.order {
		s := v.sources[name]
		s.Blind = !s.Up && now.Sub(s.Since) >= v.grace
		out = append(out, s.SourceStatus)
	}
	return out
}

// Unseen is an error naming the blind sources and those that leave part
// of their answers out, or nil: /readyz fails with it.
func (v *Visibility) Unseen() error {
	var unseen []string
	for _, s := range v.Statuses() {
		switch {
		case s.Blind:
			unseen = append(unseen, fmt.Sprintf("blind to %s (%s) since %s: %s", s.Display, s.Address, s.Since.UTC().Format(time.RFC3339), s.Reason))
		case s.Up && s.Missing != "":
			unseen = append(unseen, fmt.Sprintf("%s (%s) shows only part of its state: %s", s.Display, s.Address, s.Missing))
		}
	}
	if len(unseen) == 0 {
		return nil
	}
	return errors.New(strings.Join(unseen, "; "))
}

// visibilityTick bounds how late a source is declared blind after its
// grace period, and how soon a failed delivery is retried.
const visibilityTick = time.Second

// Run tells the sink, until ctx is done, when a source goes blind and when
// it is seen again (the first time after start too, which resolves what a
// previous run left open), and likewise when it starts and stops leaving
// part of its answers out. A delivery that fails is retried.
func (v *Visibility) Run(ctx context.Context, sink Sink) {
	t := time.NewTicker(visibilityTick)
	defer t.Stop()
	for {
		for _, ev := range v.news() {
			if err := sink.Consume(ctx, Batch{Events: []Event{ev}}); err != nil {
				if ctx.Err() == nil {
					zerolog.Ctx(ctx).Error().Err(err).Str("source", ev.Source).Msg("Cannot record what Vigie sees of a source; retrying")
				}
				break
			}
			v.said(ev.Source, ev.Type)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-v.changed:
		}
	}
}

// news returns a Sight event for each source whose state changed since it
// was last delivered.
func (v *Visibility) news() []Event {
	now := v.clock.Now()
	var out []Event
	for _, s := range v.Statuses() {
		v.mu.Lock()
		st := *v.sources[s.Name]
		v.mu.Unlock()
		sight := func(typ, reason string, since time.Time) {
			out = append(out, Event{Source: s.Name, Topic: TopicSight, Type: typ, Time: since,
				Sight: &Sight{Source: s.Display, Address: s.Address, Since: since, Reason: reason}})
		}
		switch {
		case s.Up && st.said != SightSeeing:
			sight(SightSeeing, s.Reason, s.Since)
		case s.Blind && st.said != SightBlind:
			sight(SightBlind, s.Reason, s.Since)
		}
		switch {
		case !st.partKnown:
		case s.Missing != "" && st.saidPartial != SightPartial:
			sight(SightPartial, s.Missing, now)
		case s.Missing == "" && st.saidPartial != SightWhole:
			sight(SightWhole, "", now)
		}
	}
	return out
}

// said records what was delivered about a source.
func (v *Visibility) said(name, typ string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if typ == SightPartial || typ == SightWhole {
		v.sources[name].saidPartial = typ
		return
	}
	v.sources[name].said = typ
}
