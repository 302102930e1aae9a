package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/internal/testenv"
	"github.com/vigie/vigie/store"
)

const botLocalpart = "vigie"

// matrixEnv is a real Dendrite, a fault-injecting proxy in front of it for
// the bot, the bot's config, and two users: alice may invite the bot, bob
// may not.
type matrixEnv struct {
	owner   *testing.T // bot processes live as long as this test
	hs      *testenv.Homeserver
	proxy   *testenv.FaultProxy
	alice   *testenv.User
	bob     *testenv.User
	botID   id.UserID
	dir     string
	config  string
	listen  string
	dataDir string
}

func newMatrixEnv(t *testing.T) *matrixEnv {
	hs := testenv.StartDendrite(t)
	e := &matrixEnv{owner: t, hs: hs, proxy: testenv.StartFaultProxy(t, hs.URL), dir: t.TempDir(), listen: testenv.FreeLoopbackAddr(t)}
	e.botID = hs.Register(t, botLocalpart, "bot-password-1").ID
	e.alice = hs.RegisterE2EE(t, "alice", "alice-password-1")
	e.bob = hs.Register(t, "bob", "bob-password-1")
	e.dataDir = filepath.Join(e.dir, "data")
	write := func(name, content string) string {
		p := filepath.Join(e.dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.config = write("vigie.toml", fmt.Sprintf(`data_dir = %q
[log]
level = "debug"
format = "json"
[http]
listen = %q
[matrix]
homeserver = %q
user_id = %q
password_file = %q
pickle_key_file = %q
allowed_inviters = [%q]
event_grace = "1s"
[outbox]
min_backoff = "100ms"
max_backoff = "1s"
`, e.dataDir, e.listen, e.proxy.URL, e.botID, write("password", "bot-password-1"),
		write("pickle", "0123456789abcdef0123456789abcdef"), e.alice.ID))
	return e
}

func (e *matrixEnv) start(t *testing.T) (*botProcess, time.Duration) {
	p := startBot(e.owner, e.config)
	return p, p.waitReady(t, e.listen)
}

// repliesTo returns the bot's m.notice replies to a command event.
func repliesTo(msgs []*event.Event, bot id.UserID, cmd id.EventID) []*event.Event {
	var out []*event.Event
	for _, m := range msgs {
		c := m.Content.AsMessage()
		if m.Sender == bot && c.RelatesTo.GetReplyTo() == cmd {
			out = append(out, m)
		}
	}
	return out
}

func hasReply(bot id.UserID, cmd id.EventID, contains string) func([]*event.Event) bool {
	return func(msgs []*event.Event) bool {
		for _, r := range repliesTo(msgs, bot, cmd) {
			if strings.Contains(r.Content.AsMessage().Body, contains) {
				return true
			}
		}
		return false
	}
}

// ping sends a ping and returns how long the pong took to arrive.
func (e *matrixEnv) ping(t *testing.T, room id.RoomID, within time.Duration) (id.EventID, time.Duration) {
	t.Helper()
	start := time.Now()
	ev := e.alice.SendText(t, room, "!vigie ping")
	e.alice.WaitForMessages(t, room, within, hasReply(e.botID, ev, "pong"))
	return ev, time.Since(start)
}

// assertOneReplyEach reads the whole room history and checks that every
// command got exactly one reply, and that the bot sent nothing else.
func (e *matrixEnv) assertOneReplyEach(t *testing.T, room id.RoomID, answered []id.EventID, unanswered ...id.EventID) {
	t.Helper()
	msgs := e.alice.Messages(t, room)
	botMessages := 0
	for _, m := range msgs {
		if m.Sender == e.botID {
			botMessages++
		}
	}
	for _, ev := range answered {
		if n := len(repliesTo(msgs, e.botID, ev)); n != 1 {
			t.Errorf("command %s got %d replies, want exactly 1", ev, n)
		}
	}
	for _, ev := range unanswered {
		if n := len(repliesTo(msgs, e.botID, ev)); n != 0 {
			t.Errorf("command %s sent before the start got %d replies, want none", ev, n)
		}
	}
	if botMessages != len(answered) {
		t.Errorf("the bot sent %d messages for %d answered commands", botMessages, len(answered))
	}
}

func TestMatrixEndToEnd(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	bot, ready := e.start(t)
	t.Logf("FIGURE start to first completed sync: %v (race detector: %v)", ready, raceEnabled)
	t.Logf("FIGURE RSS after first sync: %d KiB (race detector: %v)", bot.rssKiB(), raceEnabled)

	plain := e.alice.CreateRoom(t, false, e.botID)
	e.alice.WaitForJoin(t, plain, e.botID, 30*time.Second)
	var answered, unanswered []id.EventID

	t.Run("ping in a plain room within 2s", func(t *testing.T) {
		ev, took := e.ping(t, plain, 2*time.Second)
		answered = append(answered, ev)
		t.Logf("FIGURE ping round trip, plain room: %v", took)
		reply := repliesTo(e.alice.WaitForMessages(t, plain, time.Second, hasReply(e.botID, ev, "pong")), e.botID, ev)[0]
		c := reply.Content.AsMessage()
		if c.MsgType != event.MsgNotice || c.Format != event.FormatHTML || c.FormattedBody != "pong" {
			t.Fatalf("reply is not an HTML notice: %+v", c)
		}
	})

	t.Run("ignores notices, edits and its own messages", func(t *testing.T) {
		ctx := t.Context()
		notice, err := e.alice.Client.SendNotice(ctx, plain, "!vigie ping")
		if err != nil {
			t.Fatal(err)
		}
		edit := &event.MessageEventContent{MsgType: event.MsgText, Body: "!vigie ping"}
		edit.SetEdit(answered[0])
		editResp, err := e.alice.Client.SendMessageEvent(ctx, plain, event.EventMessage, edit)
		if err != nil {
			t.Fatal(err)
		}
		// A later command is answered, so the two before it were seen and ignored.
		ev := e.alice.SendText(t, plain, "!vigie help ping")
		answered = append(answered, ev)
		msgs := e.alice.WaitForMessages(t, plain, 5*time.Second, hasReply(e.botID, ev, "check that Vigie is alive"))
		if n := len(repliesTo(msgs, e.botID, notice.EventID)) + len(repliesTo(msgs, e.botID, editResp.EventID)); n != 0 {
			t.Fatalf("answered a notice or an edit (%d replies)", n)
		}
	})

	t.Run("bad input gets a clear reply", func(t *testing.T) {
		ev := e.alice.SendText(t, plain, `!vigie help "ping`)
		answered = append(answered, ev)
		e.alice.WaitForMessages(t, plain, 5*time.Second, hasReply(e.botID, ev, "unterminated quote"))

		ev = e.alice.SendText(t, plain, "!vigie pnig")
		answered = append(answered, ev)
		e.alice.WaitForMessages(t, plain, 5*time.Second, hasReply(e.botID, ev, "Did you mean !vigie ping?"))

		long := "!vigie <b>" + strings.Repeat("x", 50000)
		ev = e.alice.SendText(t, plain, long)
		answered = append(answered, ev)
		msgs := e.alice.WaitForMessages(t, plain, 5*time.Second, hasReply(e.botID, ev, "truncated"))
		c := repliesTo(msgs, e.botID, ev)[0].Content.AsMessage()
		if len(c.Body) > 16000 || len(c.FormattedBody) > 16000 || strings.Contains(c.FormattedBody, "<b>") {
			t.Fatalf("reply to a long message: body %d bytes, html %d bytes", len(c.Body), len(c.FormattedBody))
		}
	})

	t.Run("refuses invitations from others", func(t *testing.T) {
		room := e.bob.CreateRoom(t, false, e.botID)
		deadline := time.Now().Add(20 * time.Second)
		for {
			members, err := e.bob.Client.Members(t.Context(), room)
			if err != nil {
				t.Fatal(err)
			}
			membership := event.Membership("")
			for _, m := range members.Chunk {
				if id.UserID(m.GetStateKey()) == e.botID {
					membership = m.Content.AsMember().Membership
				}
			}
			if membership == event.MembershipLeave {
				break
			}
			if membership == event.MembershipJoin || time.Now().After(deadline) {
				t.Fatalf("bot membership in bob's room: %q", membership)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("encrypted room works like a plain one", func(t *testing.T) {
		room := e.alice.CreateRoom(t, true, e.botID)
		e.alice.WaitForJoin(t, room, e.botID, 30*time.Second)
		ev, took := e.ping(t, room, 2*time.Second)
		t.Logf("FIGURE ping round trip, encrypted room (first message, key exchange included): %v", took)
		msgs := e.alice.Messages(t, room)
		replies := repliesTo(msgs, e.botID, ev)
		if len(replies) != 1 || !replies[0].Mautrix.WasEncrypted {
			t.Fatalf("want one encrypted reply, got %d (encrypted: %v)", len(replies), len(replies) == 1 && replies[0].Mautrix.WasEncrypted)
		}
		ev2, took := e.ping(t, room, 2*time.Second)
		t.Logf("FIGURE ping round trip, encrypted room: %v", took)
		e.assertOneReplyEach(t, room, []id.EventID{ev, ev2})
	})

	t.Run("restart: no duplicates, nothing sent before the start is run", func(t *testing.T) {
		bot.stop(t)
		before := e.alice.SendText(t, plain, "!vigie ping")
		time.Sleep(1500 * time.Millisecond) // longer than event_grace
		bot, _ = e.start(t)
		ev, _ := e.ping(t, plain, 5*time.Second)
		answered = append(answered, ev)
		unanswered = append(unanswered, before)
		e.assertOneReplyEach(t, plain, answered, unanswered...)
		if strings.Count(bot.log(), `"message":"Logged in"`) != 1 || !strings.Contains(bot.log(), "Ignoring a command sent before Vigie started") {
			t.Fatalf("restart log:\n%s", bot.logTail(30))
		}
	})

	t.Run("SIGKILL with messages in the outbox: each appears exactly once", func(t *testing.T) {
		// The first reply reaches the homeserver but its answer is lost, as
		// when the process dies mid-request; the others wait behind it.
		e.proxy.SwallowSends()
		var before map[string]int
		waitOutbox(t, e.dataDir, func(c map[string]int) bool { before = c; return true })
		var cmds []id.EventID
		for range 5 {
			cmds = append(cmds, e.alice.SendText(t, plain, "!vigie ping"))
		}
		// All five replies queued; the first may already be marked sent by its
		// echo, seen through /sync while its send request hangs.
		waitOutbox(t, e.dataDir, func(c map[string]int) bool {
			return c[store.StatePending]+c[store.StateSent] >= before[store.StateSent]+5 && c[store.StatePending] >= 4
		})
		if swallowed, _ := e.proxy.Counts(); swallowed < 1 {
			t.Fatal("no send was in flight")
		}
		bot.kill()
		e.proxy.Pass()
		bot, _ = e.start(t)
		waitOutbox(t, e.dataDir, func(c map[string]int) bool { return c[store.StatePending] == 0 })
		for _, ev := range cmds {
			e.alice.WaitForMessages(t, plain, 10*time.Second, hasReply(e.botID, ev, "pong"))
		}
		answered = append(answered, cmds...)
		e.assertOneReplyEach(t, plain, answered, unanswered...)
	})

	t.Run("rate limited: waits retry_after_ms, then delivers once", func(t *testing.T) {
		e.proxy.RateLimitSends(2, 700*time.Millisecond)
		start := time.Now()
		ev, took := e.ping(t, plain, 10*time.Second)
		answered = append(answered, ev)
		if took < 1400*time.Millisecond {
			t.Fatalf("pong after %v: the bot did not wait out two 700ms rate limits", took)
		}
		if _, limited := e.proxy.Counts(); limited != 2 {
			t.Fatalf("%d sends rate limited", limited)
		}
		t.Logf("delivered %v after two rate limits", time.Since(start))
		if m := metricsText(t, e.listen); !strings.Contains(m, `vigie_messages_retried_total{reason="rate_limited",transport="matrix"} 2`) {
			t.Fatalf("metrics:\n%s", m)
		}
	})

	bot.stop(t)
}

// waitOutbox polls the bot's own store, as an operator could with sqlite3.
func waitOutbox(t *testing.T, dataDir string, done func(map[string]int) bool) {
	t.Helper()
	st, err := store.Open(t.Context(), dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts, err := st.OutboxCounts(context.Background(), "matrix")
		if err != nil {
			t.Fatal(err)
		}
		if done(counts) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox stuck at %v", counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMatrixBadCredentialsAndUnreachableHomeserver(t *testing.T) {
	t.Parallel()
	e := newMatrixEnv(t)
	if err := os.WriteFile(filepath.Join(e.dir, "password"), []byte("wrong-password"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBot(t, e.config)
	if code := p.wait(t, 60*time.Second); code != 1 || !strings.Contains(p.log(), "homeserver "+e.proxy.URL+" refused the password of "+e.botID.String()) {
		t.Fatalf("wrong password: exit %d\n%s", code, p.logTail(10))
	}
	if strings.Contains(p.log(), "wrong-password") {
		t.Fatal("the password appears in the log")
	}

	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(e.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("syt_not_a_valid_token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenConfig := filepath.Join(e.dir, "token.toml")
	withToken := strings.Replace(string(cfg), "password_file = ", fmt.Sprintf("access_token_file = %q\n# password_file = ", tokenFile), 1)
	if err := os.WriteFile(tokenConfig, []byte(withToken), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startBot(t, tokenConfig)
	if code := p.wait(t, 60*time.Second); code != 1 || !strings.Contains(p.log(), "homeserver "+e.proxy.URL+" rejected the configured access token of "+e.botID.String()) {
		t.Fatalf("wrong token: exit %d\n%s", code, p.logTail(10))
	}
	if strings.Contains(p.log(), "syt_not_a_valid_token") {
		t.Fatal("the token appears in the log")
	}

	// Nothing listens there: the bot keeps retrying and says which URL.
	dead := "http://" + testenv.FreeLoopbackAddr(t)
	deadConfig := filepath.Join(e.dir, "dead.toml")
	if err := os.WriteFile(deadConfig, []byte(strings.Replace(string(cfg), e.proxy.URL, dead, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startBot(t, deadConfig)
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(p.log(), "homeserver unreachable, retrying") < 2 {
		if !p.running() || time.Now().After(deadline) {
			t.Fatalf("unreachable homeserver:\n%s", p.logTail(10))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(p.log(), `"homeserver":"`+dead+`"`) {
		t.Fatalf("log does not name the homeserver URL:\n%s", p.logTail(5))
	}
	p.stop(t)
}
