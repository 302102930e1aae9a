package commands

import (
	"context"
	"strings"
	"testing"
)

type identifier struct{}

func (identifier) Identify(context.Context, string) (Principal, error) {
	return Principal{DN: "uid=alice,ou=people,dc=example,dc=org", Groups: []string{"cn=deployers,ou=groups,dc=example,dc=org"}}, nil
}

func TestAuditAndWhoAmI(t *testing.T) {
	f := newConfirmFixture(t)
	for _, c := range []Command{&Audit{Log: f.st}, &WhoAmI{Directory: identifier{}, Registry: f.router.cfg.Registry, Authorizer: f.pol}} {
		if err := f.router.cfg.Registry.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	f.say(t, "@alice:x", "ping")
	f.say(t, "@bob:x", "bump web")
	msgs := f.say(t, "@alice:x", "audit 5")
	out := plains(msgs)
	if !strings.Contains(out, "Audit: 2 record(s)") || !strings.Contains(out, "@bob:x bump bump web → denied") || !strings.Contains(out, "@alice:x ping ping → ok") {
		t.Fatalf("audit:\n%s", out)
	}
	if out := plains(f.say(t, "@alice:x", "audit user=@bob:x")); !strings.Contains(out, "1 record(s)") {
		t.Fatalf("filtered:\n%s", out)
	}
	if out := plains(f.say(t, "@alice:x", "audit 500")); !strings.Contains(out, "give a number of records from 1 to 100") {
		t.Fatalf("bad n:\n%s", out)
	}
	out = plains(f.say(t, "@alice:x", "whoami"))
	if !strings.Contains(out, "LDAP entry uid=alice,ou=people,dc=example,dc=org") || !strings.Contains(out, "- cn=deployers") || !strings.Contains(out, "You may run here: audit, bump, cancel, confirm, ping, whoami") {
		t.Fatalf("whoami:\n%s", out)
	}
}

func TestWhoAmIAsksThePolicy(t *testing.T) {
	f := newConfirmFixture(t)
	if err := f.router.cfg.Registry.Register(&WhoAmI{Registry: f.router.cfg.Registry, Authorizer: f.pol}); err != nil {
		t.Fatal(err)
	}
	// bob is in no group: read commands only; no directory configured.
	out := plains(f.say(t, "@bob:x", "whoami"))
	if !strings.Contains(out, "No directory (LDAP) is configured") || !strings.Contains(out, "You may run here: cancel, confirm, ping, whoami") {
		t.Fatalf("whoami:\n%s", out)
	}
}
