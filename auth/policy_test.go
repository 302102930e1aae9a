package auth

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie/vigie/commands"
	"github.com/vigie/vigie/config"
)

const (
	opsRoom   = "!ops:example.org"
	otherRoom = "!random:example.org"
)

var (
	deploy  = commands.Spec{Name: "deploy", Access: commands.Change}
	restart = commands.Spec{Name: "restart", Access: commands.Change}
	scale   = commands.Spec{Name: "scale", Access: commands.Change}
	drain   = commands.Spec{Name: "drain", Access: commands.Change}
	status  = commands.Spec{Name: "status", Access: commands.Read}
	audit   = commands.Spec{Name: "audit", Access: commands.Private}
	logs    = commands.Spec{Name: "logs", Access: commands.Private}
	ack     = commands.Spec{Name: "ack", Access: commands.State}
	ping    = commands.Spec{Name: "ping", Access: commands.Public}
)

// testPolicy: deploy and rollback for deployers in the ops room only (the
// group written with other case and spacing than the server's), scale for
// deployers anywhere with an approver from approvers, restart for
// deployers anywhere with an approver from deployers, audit (read-only)
// for admins only, and every other read-only command open.
func testPolicy() config.Policy {
	return config.Policy{
		ReadOpen: true,
		Rules: []config.PolicyRule{
			{Commands: []string{"deploy", "rollback"}, Groups: []string{"CN=Deployers, OU=groups,dc=example, DC=ORG"}, Rooms: []string{opsRoom}},
			{Commands: []string{"scale"}, Groups: []string{deployers}, TwoPerson: true, Approvers: []string{approvers}},
			{Commands: []string{"restart"}, Groups: []string{deployers}, TwoPerson: true},
			{Commands: []string{"audit"}, Groups: []string{admins}},
		},
	}
}

