package commands

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// pendingChange is a previewed change waiting for its confirmation.
type pendingChange struct {
	code          string
	cmd           Confirmable
	spec          Spec
	req           *Request // the original request
	change        *Proposal
	needsApproval bool
	previewID     int64 // outbox ID of the preview, for ✅ reactions
	expires       time.Time
}

// confirmations holds pending changes: in memory on purpose, a restart
// cancels them (the safe outcome).
type confirmations struct {
	mu      sync.Mutex
	byCode  map[string]*pendingChange
	timeout time.Duration
	clock   func() time.Time
}

func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

func (c *confirmations) add(p *pendingChange) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range 10 {
		code, err := newCode()
		if err != nil {
			return err
		}
		if _, taken := c.byCode[code]; !taken {
			p.code, p.expires = code, c.clock().Add(c.timeout)
			c.byCode[code] = p
			return nil
		}
	}
	return errors.New("no free confirmation code")
}

// cancelFor drops what a user has pending in a room: anything else they
// send there cancels it.
func (c *confirmations) cancelFor(user, room string) []*pendingChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*pendingChange
	for code, p := range c.byCode {
		if p.req.Sender == user && p.req.Room == room {
			delete(c.byCode, code)
			out = append(out, p)
		}
	}
	return out
}

// find returns the change a confirmation is for, if the confirmer may
// confirm it; expired and used codes are refused. The caller claims it
// once its authorization checks pass.
func (c *confirmations) find(req *Request) (*pendingChange, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var p *pendingChange
	if len(req.Args) == 1 {
		p = c.byCode[req.Args[0]]
		if p == nil {
			return nil, fmt.Errorf("no pending change with code %s: it was used, cancelled or never existed", req.Args[0])
		}
	} else {
		for _, q := range c.byCode {
			if req.ReactsTo != 0 && q.previewID == req.ReactsTo {
				p = q
			}
		}
		if p == nil && req.ReactsTo != 0 {
			return nil, errNotAPreview
		}
		if p == nil {
			return nil, Usagef("say which change to confirm: confirm <code>")
		}
	}
	switch {
	case c.clock().After(p.expires):
		delete(c.byCode, p.code)
		return nil, fmt.Errorf("code %s expired at %s; run %s again", p.code, p.expires.UTC().Format("15:04:05 UTC"), p.spec.Name)
	case p.req.Room != req.Room:
		return nil, fmt.Errorf("code %s was given in another room", p.code)
	case !p.needsApproval && req.Sender != p.req.Sender:
		return nil, fmt.Errorf("only %s, who asked for it, can confirm this %s", p.req.Sender, p.spec.Name)
	case p.needsApproval && req.Sender == p.req.Sender:
		return nil, fmt.Errorf("this %s needs a second person: someone else from the approvers confirms it", p.spec.Name)
	}
	return p, nil
}

// claim consumes a pending change; false if someone else just did.
func (c *confirmations) claim(p *pendingChange) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byCode[p.code] != p {
		return false
	}
	delete(c.byCode, p.code)
	return true
}

// Confirm confirms a previewed change.
type Confirm struct{ router *Router }

// Spec implements Handler.
func (c *Confirm) Spec() Spec {
	return Spec{Name: "confirm", Access: Public, Summary: "apply a previewed change", Usage: "<code>",
		Help:    "Commands that change things first show what they will do and a one-time code. The same person confirms it (or, under the two-person rule, an approver), with this command or a ✅ reaction on the preview.",
		MaxArgs: 1, Timeout: applyTimeout}
}

// applyTimeout bounds an applied change, following a deployment included.
const applyTimeout = 30 * time.Minute

// errNotAPreview: a ✅ on a message that previews nothing (pending).
var errNotAPreview = errors.New("not a pending change's preview")

// Run implements Handler.
func (c *Confirm) Run(ctx context.Context, req *Request) (render.Node, error) {
	node, err := c.router.apply(ctx, req)
	if errors.Is(err, errNotAPreview) {
		return render.Node{}, nil // a ✅ on any other message means nothing
	}
	return node, err
}

// Cancel drops the caller's pending change.
type Cancel struct{ router *Router }

// Spec implements Handler.
func (c *Cancel) Spec() Spec {
	return Spec{Name: "cancel", Access: Public, Summary: "drop your pending change", MaxArgs: 0}
}

// Run implements Handler.
func (c *Cancel) Run(_ context.Context, req *Request) (render.Node, error) {
	dropped := c.router.pending.cancelFor(req.Sender, req.Room)
	if len(dropped) == 0 {
		return render.Text("Nothing to cancel."), nil
	}
	return render.Text(fmt.Sprintf("Cancelled: %s (code %s).", dropped[0].change.Summary, dropped[0].code)), nil
}

