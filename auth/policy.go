package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
)

// Policy applies the [policy] rules: it implements commands.Authorizer,
// and commands.Identifier for whoami. It is Vigie's authorizer with or
// without a directory.
//
// Public commands (help, ping, whoami; confirm and cancel, which are
// authorized as the change they confirm) are allowed to anyone. A command
// named by some rule is allowed when a rule naming it matches the room (no
// rooms: any room) and the user is in one of that rule's groups. A
// read-only command named by no rule is allowed to anyone when read_open is
// set, without asking LDAP; naming it in a rule restricts it. Anything
// else is refused: private reads (logs, audit), Vigie's state (ack,
// silence) and changes need a rule, so a directory.
//
// two_person belongs to a command in a room: if any rule naming the
// command for that room requires it, every run there needs an approver,
// whoever asks. NeedsApproval has no context to look the requester up
// with, and a rule that depends on who asks would be harder to read in
// the config than one that does not.
type Policy struct {
	readOpen bool
	rules    []rule
	dir      *Directory
}

var (
	_ commands.Authorizer = (*Policy)(nil)
	_ commands.Identifier = (*Policy)(nil)
)

type rule struct {
	commands  []string
	groups    []group
	rooms     []string
	twoPerson *bool   // nil: the command's own default
	approvers []group // who may approve; the rule's groups when none are configured
}

// group is a configured group DN, kept as written for messages and parsed
// for comparison.
type group struct {
	name string
	dn   *ldap.DN
}

// NewPolicy builds the policy. dir is nil when LDAP is not configured;
// then no rule may name groups, and only read-only commands can run (with
// read_open).
func NewPolicy(cfg config.Policy, dir *Directory) (*Policy, error) {
	if dir == nil && len(cfg.Rules) > 0 {
		return nil, errors.New("policy rules name LDAP groups, so ldap.url must be set")
	}
	p := &Policy{readOpen: cfg.ReadOpen, dir: dir}
	for i, r := range cfg.Rules {
		groups, err := parseGroups(r.Groups)
		if err != nil {
			return nil, fmt.Errorf("policy.rules[%d].groups: %w", i, err)
		}
		if len(groups) == 0 {
			return nil, fmt.Errorf("policy.rules[%d].groups: must name at least one group DN", i)
		}
		approvers, err := parseGroups(r.Approvers)
		if err != nil {
			return nil, fmt.Errorf("policy.rules[%d].approvers: %w", i, err)
		}
		if len(approvers) == 0 {
			approvers = groups
		}
		var twoPerson *bool
		if r.TwoPerson || r.TwoPersonSet { // true can only be written
			twoPerson = &r.TwoPerson
		}
		p.rules = append(p.rules, rule{commands: slices.Clone(r.Commands), groups: groups, rooms: slices.Clone(r.Rooms),
			twoPerson: twoPerson, approvers: approvers})
	}
	return p, nil
}

func parseGroups(names []string) ([]group, error) {
	groups := make([]group, 0, len(names))
	for _, name := range names {
		dn, err := ldap.ParseDN(name)
		if err != nil || len(dn.RDNs) == 0 {
			return nil, fmt.Errorf("%q is not a DN: %v", name, err)
		}
		groups = append(groups, group{name: name, dn: dn})
	}
	return groups, nil
}

