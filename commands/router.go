package commands

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// Incoming is a command message as a transport received it.
type Incoming struct {
	Transport string
	Room      string
	EventID   string // unique per message; a repeated ID is handled once
	Sender    string
	Text      string // the command line, prefix already removed
	Prefix    string
	// Quiet: the command stands for a gesture (a reaction) whose effect is
	// visible by itself; reply only if it fails.
	Quiet bool
	// ReactsTo: for a reaction, the outbox ID of the message reacted to.
	ReactsTo int64
}

// Sender queues replies (the outbox).
type Sender interface {
	Send(ctx context.Context, msgs ...outbox.Message) ([]int64, error)
}

// SeenStore remembers handled events across restarts.
type SeenStore interface {
	MarkSeen(ctx context.Context, eventID string) (first bool, err error)
}

// Auditor records every command and its outcome.
type Auditor interface {
	Audit(ctx context.Context, r store.AuditRecord) error
}

// Principal is who runs a command, as the directory knows them.
type Principal struct {
	DN     string   // directory entry; "" when none was consulted
	Groups []string // group DNs
}

// Step says why authorization is asked.
type Step int

const (
	// StepRun: the command arrives. Cached directory data may be used.
	StepRun Step = iota + 1
	// StepConfirm: its requester confirms a destructive command; checked
	// afresh, never from a cache.
	StepConfirm
	// StepApprove: a second person approves (two-person rule); checked
	// afresh against the approver groups.
	StepApprove
)

// ErrUnavailable means the directory could not be asked: deny, and say so.
var ErrUnavailable = errors.New("cannot check your groups right now")

// Authorizer decides whether req.Sender may run the command in req.Room.
// It is the seam where LDAP group policy plugs in; it must fail closed:
// any doubt is an error.
type Authorizer interface {
	Authorize(ctx context.Context, req *Request, spec Spec, step Step) (Principal, error)
	// NeedsApproval tells whether a second person must approve.
	NeedsApproval(req *Request, spec Spec) bool
}

// publicReason is what the chat may see of a refusal: a directory
// outage's details (addresses, network errors) stay in the log and audit.
func publicReason(err error) string {
	if errors.Is(err, ErrUnavailable) {
		return ErrUnavailable.Error() + "; try again in a moment"
	}
	return err.Error()
}

// ReadOnly allows public and read commands and refuses the rest: the
// router's authorizer when none is given (Vigie itself always gives its
// policy, which honours read_open).
type ReadOnly struct{}

// Authorize implements Authorizer.
func (ReadOnly) Authorize(_ context.Context, _ *Request, spec Spec, _ Step) (Principal, error) {
	if spec.Access == Public || spec.Access == Read {
		return Principal{}, nil
	}
	return Principal{}, fmt.Errorf("%s needs a policy rule, and there is no authorization backend (LDAP)", spec.Name)
}

// NeedsApproval implements Authorizer.
func (ReadOnly) NeedsApproval(*Request, Spec) bool { return false }

// RouterConfig holds the router's dependencies and limits.
type RouterConfig struct {
	Registry        *Registry
	Replies         Sender
	Seen            SeenStore
	Audit           Auditor
	Authorizer      Authorizer
	Metrics         *telemetry.Metrics
	Timeout         time.Duration // per command, unless its Spec says otherwise
	MaxReplyBytes   int
	MaxConcurrent   int           // handlers running at once; more wait
	ConfirmTimeout  time.Duration // validity of a confirmation code
	MutationsPerMin int           // per user, commands that change things
	AuditTransport  string        // where audit records are mirrored...
	AuditRoom       string        // ...if a room is set
	Clock           clock.Clock   // the process's clock; nil is the wall clock
}

// Router runs commands. It owns the goroutines of running handlers.
type Router struct {
	cfg     RouterConfig
	running sync.WaitGroup
	slots   chan struct{}
	clock   clock.Clock
	pending *confirmations
	locks   *locks
	limits  *rateLimit
}

// NewRouter creates a router and registers its own commands (confirm,
// cancel) in the registry.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Minute
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 16
	}
	if cfg.Authorizer == nil {
		cfg.Authorizer = ReadOnly{}
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = 2 * time.Minute
	}
	if cfg.MutationsPerMin <= 0 {
		cfg.MutationsPerMin = 5
	}
	r := &Router{cfg: cfg, slots: make(chan struct{}, cfg.MaxConcurrent), clock: clock.OrSystem(cfg.Clock)}
	r.pending = &confirmations{byCode: map[string]*pendingChange{}, timeout: cfg.ConfirmTimeout, clock: r.now}
	r.locks = &locks{held: map[string]*holder{}, clock: r.now}
	r.limits = &rateLimit{perMin: cfg.MutationsPerMin, recent: map[string][]time.Time{}, clock: r.now}
	for _, c := range []Command{&Confirm{router: r}, &Cancel{router: r}} {
		if _, exists := cfg.Registry.Lookup(c.Spec().Name); !exists {
			cfg.Registry.Register(c) //nolint:errcheck // name checked just above
		}
	}
	return r
}