// preview runs a Confirmable's preview and asks for confirmation; it
// returns the change's summary.
func (r *Router) preview(ctx context.Context, in Incoming, req *Request, spec Spec, c Confirmable) (string, error) {
	ch, err := c.Preview(ctx, req)
	if err != nil {
		return "", err
	}
	p := &pendingChange{cmd: c, spec: spec, req: req, change: ch, needsApproval: r.cfg.Authorizer.NeedsApproval(req, spec)}
	if err := r.pending.add(p); err != nil {
		return "", err
	}
	how := render.Group(render.Text("Confirm with "), render.Code(commandLine(req.Prefix, "confirm "+p.code)),
		render.Text(" or react ✅ within "+shortDuration(r.pending.timeout)+"; anything else you send here cancels it."))
	if p.needsApproval {
		how = render.Group(render.Text("Two-person rule: someone else from the approvers confirms with "),
			render.Code(commandLine(req.Prefix, "confirm "+p.code)), render.Text(" or ✅ within "+shortDuration(r.pending.timeout)+"."))
	}
	node := render.Group(render.Heading(render.Text("⚠️ "+spec.Name+": "+ch.Summary)), ch.Preview, render.Line(), how)
	ids, err := r.send(ctx, outbox.Message{Transport: in.Transport, Room: in.Room, ReplyTo: in.EventID, Content: render.RenderLimit(r.cfg.MaxReplyBytes, node)})
	if err != nil {
		r.pending.cancelFor(req.Sender, req.Room)
		return "", err
	}
	p.previewID = ids[0]
	return ch.Summary, nil
}

// apply checks a confirmation afresh, takes the resource and applies.
func (r *Router) apply(ctx context.Context, req *Request) (render.Node, error) {
	p, err := r.pending.find(req)
	if err != nil {
		return render.Node{}, err
	}
	started := r.now()
	rec := store.AuditRecord{At: started, Actor: p.req.Sender, Room: p.req.Room, EventID: p.req.EventID, Command: p.spec.Name,
		Args: p.change.Summary, Access: p.spec.Access.String()}
	finish := func(outcome string, err error) {
		rec.Outcome, rec.Duration = outcome, r.now().Sub(started)
		if err != nil {
			rec.Detail = err.Error()
		}
		if p.needsApproval {
			rec.Detail = "approved by " + req.Sender + ". " + rec.Detail
		}
		r.audit(ctx, rec)
	}
	who, err := r.cfg.Authorizer.Authorize(ctx, p.req, p.spec, StepConfirm)
	rec.Principal = who.DN
	if err != nil {
		finish("denied", err)
		return render.Node{}, fmt.Errorf("not applied: %s", publicReason(err))
	}
	if p.needsApproval {
		approver, err := r.cfg.Authorizer.Authorize(ctx, req, p.spec, StepApprove)
		// Two persons, not two Matrix IDs: one directory entry may hold
		// several (homeserver domains, a multi-valued attribute).
		if err == nil && approver.DN != "" && strings.EqualFold(approver.DN, who.DN) {
			err = fmt.Errorf("%s is the directory entry (%s) that asked for this %s: a second person must approve it", req.Sender, who.DN, p.spec.Name)
		}
		if err != nil {
			rec.Detail = req.Sender + " tried to approve: " + err.Error()
			rec.Outcome, rec.Duration = "denied", r.now().Sub(started)
			r.audit(ctx, rec) // the change stays pending for a real approver
			return render.Node{}, fmt.Errorf("not approved: %s", publicReason(err))
		}
	}
	if !r.pending.claim(p) {
		return render.Node{}, fmt.Errorf("code %s was just used", p.code)
	}
	held, err := r.locks.take(p.change.Resource, p.req.Sender, p.spec.Name)
	if err != nil {
		finish("refused", err)
		return render.Node{}, err
	}
	defer r.locks.release(p.change.Resource, held)
	progress := &messageProgress{r: r, transport: req.Transport, room: req.Room, replyTo: req.EventID,
		applied: sync.OnceFunc(func() {
			r.locks.release(p.change.Resource, held)
			if req.settle != nil {
				req.settle()
			}
		})}
	result, err := p.cmd.Apply(ctx, p.req, p.change, progress)
	if err != nil {
		finish("failed", err)
		return render.Node{}, err
	}
	finish("applied", nil)
	return result, nil
}

// messageProgress posts one status message and edits it as things move.
type messageProgress struct {
	r         *Router
	transport string
	room      string
	replyTo   string
	id        int64
	applied   func()
}

// Applied implements Progress.
func (m *messageProgress) Applied() { m.applied() }

func (m *messageProgress) Update(ctx context.Context, status render.Node) error {
	msg := outbox.Message{Transport: m.transport, Room: m.room, Content: render.RenderLimit(m.r.cfg.MaxReplyBytes, status)}
	if m.id == 0 {
		msg.ReplyTo = m.replyTo
	} else {
		msg.EditOf = m.id
	}
	ids, err := m.r.send(ctx, msg)
	if err == nil && m.id == 0 {
		m.id = ids[0]
	}
	return err
}

// shortDuration prints 2m rather than 2m0s, and 30d rather than 720h0m0s.
func shortDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