func newPolicy(t *testing.T, cfg config.Policy, dir *Directory) *Policy {
	t.Helper()
	p, err := NewPolicy(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(user, room string) *commands.Request {
	return &commands.Request{Sender: "@" + user + ":example.org", Room: room}
}

func TestPolicyWithoutLDAP(t *testing.T) {
	open := newPolicy(t, config.Policy{ReadOpen: true}, nil)
	if _, err := open.Authorize(t.Context(), request("bob", opsRoom), status, commands.StepRun); err != nil {
		t.Errorf("read_open status: %v", err)
	}
	_, err := open.Authorize(t.Context(), request("bob", opsRoom), deploy, commands.StepRun)
	wantDenial(t, err, "no policy rule allows deploy")
	if _, err := open.Identify(t.Context(), "@bob:example.org"); err == nil {
		t.Error("Identify without a directory succeeded")
	}

	// read_open opens reads, not private reads nor Vigie's state.
	for _, spec := range []commands.Spec{logs, audit, ack} {
		_, err = open.Authorize(t.Context(), request("bob", opsRoom), spec, commands.StepRun)
		wantDenial(t, err, "no policy rule allows "+spec.Name+": it needs one, and rules need a directory (ldap.url)")
	}

	// Honoured without LDAP too: reads are closed by default.
	closed := newPolicy(t, config.Policy{}, nil)
	_, err = closed.Authorize(t.Context(), request("bob", opsRoom), status, commands.StepRun)
	wantDenial(t, err, "no policy rule allows status (read-only commands are open to everyone only with policy.read_open = true)")
	if _, err := closed.Authorize(t.Context(), request("bob", opsRoom), ping, commands.StepRun); err != nil {
		t.Errorf("public command refused: %v", err)
	}

	if _, err := NewPolicy(testPolicy(), nil); err == nil {
		t.Error("rules naming groups accepted without a directory")
	}
}

func TestNewPolicyRejectsBadDN(t *testing.T) {
	for _, r := range []config.PolicyRule{
		{Commands: []string{"deploy"}, Groups: []string{"cn=ok,dc=example,dc=org", "cn=bad,=x"}},
		{Commands: []string{"deploy"}, Groups: []string{deployers}, Approvers: []string{"cn"}},
		{Commands: []string{"deploy"}},
	} {
		if _, err := NewPolicy(config.Policy{Rules: []config.PolicyRule{r}}, &Directory{}); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
}

func TestPolicy(t *testing.T) {
	s := startDirectory(t)
	d := newDirectory(t, ldapConfig(s))
	p := newPolicy(t, testPolicy(), d)

	for _, tc := range []struct {
		user string
		room string
		spec commands.Spec
		step commands.Step
		err  string // "" : allowed
	}{
		{"alice", opsRoom, deploy, commands.StepRun, ""},
		{"alice", opsRoom, deploy, commands.StepConfirm, ""},
		{"alice", otherRoom, deploy, commands.StepRun, "deploy is not allowed in this room (only in !ops:example.org)"},
		{"élodie", opsRoom, deploy, commands.StepRun, ""},
		{"bob", opsRoom, deploy, commands.StepRun,
			"you (uid=bob,ou=people,dc=example,dc=org) are not in any group allowed to run deploy here (needs CN=Deployers, OU=groups,dc=example, DC=ORG)"},
		{"nobody", opsRoom, deploy, commands.StepRun, "no LDAP entry for @nobody:example.org"},
		{"*", opsRoom, deploy, commands.StepRun, "not in any group allowed to run deploy"},

		{"bob", otherRoom, status, commands.StepRun, ""},
		{"nobody", otherRoom, status, commands.StepRun, ""},
		{"bob", opsRoom, audit, commands.StepRun, "not in any group allowed to run audit here (needs " + admins + ")"},
		{"frank", opsRoom, audit, commands.StepRun, ""},
		{"alice", opsRoom, drain, commands.StepRun, "no policy rule allows drain"},

		{"alice", otherRoom, scale, commands.StepRun, ""},
		{"alice", otherRoom, scale, commands.StepApprove, "not in any group allowed to approve scale here (needs " + approvers + ")"},
		{"erin", otherRoom, scale, commands.StepApprove, ""},
		{"erin", otherRoom, scale, commands.StepRun, "not in any group allowed to run scale"},
		{"élodie", otherRoom, restart, commands.StepApprove, ""},
		{"erin", otherRoom, restart, commands.StepApprove, "allowed to approve restart here (needs " + deployers + ")"},
		{"alice", opsRoom, deploy, commands.StepApprove, "deploy needs no approval here"},
	} {
		who, err := p.Authorize(t.Context(), request(tc.user, tc.room), tc.spec, tc.step)
		name := tc.user + " " + tc.spec.Name + " in " + tc.room
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s (step %d): %v", name, tc.step, err)
		case tc.err != "":
			if err == nil {
				t.Errorf("%s (step %d): allowed, want %q", name, tc.step, tc.err)
			} else if !strings.Contains(err.Error(), tc.err) || errors.Is(err, commands.ErrUnavailable) {
				t.Errorf("%s (step %d): %q, want %q", name, tc.step, err, tc.err)
			}
		case tc.spec.Access == commands.Change && who.DN == "":
			t.Errorf("%s: allowed without a principal", name)
		}
	}

	for _, tc := range []struct {
		spec commands.Spec
		room string
		want bool
	}{
		{deploy, opsRoom, false},
		{scale, opsRoom, true},
		{restart, otherRoom, true},
		{status, opsRoom, false},
	} {
		if got := p.NeedsApproval(request("alice", tc.room), tc.spec); got != tc.want {
			t.Errorf("NeedsApproval(%s in %s) = %v", tc.spec.Name, tc.room, got)
		}
	}

	t.Run("Identify", func(t *testing.T) {
		who, err := p.Identify(t.Context(), "@alice:example.org")
		if err != nil {
			t.Fatal(err)
		}
		if !sameDN(t, who.DN, "uid=alice,"+people) || !slices.Contains(who.Groups, deployers) {
			t.Errorf("principal %+v", who)
		}
		_, err = p.Identify(t.Context(), "@nobody:example.org")
		wantDenial(t, err, "no LDAP entry")
	})

	t.Run("LDAP down", func(t *testing.T) {
		s.Stop()
		defer s.Restart(t)
		// dave was never looked up, so the cache cannot answer.
		if _, err := p.Authorize(t.Context(), request("dave", opsRoom), audit, commands.StepRun); !errors.Is(err, commands.ErrUnavailable) {
			t.Errorf("audit while LDAP is down: %v, want ErrUnavailable", err)
		}
		if _, err := p.Authorize(t.Context(), request("alice", opsRoom), deploy, commands.StepConfirm); !errors.Is(err, commands.ErrUnavailable) {
			t.Errorf("confirm while LDAP is down: %v, want ErrUnavailable", err)
		}
		if _, err := p.Authorize(t.Context(), request("bob", opsRoom), status, commands.StepRun); err != nil {
			t.Errorf("read_open status while LDAP is down: %v", err)
		}
	})
}

// Confirmations are checked afresh: a user removed from the group since
// the command arrived cannot confirm it.
func TestConfirmIsFresh(t *testing.T) {
	s := startDirectory(t)
	p := newPolicy(t, config.Policy{Rules: []config.PolicyRule{{Commands: []string{"deploy"}, Groups: []string{cacheTest}}}},
		newDirectory(t, ldapConfig(s)))
	req := request("alice", opsRoom)
	if _, err := p.Authorize(t.Context(), req, deploy, commands.StepRun); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), "dn: "+cacheTest+"\nchangetype: modify\ndelete: member\nmember: uid=alice,"+people+"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authorize(t.Context(), req, deploy, commands.StepRun); err != nil {
		t.Errorf("run within the cache TTL: %v", err)
	}
	_, err := p.Authorize(t.Context(), req, deploy, commands.StepConfirm)
	wantDenial(t, err, "not in any group allowed to run deploy")
	_, err = p.Authorize(t.Context(), req, deploy, commands.StepRun)
	wantDenial(t, err, "not in any group allowed to run deploy")
}

