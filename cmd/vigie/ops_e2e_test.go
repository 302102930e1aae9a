package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/fakenomad"
	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

const opsLDIF = `dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Ops

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Dev

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Ops

dn: cn=deployers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: deployers
member: uid=alice,ou=people,dc=example,dc=org
member: uid=carol,ou=people,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: ops
member: uid=alice,ou=people,dc=example,dc=org
member: uid=carol,ou=people,dc=example,dc=org
`

// useDirectory starts slapd with opsLDIF and points the bot's config at
// it, under the policy config.example.toml ships.
func (e *matrixEnv) useDirectory(t *testing.T) *testenv.Slapd {
	t.Helper()
	ldap := testenv.StartSlapd(t, opsLDIF)
	pw := filepath.Join(e.dir, "ldap-password")
	if err := os.WriteFile(pw, []byte(ldap.AdminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf(`[ldap]
url = %q
bind_dn = %q
bind_password_file = %q
timeout = "1s"
user_base_dn = "ou=people,dc=example,dc=org"
localpart_domains = ["localhost"]
%s`, ldap.URL, ldap.AdminDN, pw, examplePolicy(t))
	if err := os.WriteFile(e.config, append(cfg, section...), 0o600); err != nil {
		t.Fatal(err)
	}
	return ldap
}

// examplePolicy is the [policy] section of config.example.toml, as shipped.
func examplePolicy(t *testing.T) string {
	t.Helper()
	example, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(example)
	start, end := strings.Index(s, "\n[policy]\n"), strings.Index(s, "\n[alerts]\n")
	if start < 0 || end < start || !strings.Contains(s[start:end], "[[policy.rules]]") {
		t.Fatal("config.example.toml has no [policy] section with rules before [alerts]")
	}
	return s[start:end]
}

var confirmCode = regexp.MustCompile(`confirm (\d{6})`)

// replyWith waits for a bot reply to cmd containing want and returns it.
func (e *matrixEnv) replyWith(t *testing.T, room string, cmd, want string) string {
	t.Helper()
	var body string
	e.alice.WaitForMessages(t, idRoom(room), 30*time.Second, func(msgs []*event.Event) bool {
		for _, m := range msgs {
			c := m.Content.AsMessage()
			if m.Sender == e.botID && c.RelatesTo.GetReplyTo().String() == cmd && strings.Contains(c.Body, want) {
				body = c.Body
				return true
			}
		}
		return false
	})
	return body
}

func TestDeployFromMatrixAuthorizedByLDAP(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	ldap := e.useDirectory(t)
	nomad := fakenomad.New(t, fakenomad.Config{})
	nomad.SetDeploymentStep(100 * time.Millisecond)
	nomad.AddJob(fakenomad.ShopJob())
	room := e.alice.CreateRoom(t, false, e.botID, e.bob.ID)
	e.bob.JoinRoom(t, room)

	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("[nomad]\naddress = %q\nwatch = false\n[consul]\nwatch = false\n", nomad.URL)
	if err := os.WriteFile(e.config, append(cfg, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	bot, _ := e.start(t)
	e.alice.WaitForJoin(t, room, e.botID, 30*time.Second)
	const image = "registry.example.org/shop/app:1.5.0"
	deploy := "!vigie deploy shop image=" + image + " task=app"

	// Allowed: preview, confirm, live progress, result.
	ev := e.alice.SendText(t, room, deploy)
	preview := e.replyWith(t, room.String(), ev.String(), "Nomad's plan")
	if !strings.Contains(preview, "frontend/app: registry.example.org/shop/app:1.4.2 → "+image) {
		t.Fatalf("preview:\n%s", preview)
	}
	code := confirmCode.FindStringSubmatch(preview)[1]
	confirm := e.alice.SendText(t, room, "!vigie confirm "+code)
	result := e.replyWith(t, room.String(), confirm.String(), "deployed")
	if !strings.HasPrefix(result, "✅ shop version 1 deployed in") {
		t.Fatalf("result: %s", result)
	}
	msgs := e.alice.Messages(t, room)
	var progressEdits int
	for _, m := range msgs {
		c := m.Content.AsMessage()
		if m.Sender == e.botID && c.RelatesTo.GetReplaceID() != "" && c.NewContent != nil && strings.Contains(c.NewContent.Body, "shop version 1: deployment") {
			progressEdits++
		}
	}
	if progressEdits < 2 {
		t.Fatalf("the progress message was edited %d times", progressEdits)
	}
	if got := nomad.Job("shop").TaskGroups[0].Tasks[0].Config["image"]; got != image {
		t.Fatalf("Nomad runs %v", got)
	}

	// Outside the group: refused, and the refusal is audited.
	ev = e.bob.SendText(t, room, deploy)
	e.replyWith(t, room.String(), ev.String(), "⛔ Not allowed: deploy — you (uid=bob,ou=people,dc=example,dc=org) are not in any group")
	st, err := store.Open(t.Context(), e.dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	log, err := st.AuditLog(t.Context(), store.AuditFilter{Limit: 5, Actor: e.bob.ID.String()})
	if err != nil || len(log) == 0 || log[0].Outcome != "denied" || log[0].Principal != "uid=bob,ou=people,dc=example,dc=org" {
		t.Fatalf("bob's audit: %+v %v", log, err)
	}
	ev = e.alice.SendText(t, room, "!vigie whoami")
	if who := e.replyWith(t, room.String(), ev.String(), "uid=alice"); !strings.Contains(who, "cn=deployers,ou=groups,dc=example,dc=org") {
		t.Fatalf("whoami: %s", who)
	}

	// LDAP down: a preview may come from the short cache, but applying a
	// change checks afresh: denied with a clear reply, never a crash.
	ldap.Stop()
	ev = e.alice.SendText(t, room, "!vigie deploy shop image=registry.example.org/shop/app:1.6.0 task=app")
	code = confirmCode.FindStringSubmatch(e.replyWith(t, room.String(), ev.String(), "Nomad's plan"))[1]
	confirm = e.alice.SendText(t, room, "!vigie confirm "+code)
	e.replyWith(t, room.String(), confirm.String(), "not applied: cannot check your groups right now")
	if got := nomad.Job("shop").TaskGroups[0].Tasks[0].Config["image"]; got != image {
		t.Fatalf("applied without LDAP: Nomad runs %v", got)
	}
	ev = e.alice.SendText(t, room, "!vigie ping")
	e.replyWith(t, room.String(), ev.String(), "pong")
	ldap.Restart(t)

	// An outsider's ✅ on alice's preview applies nothing.
	ev = e.alice.SendText(t, room, "!vigie scale shop frontend 3")
	preview = e.replyWith(t, room.String(), ev.String(), "shop/frontend: 2 → 3")
	var previewID id.EventID
	for _, m := range e.alice.Messages(t, room) {
		if c := m.Content.AsMessage(); m.Sender == e.botID && c.RelatesTo.GetReplyTo() == ev && strings.Contains(c.Body, "shop/frontend: 2 → 3") {
			previewID = m.ID
		}
	}
	reaction, err := e.bob.Client.SendReaction(t.Context(), room, previewID, "✅")
	if err != nil {
		t.Fatal(err)
	}
	e.replyWith(t, room.String(), reaction.EventID.String(), "only @alice:localhost, who asked for it, can confirm this scale")
	// The requester who left the group since the preview is refused.
	code = confirmCode.FindStringSubmatch(preview)[1]
	if err := ldap.Apply(t.Context(), "dn: cn=deployers,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n"); err != nil {
		t.Fatal(err)
	}
	confirm = e.alice.SendText(t, room, "!vigie confirm "+code)
	e.replyWith(t, room.String(), confirm.String(), "not applied: you (uid=alice,ou=people,dc=example,dc=org) are not in any group allowed to run scale")
	if n := *nomad.Job("shop").TaskGroups[0].Count; n != 2 {
		t.Fatalf("scaled to %d by a former deployer", n)
	}
	bot.stop(t)
}

func idRoom(s string) id.RoomID { return id.RoomID(s) }
