package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

const waitTimeout = 30 * time.Second

// hasBody returns a WaitForMessages predicate matching a message body.
func hasBody(body string) func([]*event.Event) bool {
	return func(msgs []*event.Event) bool {
		return slices.ContainsFunc(msgs, func(m *event.Event) bool { return m.Content.AsMessage().Body == body })
	}
}

func bodies(msgs []*event.Event) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Content.AsMessage().Body)
	}
	return out
}

func TestHomeserver(t *testing.T) {
	h := StartDendrite(t)

	t.Run("plain room", func(t *testing.T) {
		alice := h.Register(t, "alice", "alice-password")
		bob := h.Register(t, "bob", "bob-password")
		if alice.ID != id.NewUserID("alice", ServerName) || alice.AccessToken == "" || alice.DeviceID == "" {
			t.Fatalf("unexpected registration: %+v", alice)
		}
		room := alice.CreateRoom(t, false, bob.ID)
		bob.JoinRoom(t, room)
		alice.WaitForJoin(t, room, bob.ID, waitTimeout)
		sent := alice.SendText(t, room, "hello bob")

		got := bob.WaitForMessages(t, room, waitTimeout, hasBody("hello bob"))
		if got[0].ID != sent || got[0].Sender != alice.ID {
			t.Errorf("bob saw %s from %s, want %s from %s", got[0].ID, got[0].Sender, sent, alice.ID)
		}
		if all := bob.Messages(t, room); len(all) != 1 || all[0].ID != sent {
			t.Errorf("Messages = %q, want exactly [hello bob]", bodies(all))
		}
	})

	t.Run("encrypted room", func(t *testing.T) {
		alice := h.RegisterE2EE(t, "ealice", "alice-password")
		bob := h.RegisterE2EE(t, "ebob", "bob-password")
		room := alice.CreateRoom(t, true, bob.ID)
		bob.JoinRoom(t, room)
		alice.SendText(t, room, "secret for bob")

		got := bob.WaitForMessages(t, room, waitTimeout, hasBody("secret for bob"))
		if got[0].Mautrix.EventSource&event.SourceDecrypted == 0 {
			t.Errorf("bob's copy was not decrypted: it was sent in the clear")
		}
		all := bob.Messages(t, room)
		if len(all) != 1 || all[0].Content.AsMessage().Body != "secret for bob" {
			t.Fatalf("Messages = %q, want exactly [secret for bob]", bodies(all))
		}

		// A member that joins after the megolm session was shared (the bot
		// joining an existing encrypted room) must get the next session.
		carol := h.RegisterE2EE(t, "ecarol", "carol-password")
		invite(t, alice, room, carol.ID)
		carol.JoinRoom(t, room)
		alice.SendText(t, room, "welcome carol")
		carol.WaitForMessages(t, room, waitTimeout, hasBody("welcome carol"))
		bob.WaitForMessages(t, room, waitTimeout, hasBody("welcome carol"))

		// An account invited before its E2EE device exists (the bot
		// started after being invited): alice already fetched its empty
		// device list, so she must learn about the new device.
		h.Register(t, "edave", "dave-password")
		daveID := id.NewUserID("edave", ServerName)
		invite(t, alice, room, daveID)
		alice.SendText(t, room, "dave has no device yet")
		dave := h.LoginE2EE(t, "edave", "dave-password")
		dave.JoinRoom(t, room)
		alice.SendText(t, room, "welcome dave")
		dave.WaitForMessages(t, room, waitTimeout, hasBody("welcome dave"))

		// And the other way round: alice reads what the late joiner sends.
		dave.SendText(t, room, "thanks")
		alice.WaitForMessages(t, room, waitTimeout, hasBody("thanks"))

		want := []string{"secret for bob", "welcome carol", "dave has no device yet", "welcome dave", "thanks"}
		if all := bob.Messages(t, room); !slices.Equal(bodies(all), want) {
			t.Errorf("bob's Messages = %q, want %q", bodies(all), want)
		}
		// The sender decrypts its own messages too.
		if all := alice.Messages(t, room); !slices.Equal(bodies(all), want) {
			t.Errorf("alice's Messages = %q, want %q", bodies(all), want)
		}
	})
}

func invite(t *testing.T, u *User, room id.RoomID, invitee id.UserID) {
	t.Helper()
	if _, err := u.Client.InviteUser(t.Context(), room, &mautrix.ReqInviteUser{UserID: invitee}); err != nil {
		t.Fatalf("invite %s: %v", invitee, err)
	}
}

func TestRateLimit(t *testing.T) {
	const threshold, cooloffMS = 3, 500
	h := StartDendrite(t, WithRateLimit(threshold, cooloffMS))
	alice := h.Register(t, "alice", "alice-password")
	room := alice.CreateRoom(t, false)

	// A client of its own: no retries, so 429s surface as errors.
	raw, err := mautrix.NewClient(h.URL, alice.ID, alice.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	raw.DeviceID = alice.DeviceID
	raw.DefaultHTTPRetries = 0

	burst := func(req func(ctx context.Context) error) (limited []error) {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		for range 4 * threshold {
			err := req(ctx)
			switch {
			case errors.Is(err, mautrix.MLimitExceeded):
				limited = append(limited, err)
			case err != nil:
				t.Fatal(err)
			}
		}
		return limited
	}

	// Dendrite v0.13.8 does not rate-limit /send; this pins that fact, so
	// tests of the bot's 429 handling do not expect Dendrite to produce it
	// for messages.
	n := 0
	if limited := burst(func(ctx context.Context) error {
		n++
		_, err := raw.SendText(ctx, room, fmt.Sprintf("burst %d", n))
		return err
	}); len(limited) != 0 {
		t.Errorf("sends were rate-limited (%v): Dendrite changed, update WithRateLimit's doc", limited[0])
	}

	limited := burst(func(ctx context.Context) error {
		_, err := raw.UserTyping(ctx, room, true, time.Second)
		return err
	})
	if len(limited) == 0 {
		t.Fatalf("a burst of %d typing requests never hit HTTP 429 with threshold %d", 4*threshold, threshold)
	}
	var httpErr mautrix.HTTPError
	if !errors.As(limited[0], &httpErr) || httpErr.RespError == nil {
		t.Fatalf("429 without a Matrix error body: %v", limited[0])
	}
	if httpErr.Response.StatusCode != 429 || httpErr.RespError.ErrCode != "M_LIMIT_EXCEEDED" {
		t.Errorf("got HTTP %d %s, want 429 M_LIMIT_EXCEEDED", httpErr.Response.StatusCode, httpErr.RespError.ErrCode)
	}
	if retry, ok := httpErr.RespError.ExtraData["retry_after_ms"].(float64); !ok || retry != cooloffMS {
		t.Errorf("retry_after_ms = %v, want %d; body: %s", httpErr.RespError.ExtraData["retry_after_ms"], cooloffMS, httpErr.ResponseBody)
	}
}