func (r *Router) now() time.Time { return r.clock.Now() }

// Handle runs a command in the background so the transport's loop never
// waits on it. ctx is the owner's: cancelling it stops the handler.
// The channel it returns is closed once the command has replied, or has
// applied its change and only follows it (see Progress.Applied): a
// transport that answers one command at a time (the console) waits on it.
func (r *Router) Handle(ctx context.Context, in Incoming) <-chan struct{} {
	settled := make(chan struct{})
	settle := sync.OnceFunc(func() { close(settled) })
	r.running.Add(1)
	go func() {
		defer r.running.Done()
		defer settle()
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-r.slots }()
		r.handle(ctx, in, r.now(), settle)
	}()
	return settled
}

// Wait blocks until every handler started so far has queued its reply.
func (r *Router) Wait() { r.running.Wait() }

// maxAuditArgs bounds what a huge message can put in the audit log.
const maxAuditArgs = 1024

func (r *Router) handle(ctx context.Context, in Incoming, received time.Time, settle func()) {
	log := zerolog.Ctx(ctx).With().Str("event_id", in.EventID).Str("sender", in.Sender).Str("room", in.Room).Logger()
	ctx = log.WithContext(ctx)

	if in.EventID != "" {
		first, err := r.cfg.Seen.MarkSeen(ctx, in.EventID)
		if err != nil {
			// Without the record we cannot promise the command runs once.
			log.Error().Err(err).Msg("Cannot record command event; not running it")
			r.reply(ctx, in, render.Text("⚠️ Internal error: the state store is unavailable, command not run."))
			return
		}
		if !first {
			log.Info().Msg("Command event already handled; ignoring the repeat")
			return
		}
	}

	rec := store.AuditRecord{At: received, Actor: in.Sender, Room: in.Room, EventID: in.EventID, Args: clip(in.Text, maxAuditArgs)}
	inv, err := Parse(in.Text)
	if err != nil {
		r.finish(ctx, in, rec, "invalid", "", render.Group(render.Text("⚠️ I could not read that command: "+err.Error()+". "),
			render.Text("Quote arguments with spaces: "), render.Code(commandLine(in.Prefix, `deploy web image="my image"`))))
		return
	}
	if inv.Name == "" {
		inv.Name = "help"
	}
	rec.Command = inv.Name
	h, inv, ok := r.cfg.Registry.Resolve(inv)
	if !ok {
		msg := []render.Node{render.Text("⚠️ Unknown command "), render.Code(inv.Name), render.Text(".")}
		if near, ok := r.cfg.Registry.Suggest(inv.Name); ok {
			msg = append(msg, render.Text(" Did you mean "), render.Code(commandLine(in.Prefix, near)), render.Text("?"))
		}
		msg = append(msg, render.Text(" Send "), render.Code(commandLine(in.Prefix, "help")), render.Text(" for the list."))
		rec.Command = "" // user input; keep it in args only
		r.finish(ctx, in, rec, "unknown", "", render.Group(msg...))
		return
	}
	spec := h.Spec()
	rec.Command, rec.Access = spec.Name, spec.Access.String()
	req := &Request{Invocation: inv, Transport: in.Transport, Room: in.Room, EventID: in.EventID, Sender: in.Sender, Prefix: in.Prefix, ReactsTo: in.ReactsTo,
		Received: received, clock: r.clock, settle: settle}
	req.live = &messageProgress{r: r, transport: in.Transport, room: in.Room, replyTo: in.EventID, applied: func() {}}
	if spec.Name != "confirm" && spec.Name != "cancel" {
		// Anything else the user sends here cancels their pending change.
		for _, p := range r.pending.cancelFor(in.Sender, in.Room) {
			r.reply(ctx, in, render.Text(fmt.Sprintf("Cancelled the pending %s (%s): you sent another command.", p.spec.Name, p.change.Summary)))
		}
	}
	if err := spec.validate(inv); err != nil {
		r.finish(ctx, in, rec, "invalid", spec.Name, usageReply(req, spec, err))
		return
	}
	who, err := r.cfg.Authorizer.Authorize(ctx, req, spec, StepRun)
	rec.Principal = who.DN
	if err != nil {
		rec.Detail = err.Error()
		log.Warn().Str("command", spec.Name).Err(err).Msg("Command refused")
		r.finish(ctx, in, rec, "denied", spec.Name, render.Group(render.Text("⛔ Not allowed: "), render.Code(spec.Name), render.Text(" — "+publicReason(err))))
		return
	}
	if spec.Access == Change {
		if err := r.limits.allow(in.Sender); err != nil {
			rec.Detail = err.Error()
			r.finish(ctx, in, rec, "refused", spec.Name, render.Text("⏳ "+err.Error()))
			return
		}
	}

	var reply render.Node
	preview := ""
	err = r.guard(ctx, spec, req, func(ctx context.Context) error {
		var err error
		switch c := h.(type) {
		case Confirmable:
			preview, err = r.preview(ctx, in, req, spec, c)
		case Handler:
			reply, err = c.Run(ctx, req)
		}
		return err
	})
	var usage *UsageError
	switch {
	case errors.As(err, &usage):
		if spec.Access == Change {
			r.limits.refund(in.Sender)
		}
		r.finish(ctx, in, rec, "invalid", spec.Name, usageReply(req, spec, err))
	case errors.Is(err, context.DeadlineExceeded):
		rec.Detail = err.Error()
		r.finish(ctx, in, rec, "timeout", spec.Name, render.Group(render.Text("⏱️ "), render.Code(spec.Name), render.Textf(" did not finish within %s and was stopped.", r.timeout(spec))))
	case errors.As(err, new(shownError)):
		rec.Detail = err.Error()
		r.finish(ctx, in, rec, "error", spec.Name, render.Node{}) // its progress message says it
	case err != nil:
		rec.Detail = err.Error()
		r.finish(ctx, in, rec, "error", spec.Name, render.Group(render.Text("⚠️ "), render.Code(spec.Name), render.Text(" failed: "+err.Error())))
	case preview != "":
		rec.Detail = preview
		r.finish(ctx, in, rec, "previewed", spec.Name, render.Node{}) // the preview was the reply
	default:
		if in.Quiet {
			reply = render.Node{}
		}
		root := r.finish(ctx, in, rec, "ok", spec.Name, reply)
		for _, n := range req.thread {
			msg := outbox.Message{Transport: in.Transport, Room: in.Room, ThreadRoot: root, Content: render.RenderLimit(r.cfg.MaxReplyBytes, n)}
			if _, err := r.send(ctx, msg); err != nil {
				log.Error().Err(err).Msg("Cannot queue a thread reply")
			}
		}
	}
	r.cfg.Metrics.CommandLatency.WithLabelValues(spec.Name).Observe(r.now().Sub(received).Seconds())
}

