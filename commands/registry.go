// Package commands parses chat commands, finds their handler, checks the
// seam where authorization plugs in, runs the handler off the transport's
// loop with a timeout and panic recovery, and queues the reply. Every
// command lives in a file of its own.
package commands

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/internal/suggest"
	"github.com/vigie/vigie/render"
)

// Access says what a command reads or changes; authorization, the
// confirmation of changes and the audit key on it.
type Access int

const (
	// Public: tells about Vigie and the caller only (help, ping, whoami),
	// or authorizes itself (confirm, as the change it confirms; cancel,
	// the caller's own pending change): anyone may run it.
	Public Access = iota + 1
	// Read: reads the infrastructure or the incidents. By policy rule, or
	// open to anyone with policy.read_open.
	Read
	// Private: reads what not every room member may see (task output, the
	// audit log of every room). By policy rule only.
	Private
	// State: changes Vigie's own state, what the rooms are told
	// (acknowledgements, silences). By policy rule only.
	State
	// Change: changes the infrastructure, after a preview and a
	// confirmation. By policy rule only.
	Change
)

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Read:
		return "read"
	case Private:
		return "private"
	case State:
		return "state"
	case Change:
		return "change"
	}
	return "unknown"
}

// describe says what a command of this access does and who may run it.
func (a Access) describe() string {
	switch a {
	case Public:
		return "anyone"
	case Read:
		return "reads only: by policy rule, or anyone with policy.read_open"
	case Private:
		return "reads what not everyone may see: by policy rule"
	case State:
		return "changes what Vigie tells the rooms: by policy rule, audited"
	case Change:
		return "changes the infrastructure: by policy rule, previewed, confirmed and audited"
	}
	return "unknown"
}

// Spec describes a command to the router and to help.
type Spec struct {
	Name    string
	Aliases []string
	Access  Access
	Summary string        // one line for the command list
	Usage   string        // arguments, e.g. "[command]"
	Help    string        // longer text for help <command>
	MinArgs int           // positional arguments accepted
	MaxArgs int           // -1: any number
	Options []string      // accepted key=value option names
	Timeout time.Duration // 0: the router's default
	// TwoPerson: a second person approves it unless the policy rule that
	// allows it says two_person = false (restores).
	TwoPerson bool
}

// Request is one command invocation as the handler sees it.
type Request struct {
	Invocation
	Transport string
	Room      string
	EventID   string
	Sender    string // Matrix user ID, or the console's local identity
	Prefix    string // how commands are written in this transport, for help texts
	ReactsTo  int64  // for a reaction: the outbox ID of the message reacted to
	Received  time.Time

	clock  clock.Clock   // the router's
	thread []render.Node // posted in the thread of the reply
	settle func()        // tells the transport the command no longer needs waiting for
	live   Progress      // the message a long command keeps up to date
}

// Now is the current time on the router's clock.
func (r *Request) Now() time.Time { return clock.OrSystem(r.clock).Now() }

// Progress is one message, a reply to the command, that a long command
// edits as it goes and ends with its result (then it returns no reply).
func (r *Request) Progress() Progress { return r.live }

// InThread adds a message to post in the thread under the command's reply:
// long output that would drown the room.
func (r *Request) InThread(n render.Node) { r.thread = append(r.thread, n) }

// Command is anything the registry holds: a Handler, or a Confirmable.
type Command interface {
	Spec() Spec
}

// Handler runs one command. Run must return when ctx is done.
type Handler interface {
	Command
	Run(ctx context.Context, req *Request) (render.Node, error)
}

// UsageError is a mistake in the arguments; its reply shows the usage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error { return &UsageError{Msg: fmt.Sprintf(format, args...)} }

// Registry maps names and aliases to handlers.
type Registry struct {
	byName map[string]Command
	names  []string // primary names, sorted
}

// NewRegistry creates a registry with the given handlers.
func NewRegistry(handlers ...Command) (*Registry, error) {
	r := &Registry{byName: map[string]Command{}}
	for _, h := range handlers {
		if err := r.Register(h); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a command; names and aliases must be unique.
func (r *Registry) Register(h Command) error {
	s := h.Spec()
	if s.Name == "" || s.Access == 0 {
		return fmt.Errorf("command %q: a name and an access level are required", s.Name)
	}
	switch h.(type) {
	case Handler, Confirmable:
	default:
		return fmt.Errorf("command %q: neither a Handler nor a Confirmable", s.Name)
	}
	for _, n := range append([]string{s.Name}, s.Aliases...) {
		if _, dup := r.byName[n]; dup {
			return fmt.Errorf("command name %q registered twice", n)
		}
		r.byName[n] = h
	}
	r.names = append(r.names, s.Name)
	sort.Strings(r.names)
	return nil
}

// Lookup finds a command by name or alias.
func (r *Registry) Lookup(name string) (Command, bool) {
	h, ok := r.byName[name]
	return h, ok
}

// Resolve finds the command of an invocation. A command named in two
// words ("backup report") takes precedence over the first word's command
// with that argument; the invocation it returns has the full name and the
// remaining arguments.
func (r *Registry) Resolve(inv Invocation) (Command, Invocation, bool) {
	if len(inv.Args) > 0 {
		if h, ok := r.byName[inv.Name+" "+inv.Args[0]]; ok {
			inv.Name, inv.Args = inv.Name+" "+inv.Args[0], inv.Args[1:]
			return h, inv, true
		}
	}
	h, ok := r.byName[inv.Name]
	return h, inv, ok
}

// Suggest returns the known name closest to a mistyped one.
func (r *Registry) Suggest(name string) (string, bool) {
	all := make([]string, 0, len(r.byName))
	for n := range r.byName {
		all = append(all, n)
	}
	slices.Sort(all) // deterministic tie-breaking
	return suggest.Closest(name, all)
}

// Names returns every command's primary name, sorted.
func (r *Registry) Names() []string { return slices.Clone(r.names) }

// Specs returns every command's spec, sorted by name.
func (r *Registry) Specs() []Spec {
	out := make([]Spec, len(r.names))
	for i, n := range r.names {
		out[i] = r.byName[n].Spec()
	}
	return out
}

// validate checks arguments and options against the spec.
func (s Spec) validate(inv Invocation) error {
	switch {
	case len(inv.Args) < s.MinArgs:
		return Usagef("%s needs at least %d argument(s), got %d", s.Name, s.MinArgs, len(inv.Args))
	case s.MaxArgs >= 0 && len(inv.Args) > s.MaxArgs:
		return Usagef("%s takes at most %d argument(s), got %d", s.Name, s.MaxArgs, len(inv.Args))
	}
	for k := range inv.Options {
		if slices.Contains(s.Options, k) {
			continue
		}
		if len(s.Options) == 0 {
			return Usagef("%s takes no key=value options, got %q", s.Name, k)
		}
		if near, ok := suggest.Closest(k, s.Options); ok {
			return Usagef("unknown option %q (did you mean %q?)", k, near)
		}
		return Usagef("unknown option %q; %s accepts %v", k, s.Name, s.Options)
	}
	return nil
}
