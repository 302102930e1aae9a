package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// requestTimeout bounds each helper's requests, so a wedged homeserver fails
// the test instead of hanging it until the go test deadline.
const requestTimeout = 30 * time.Second

// User is a registered, logged-in test account.
type User struct {
	ID          id.UserID
	Password    string
	AccessToken string
	DeviceID    id.DeviceID
	// Client is ready to use. Its sync loop belongs to the harness: do not
	// call Sync on it, and do not change its settings (the sync goroutine
	// reads them); build a separate client for raw requests.
	Client *mautrix.Client

	crypto *cryptohelper.CryptoHelper // nil unless registered with RegisterE2EE
	log    *lineBuffer                // the client's zerolog output

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever the fields below change
	messages map[id.RoomID][]*event.Event
	seen     map[id.EventID]bool
	members  map[id.RoomID]map[id.UserID]event.Membership
	failures []string // events that could not be decrypted
	syncErr  error    // why the sync loop stopped, if it did on its own
	stopSync func()   // nil until the sync loop runs
}

// client returns a mautrix client for the homeserver that rides out 429s
// (WithRateLimit) and transient errors; mautrix doubles the backoff on each
// retry.
func (h *Homeserver) client(t testing.TB, userID id.UserID, accessToken string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(h.URL, userID, accessToken)
	if err != nil {
		t.Fatal(err)
	}
	cli.DefaultHTTPRetries = 4
	cli.DefaultHTTPBackoff = 250 * time.Millisecond
	return cli
}

// newUser wraps a fresh registration in a User. E2EE users get their crypto
// machine and start syncing right away, because key exchange only happens
// through sync.
func (h *Homeserver) newUser(t testing.TB, reg registration, password string, e2ee bool) *User {
	t.Helper()
	cli := h.client(t, reg.UserID, reg.AccessToken)
	cli.DeviceID = reg.DeviceID
	// Debug level: the crypto machine explains there why a key was or was
	// not shared, which WaitForMessages prints when it times out. In memory,
	// because cryptohelper goroutines waiting for keys outlive the test.
	log := &lineBuffer{max: 2000}
	cli.Log = zerolog.New(log).Level(zerolog.DebugLevel).With().Timestamp().Logger()

	u := &User{
		ID:          reg.UserID,
		Password:    password,
		AccessToken: reg.AccessToken,
		DeviceID:    reg.DeviceID,
		Client:      cli,
		log:         log,
		changed:     make(chan struct{}),
		messages:    map[id.RoomID][]*event.Event{},
		seen:        map[id.EventID]bool{},
		members:     map[id.RoomID]map[id.UserID]event.Membership{},
	}
	t.Cleanup(u.close)
	if e2ee {
		u.enableE2EE(t, h.dir)
	}
	// Added after the crypto machine's handlers, so that when the tracker
	// reports a membership, the machine has already reacted to it
	// (invalidated the room's outbound megolm session).
	syncer := cli.Syncer.(mautrix.ExtensibleSyncer)
	syncer.OnEventType(event.EventMessage, u.addMessage)
	syncer.OnEventType(event.StateMember, u.setMember)
	if e2ee {
		u.startSync()
	}
	return u
}

// close stops the sync loop and closes the crypto database; registered as a
// cleanup before the homeserver stops.
func (u *User) close() {
	u.mu.Lock()
	stop := u.stopSync
	u.mu.Unlock()
	if stop != nil {
		stop()
	}
	if u.crypto != nil {
		_ = u.crypto.Close()
	}
}

// startSync runs the user's sync loop in the background unless it already
// runs. mautrix keeps the since token in the client's store, so each User
// has its own position in the stream.
func (u *User) startSync() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopSync != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := u.Client.SyncWithContext(ctx)
		if ctx.Err() == nil {
			u.mu.Lock()
			u.syncErr = fmt.Errorf("sync loop stopped: %w", err)
			u.notifyLocked()
			u.mu.Unlock()
		}
	}()
	u.stopSync = func() {
		cancel()
		<-done
	}
}

func (u *User) notifyLocked() {
	close(u.changed)
	u.changed = make(chan struct{})
}