func (r *Router) timeout(spec Spec) time.Duration {
	if spec.Timeout > 0 {
		return spec.Timeout
	}
	return r.cfg.Timeout
}

// shownError is a failure the command already showed in its progress
// message: audited as an error, not told twice.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }

// errPanic hides a handler's panic value from the chat; it is in the log.
var errPanic = errors.New("internal error (details are in the bot's log)")

// guard runs fn with the command's timeout, turning a panic into an error.
func (r *Router) guard(ctx context.Context, spec Spec, req *Request, fn func(context.Context) error) (err error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout(spec))
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			zerolog.Ctx(ctx).Error().Str("command", req.Name).Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("Command handler panicked")
			err = errPanic
		}
	}()
	err = fn(ctx)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return err
}

// finish queues the reply, audits and counts the outcome; it returns the
// reply's outbox ID (0 if none).
func (r *Router) finish(ctx context.Context, in Incoming, rec store.AuditRecord, outcome, metricName string, reply render.Node) int64 {
	id := r.reply(ctx, in, reply)
	rec.Outcome = outcome
	rec.Duration = r.now().Sub(rec.At)
	r.audit(ctx, rec)
	if metricName == "" {
		metricName = "unknown" // never a user-typed name: it would explode the label set
	}
	r.cfg.Metrics.Commands.WithLabelValues(metricName, outcome).Inc()
	return id
}

// audit stores a record and mirrors it to the audit room, if any.
func (r *Router) audit(ctx context.Context, rec store.AuditRecord) {
	if err := r.cfg.Audit.Audit(ctx, rec); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("Cannot write audit record")
	}
	if r.cfg.AuditRoom == "" || rec.Access != Change.String() && rec.Command != "confirm" {
		return
	}
	line := render.Group(render.Code(rec.Actor), render.Text(" "+rec.Command+" "), render.Code(clip(rec.Args, 200)),
		render.Text(" → "+rec.Outcome), render.Text(auditDetail(rec)))
	if _, err := r.send(ctx, outbox.Message{Transport: r.cfg.AuditTransport, Room: r.cfg.AuditRoom, Content: render.RenderLimit(r.cfg.MaxReplyBytes, line)}); err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("Cannot mirror audit record")
	}
}

func auditDetail(rec store.AuditRecord) string {
	if rec.Detail == "" {
		return ""
	}
	return ": " + clip(rec.Detail, 300)
}

func (r *Router) reply(ctx context.Context, in Incoming, reply render.Node) int64 {
	if reply.IsZero() {
		return 0
	}
	msg := outbox.Message{Transport: in.Transport, Room: in.Room, ReplyTo: in.EventID, Content: render.RenderLimit(r.cfg.MaxReplyBytes, reply)}
	ids, err := r.send(ctx, msg)
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("Cannot queue reply")
		return 0
	}
	return ids[0]
}

func (r *Router) send(ctx context.Context, msgs ...outbox.Message) ([]int64, error) {
	return r.cfg.Replies.Send(ctx, msgs...)
}

func usageReply(req *Request, spec Spec, err error) render.Node {
	return render.Group(render.Text("⚠️ "+err.Error()+". Usage: "), render.Code(strings.TrimSpace(commandLine(req.Prefix, spec.Name)+" "+spec.Usage)))
}

func commandLine(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + " " + name
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
