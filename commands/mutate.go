package commands

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vigie/vigie/render"
)

// Confirmable is a command that changes something in a way worth a second
// look: it first previews what will change, then applies it once the
// requester (or, under the two-person rule, an approver) confirms.
type Confirmable interface {
	Command
	// Preview computes the change without making it.
	Preview(ctx context.Context, req *Request) (*Proposal, error)
	// Apply makes the change; progress edits one live message.
	Apply(ctx context.Context, req *Request, ch *Proposal, progress Progress) (render.Node, error)
}

// Proposal is a previewed change.
type Proposal struct {
	Resource string      // what it changes, one change at a time: "job:default/web"
	Summary  string      // one line for the audit log, e.g. "web: nginx:1.26 → nginx:1.27"
	Preview  render.Node // what the user confirms
	State    any         // what Apply needs (a plan, an index to enforce)
}

// Progress reports how an applied change goes, by editing one message.
type Progress interface {
	Update(ctx context.Context, status render.Node) error
	// Applied says the change is made and what follows only watches it
	// (a deployment rolling out): the resource is free for the next change
	// (the promotion of the canaries this deployment waits for), and the
	// transport need not wait for the rest.
	Applied()
}

// locks holds one mutating operation per resource.
type locks struct {
	mu    sync.Mutex
	held  map[string]*holder
	clock func() time.Time
}

type holder struct {
	who, command string
	since        time.Time
}

// take locks a resource, or says who holds it. The holder it returns
// releases it.
func (l *locks) take(resource, who, command string) (*holder, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, busy := l.held[resource]; busy {
		return nil, fmt.Errorf("%s is busy: %s by %s, running for %s", resource, h.command, h.who, l.clock().Sub(h.since).Round(time.Second))
	}
	h := &holder{who: who, command: command, since: l.clock()}
	l.held[resource] = h
	return h, nil
}

// release frees a resource if h still holds it: releasing twice, or after
// a later change took it, does nothing.
func (l *locks) release(resource string, h *holder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[resource] == h {
		delete(l.held, resource)
	}
}

// rateLimit bounds mutating commands per user per minute.
type rateLimit struct {
	mu     sync.Mutex
	perMin int
	recent map[string][]time.Time
	clock  func() time.Time
}

// allow records an attempt and says whether it is within the limit.
func (r *rateLimit) allow(user string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock()
	kept := r.recent[user][:0]
	for _, t := range r.recent[user] {
		if now.Sub(t) < time.Minute {
			kept = append(kept, t)
		}
	}
	if len(kept) >= r.perMin {
		r.recent[user] = kept
		return fmt.Errorf("too many changes: at most %d per minute, try again in %s", r.perMin, (time.Minute - now.Sub(kept[0])).Round(time.Second))
	}
	r.recent[user] = append(kept, now)
	return nil
}

// refund gives back the attempt allow last recorded for user: a request
// refused as invalid before its preview costs nothing.
func (r *rateLimit) refund(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.recent[user]); n > 0 {
		r.recent[user] = r.recent[user][:n-1]
	}
}