func (u *User) addMessage(_ context.Context, evt *event.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen[evt.ID] {
		return
	}
	u.seen[evt.ID] = true
	u.messages[evt.RoomID] = append(u.messages[evt.RoomID], evt)
	u.notifyLocked()
}

func (u *User) setMember(_ context.Context, evt *event.Event) {
	content := evt.Content.AsMember()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.members[evt.RoomID] == nil {
		u.members[evt.RoomID] = map[id.UserID]event.Membership{}
	}
	u.members[evt.RoomID][id.UserID(evt.GetStateKey())] = content.Membership
	u.notifyLocked()
}

// await blocks until cond holds, re-checking it whenever the sync loop
// records something. It fails when the sync loop died, the timeout passed or
// ctx ended. cond runs without u.mu held, so it may take it.
func (u *User) await(ctx context.Context, timeout time.Duration, cond func() bool) error {
	u.startSync()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		// Take the channel before checking, so an update landing in
		// between still wakes us.
		u.mu.Lock()
		changed, syncErr := u.changed, u.syncErr
		u.mu.Unlock()
		if cond() {
			return nil
		}
		if syncErr != nil {
			return syncErr
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("timed out after %s", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// membership is what u's sync loop last saw of member in room.
func (u *User) membership(room id.RoomID, member id.UserID) event.Membership {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.members[room][member]
}

// WaitForMessages waits until pred accepts the m.room.message events that
// u's sync loop has seen in room so far (from every sender, oldest first,
// decrypted for E2EE users) and returns them. It fails the test with what
// it saw after timeout.
//
// A plain user's sync loop starts on the first call, and its initial sync
// only replays the room's latest 50 timeline events.
func (u *User) WaitForMessages(t testing.TB, room id.RoomID, timeout time.Duration, pred func([]*event.Event) bool) []*event.Event {
	t.Helper()
	var msgs []*event.Event
	err := u.await(t.Context(), timeout, func() bool {
		u.mu.Lock()
		msgs = slices.Clone(u.messages[room])
		u.mu.Unlock()
		return pred(msgs)
	})
	if err != nil {
		u.mu.Lock()
		failures := slices.Clone(u.failures)
		u.mu.Unlock()
		t.Fatalf("%s waiting for messages in %s: %v\nseen %d:\n%s\nundecryptable: %q\nclient log tail:\n%s",
			u.ID, room, err, len(msgs), describe(msgs), failures, u.log.tail(15))
	}
	return msgs
}

// WaitForJoin waits until u's sync loop has seen member join room. For an
// E2EE user that also means its crypto machine knows the member, so the
// next message it sends is encrypted for the member's devices.
func (u *User) WaitForJoin(t testing.TB, room id.RoomID, member id.UserID, timeout time.Duration) {
	t.Helper()
	err := u.await(t.Context(), timeout, func() bool {
		return u.membership(room, member) == event.MembershipJoin
	})
	if err != nil {
		t.Fatalf("%s waiting for %s to join %s: %v", u.ID, member, room, err)
	}
}

// CreateRoom creates a private room inviting invite; an encrypted one has
// m.room.encryption (megolm) in its initial state.
func (u *User) CreateRoom(t testing.TB, encrypted bool, invite ...id.UserID) id.RoomID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: invite}
	if encrypted {
		req.InitialState = []*event.Event{{
			Type:     event.StateEncryption,
			StateKey: new(""),
			Content:  event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}}
	}
	resp, err := u.Client.CreateRoom(ctx, req)
	if err != nil {
		t.Fatalf("%s create room: %v", u.ID, err)
	}
	return resp.RoomID
}

// JoinRoom joins a room u was invited to.
func (u *User) JoinRoom(t testing.TB, room id.RoomID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	if _, err := u.Client.JoinRoomByID(ctx, room); err != nil {
		t.Fatalf("%s join %s: %v", u.ID, room, err)
	}
}

// SendText sends a plain-text m.room.message, encrypted when u is an E2EE
// user and the room is encrypted.
//
// Before encrypting, it waits until u's sync has seen every member the
// server lists as joined or invited, and refreshes their device lists, as a
// real client would have by the time its user types: mautrix only re-shares
// the megolm session when a membership or device change reaches it, so
// sending right after a join or a new login would leave the newcomer unable
// to decrypt.
func (u *User) SendText(t testing.TB, room id.RoomID, body string) id.EventID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	if u.crypto != nil {
		u.prepareEncryptedSend(t, ctx, room)
	}
	resp, err := u.Client.SendText(ctx, room, body)
	if err != nil {
		t.Fatalf("%s send to %s: %v", u.ID, room, err)
	}
	return resp.EventID
}

