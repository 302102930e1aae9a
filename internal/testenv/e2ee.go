package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver: the project builds with CGO_ENABLED=0
)

// RegisterE2EE registers a user like Register whose client has a crypto
// machine (mautrix cryptohelper, goolm): it uploads device keys at once,
// starts syncing at once so olm/megolm keys flow, encrypts what it sends
// into encrypted rooms and decrypts what it receives there.
func (h *Homeserver) RegisterE2EE(t testing.TB, localpart, password string) *User {
	t.Helper()
	return h.newUser(t, h.registerAccount(t, localpart, password), password, true)
}

// LoginE2EE logs an existing account in with a new E2EE device, as the bot
// does when it starts: use it to reproduce a device that appears after the
// account was invited to, or already sat in, an encrypted room.
func (h *Homeserver) LoginE2EE(t testing.TB, localpart, password string) *User {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	resp, err := h.client(t, "", "").Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: localpart},
		Password:   password,
	})
	if err != nil {
		t.Fatalf("login %s: %v", localpart, err)
	}
	reg := registration{UserID: resp.UserID, AccessToken: resp.AccessToken, DeviceID: resp.DeviceID}
	return h.newUser(t, reg, password, true)
}

// enableE2EE attaches a cryptohelper backed by a modernc SQLite database in
// dir. cryptohelper's own string-path store opens it with the cgo driver,
// which a CGO_ENABLED=0 build lacks.
func (u *User) enableE2EE(t testing.TB, dir string) {
	t.Helper()
	path := filepath.Join(dir, u.ID.Localpart()+"."+u.DeviceID.String()+".crypto.db")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		t.Fatal(err)
	}
	helper, err := cryptohelper.NewCryptoHelper(u.Client, []byte(rand.Text()), db)
	if err != nil {
		t.Fatal(err)
	}
	helper.DecryptErrorCallback = u.recordUndecryptable
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	// Init creates the state store that tracks room members, uploads the
	// device keys and hooks the machine into the client's syncer.
	if err := helper.Init(ctx); err != nil {
		_ = helper.Close()
		t.Fatalf("%s crypto init: %v", u.ID, err)
	}
	u.Client.Crypto = helper
	u.crypto = helper
}

// recordUndecryptable keeps the events cryptohelper gave up on (after
// waiting for and requesting their keys), for WaitForMessages' report.
func (u *User) recordUndecryptable(evt *event.Event, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.failures = append(u.failures, fmt.Sprintf("%s from %s: %v", evt.ID, evt.Sender, err))
	u.notifyLocked()
}

// decrypt decrypts an m.room.encrypted event from /messages, giving the
// megolm session a moment to arrive over to-device if it has not yet.
func (u *User) decrypt(t testing.TB, ctx context.Context, evt *event.Event) *event.Event {
	t.Helper()
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		t.Fatalf("%s: parse %s: %v", u.ID, evt.ID, err)
	}
	dec, err := u.crypto.Decrypt(ctx, evt)
	if errors.Is(err, crypto.ErrNoSessionFound) {
		content := evt.Content.AsEncrypted()
		if u.crypto.WaitForSession(ctx, evt.RoomID, content.SenderKey, content.SessionID, 10*time.Second) {
			dec, err = u.crypto.Decrypt(ctx, evt)
		}
	}
	if err != nil {
		t.Fatalf("%s cannot decrypt %s from %s: %v", u.ID, evt.ID, evt.Sender, err)
	}
	return dec
}