// Authorize implements commands.Authorizer. StepRun may use the
// directory's cache; StepConfirm asks afresh; StepApprove asks afresh
// whether req.Sender is an approver of a two-person rule for the command
// here. The returned Principal is the user's entry whenever LDAP was
// asked, also along with a refusal.
func (p *Policy) Authorize(ctx context.Context, req *commands.Request, spec commands.Spec, step commands.Step) (commands.Principal, error) {
	if spec.Access == commands.Public {
		return commands.Principal{}, nil
	}
	named := p.rulesNaming(spec.Name)
	if len(named) == 0 {
		if spec.Access == commands.Read && p.readOpen && step != commands.StepApprove {
			return commands.Principal{}, nil
		}
		return commands.Principal{}, p.noRule(spec)
	}
	var here []rule
	var rooms []string
	for _, r := range named {
		if step == commands.StepApprove && !r.needsApproval(spec) {
			continue
		}
		if r.allowsRoom(req.Room) {
			here = append(here, r)
		}
		rooms = append(rooms, r.rooms...)
	}
	if len(here) == 0 {
		if step == commands.StepApprove {
			return commands.Principal{}, fmt.Errorf("%s needs no approval here", spec.Name)
		}
		slices.Sort(rooms)
		return commands.Principal{}, fmt.Errorf("%s is not allowed in this room (only in %s)", spec.Name, strings.Join(slices.Compact(rooms), ", "))
	}

	id, err := p.dir.Lookup(ctx, req.Sender, step != commands.StepRun)
	if err != nil {
		return commands.Principal{}, err
	}
	who := commands.Principal{DN: id.DN, Groups: id.Groups}
	var needed []string
	for _, r := range here {
		groups := r.groups
		if step == commands.StepApprove {
			groups = r.approvers
		}
		if inAny(id.Groups, groups) {
			return who, nil
		}
		for _, g := range groups {
			if !slices.Contains(needed, g.name) {
				needed = append(needed, g.name)
			}
		}
	}
	verb := "run"
	if step == commands.StepApprove {
		verb = "approve"
	}
	// Only the caller's own entry and the configured groups: nothing
	// about other users.
	return who, fmt.Errorf("you (%s) are not in any group allowed to %s %s here (needs %s)", id.DN, verb, spec.Name, strings.Join(needed, " or "))
}

// noRule says why a command no rule names is refused, and what would
// allow it.
func (p *Policy) noRule(spec commands.Spec) error {
	switch {
	case spec.Access == commands.Read && !p.readOpen:
		return fmt.Errorf("no policy rule allows %s (read-only commands are open to everyone only with policy.read_open = true)", spec.Name)
	case p.dir == nil:
		return fmt.Errorf("no policy rule allows %s: it needs one, and rules need a directory (ldap.url)", spec.Name)
	}
	return fmt.Errorf("no policy rule allows %s", spec.Name)
}

// needsApproval: the rule's two_person, or the command's default.
func (r rule) needsApproval(spec commands.Spec) bool {
	if r.twoPerson == nil {
		return spec.TwoPerson
	}
	return *r.twoPerson
}

// NeedsApproval implements commands.Authorizer: whether a rule naming the
// command for this room has two_person, or leaves it to a command that
// wants a second person by default.
func (p *Policy) NeedsApproval(req *commands.Request, spec commands.Spec) bool {
	for _, r := range p.rulesNaming(spec.Name) {
		if !r.allowsRoom(req.Room) {
			continue
		}
		if r.needsApproval(spec) {
			return true
		}
	}
	return false
}

// Identify returns a user's directory entry and groups, looked up
// afresh, for whoami. What they may run is what Authorize says.
func (p *Policy) Identify(ctx context.Context, matrixID string) (commands.Principal, error) {
	if p.dir == nil {
		return commands.Principal{}, errors.New("no directory (LDAP) is configured")
	}
	id, err := p.dir.Lookup(ctx, matrixID, true)
	if err != nil {
		return commands.Principal{}, err
	}
	return commands.Principal{DN: id.DN, Groups: id.Groups}, nil
}

func (p *Policy) rulesNaming(command string) []rule {
	var out []rule
	for _, r := range p.rules {
		if slices.Contains(r.commands, command) {
			out = append(out, r)
		}
	}
	return out
}

func (r rule) allowsRoom(room string) bool {
	return len(r.rooms) == 0 || slices.Contains(r.rooms, room)
}

// inAny reports whether one of the user's groups is one of groups, by DN
// (attribute types and values compared case-insensitively, spaces around
// separators ignored), never as strings.
func inAny(userGroups []string, groups []group) bool {
	for _, ug := range userGroups {
		dn, err := ldap.ParseDN(ug)
		if err != nil {
			continue
		}
		for _, g := range groups {
			if g.dn.EqualFold(dn) {
				return true
			}
		}
	}
	return false
}