// A command that wants a second person by default (restore) gets one
// under a rule that says nothing, and not under one that says
// two_person = false.
func TestTwoPersonDefault(t *testing.T) {
	dir, err := NewDirectory(config.LDAP{URL: "ldap://127.0.0.1:1", BindDN: "cn=vigie,dc=example,dc=org", UserBaseDN: "dc=example,dc=org",
		Identity: "localpart", LocalpartAttr: "uid", LocalpartDomains: []string{"example.org"}, GroupStrategy: "memberOf", Timeout: config.Duration{Duration: time.Second}, BindPassword: config.NewSecret("pw", "test")})
	if err != nil {
		t.Fatal(err)
	}
	restore := commands.Spec{Name: "restore", Access: commands.Change, TwoPerson: true}
	prune := commands.Spec{Name: "prune", Access: commands.Change}
	for _, tc := range []struct {
		rule      config.PolicyRule
		spec      commands.Spec
		wantTwice bool
	}{
		{config.PolicyRule{Commands: []string{"restore"}, Groups: []string{"cn=dba,dc=example,dc=org"}}, restore, true},
		{config.PolicyRule{Commands: []string{"restore"}, Groups: []string{"cn=dba,dc=example,dc=org"}, TwoPersonSet: true}, restore, false},
		{config.PolicyRule{Commands: []string{"prune"}, Groups: []string{"cn=dba,dc=example,dc=org"}}, prune, false},
		{config.PolicyRule{Commands: []string{"prune"}, Groups: []string{"cn=dba,dc=example,dc=org"}, TwoPerson: true}, prune, true},
	} {
		p, err := NewPolicy(config.Policy{Rules: []config.PolicyRule{tc.rule}}, dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.NeedsApproval(&commands.Request{Room: "!ops:example.org"}, tc.spec); got != tc.wantTwice {
			t.Errorf("%s under %+v: NeedsApproval = %v", tc.spec.Name, tc.rule, got)
		}
	}
}