// prepareEncryptedSend brings u's crypto machine up to date with room's
// members and their devices before u encrypts a message for them.
func (u *User) prepareEncryptedSend(t testing.TB, ctx context.Context, room id.RoomID) {
	t.Helper()
	encrypted, err := u.Client.StateStore.IsEncrypted(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if !encrypted {
		return
	}
	resp, err := u.Client.Members(ctx, room)
	if err != nil {
		t.Fatalf("%s members of %s: %v", u.ID, room, err)
	}
	var want []id.UserID
	for _, evt := range resp.Chunk {
		if m := evt.Content.AsMember().Membership; m == event.MembershipJoin || m == event.MembershipInvite {
			want = append(want, id.UserID(evt.GetStateKey()))
		}
	}
	var missing []id.UserID
	err = u.await(ctx, requestTimeout, func() bool {
		missing = missing[:0]
		for _, member := range want {
			// Either is enough: the crypto machine drops the outbound
			// session when someone is invited or joins without an invite,
			// not on invite -> join.
			if m := u.membership(room, member); m != event.MembershipJoin && m != event.MembershipInvite {
				missing = append(missing, member)
			}
		}
		return len(missing) == 0
	})
	if err != nil {
		t.Fatalf("%s: sync never showed %v in %s: %v", u.ID, missing, room, err)
	}
	// A device created after u last fetched a member's device list (the bot
	// logging in after it was invited) reaches u as a device-list change in
	// some later sync, possibly after the join. Refreshing now makes the
	// machine see the new device and drop the outbound session, so the next
	// one is shared with it.
	if _, err := u.crypto.Machine().FetchKeys(ctx, want, false); err != nil {
		t.Fatalf("%s: refresh device lists of %v: %v", u.ID, want, err)
	}
}

// Messages returns every m.room.message event in room, oldest first, by
// paginating /messages backwards from the end, so it sees exactly what the
// server stored (the way to count duplicates). E2EE users get the events
// decrypted, and an event they cannot decrypt fails the test; plain users
// get none from an encrypted room.
func (u *User) Messages(t testing.TB, room id.RoomID) []*event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	var msgs []*event.Event
	from := ""
	for {
		resp, err := u.Client.Messages(ctx, room, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			t.Fatalf("%s /messages in %s: %v", u.ID, room, err)
		}
		for _, evt := range resp.Chunk {
			if evt.StateKey != nil {
				continue
			}
			evt.Type.Class = event.MessageEventType
			if evt.Type == event.EventEncrypted && u.crypto != nil {
				evt = u.decrypt(t, ctx, evt)
			}
			if evt.Type != event.EventMessage {
				continue
			}
			if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
				t.Fatalf("%s: parse %s: %v", u.ID, evt.ID, err)
			}
			msgs = append(msgs, evt)
		}
		if len(resp.Chunk) == 0 || resp.End == "" {
			break
		}
		from = resp.End
	}
	slices.Reverse(msgs)
	return msgs
}

// describe renders messages for failure output.
func describe(msgs []*event.Event) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %s %s: %q\n", m.ID, m.Sender, m.Content.AsMessage().Body)
	}
	return b.String()
}

// lineBuffer keeps the last max lines written to it; zerolog writes one
// event per Write.
type lineBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, strings.TrimRight(string(p), "\n"))
	if len(b.lines) > b.max {
		b.lines = slices.Delete(b.lines, 0, len(b.lines)-b.max)
	}
	return len(p), nil
}

// tail returns the last n lines.
func (b *lineBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines[max(0, len(b.lines)-n):], "\n")
}
