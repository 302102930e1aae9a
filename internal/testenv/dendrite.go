package testenv

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// ServerName is the Matrix server name of every test homeserver: user IDs are
// @localpart:localhost. Federation is disabled, so it never has to resolve.
const ServerName = "localhost"

// readyTimeout bounds how long Dendrite may take to answer its first request.
// It normally needs well under a second; the margin is for loaded CI hosts.
const readyTimeout = 60 * time.Second

type options struct {
	rateLimit bool
	threshold int
	cooloffMS int
}

// Option configures StartDendrite.
type Option func(*options)

// WithRateLimit enables Dendrite's rate limiter: each client (user+device)
// gets threshold slots, each held for cooloffMS after a request starts.
// Without it rate limiting is disabled, so tests are not slowed by it.
//
// Dendrite v0.13.8 limits joins, invites, leaves, typing, receipts, read
// markers, profile updates, /login, /register and /messages, but NOT
// /rooms/{id}/send nor state events.
func WithRateLimit(threshold int, cooloffMS int) Option {
	return func(o *options) {
		o.rateLimit = true
		o.threshold = threshold
		o.cooloffMS = cooloffMS
	}
}

// Homeserver is a running Dendrite, private to one test.
type Homeserver struct {
	URL        string // http://127.0.0.1:PORT
	ServerName string // always ServerName

	dir          string
	sharedSecret string

	process
}

// StartDendrite starts a fresh Dendrite with its own databases in
// t.TempDir(), listening on a free loopback port, and stops it at cleanup.
// See the package comment for when it skips instead of failing.
func StartDendrite(t testing.TB, opts ...Option) *Homeserver {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIPPING integration test in -short mode")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dendrite, generateKeys := EnsureDendrite(t)

	dir := t.TempDir()
	h := &Homeserver{
		ServerName:   ServerName,
		dir:          dir,
		sharedSecret: rand.Text(),
		process:      process{name: "Dendrite", logPath: filepath.Join(dir, "dendrite.log")},
	}
	keyPath := filepath.Join(dir, "matrix_key.pem")
	if out, err := exec.Command(generateKeys, "--private-key", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("generate-keys: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "dendrite.yaml")
	if err := os.WriteFile(cfgPath, h.config(keyPath, o), 0o600); err != nil {
		t.Fatal(err)
	}
	// Registered before any user exists, so it runs after the users' sync
	// loops have stopped (cleanups run last-in first-out).
	h.stopAtCleanup(t)
	start := time.Now()
	h.startRetrying(t, func() error { return h.launch(dendrite, cfgPath, FreeLoopbackAddr(t)) })
	t.Logf("Dendrite %s ready at %s in %s", DendriteVersion, h.URL, time.Since(start).Round(time.Millisecond))
	return h
}

// config renders dendrite.yaml. JSON is valid YAML, and encoding/json quotes
// paths correctly without a YAML dependency.
func (h *Homeserver) config(keyPath string, o options) []byte {
	// Per-component SQLite files: Dendrite picks its SQL dialect from each
	// component's own connection string, so a single global
	// `database:` block with a file: URI makes it run PostgreSQL DDL on
	// SQLite ("near SEQUENCE: syntax error").
	db := func(name string) map[string]any {
		return map[string]any{"connection_string": "file:" + filepath.Join(h.dir, name+".db")}
	}
	cfg := map[string]any{
		"version": 2,
		"global": map[string]any{
			"server_name":                    ServerName,
			"private_key":                    keyPath,
			"disable_federation":             true,
			"trusted_third_party_id_servers": []string{},
			// In-memory JetStream: nothing survives a test anyway, and the
			// on-disk store fsyncs every write.
			"jetstream": map[string]any{"in_memory": true, "storage_path": filepath.Join(h.dir, "jetstream")},
		},
		"client_api": map[string]any{
			// Shared-secret registration still works when registration is
			// disabled; nothing else can create accounts.
			"registration_disabled":      true,
			"registration_shared_secret": h.sharedSecret,
			"rate_limiting": map[string]any{
				"enabled":    o.rateLimit,
				"threshold":  o.threshold,
				"cooloff_ms": o.cooloffMS,
			},
		},
		// No perspective key servers: the harness has no network.
		"federation_api": map[string]any{"database": db("federationapi"), "key_perspectives": []any{}},
		"key_server":     map[string]any{"database": db("keyserver")},
		"media_api":      map[string]any{"database": db("mediaapi"), "base_path": filepath.Join(h.dir, "media")},
		"mscs":           map[string]any{"database": db("mscs")},
		"relay_api":      map[string]any{"database": db("relayapi")},
		"room_server":    map[string]any{"database": db("roomserver")},
		"sync_api":       map[string]any{"database": db("syncapi")},
		// bcrypt's minimum cost: registration and login stay fast.
		"user_api": map[string]any{"account_database": db("userapi"), "bcrypt_cost": 4},
		// Dendrite always logs to stderr, which launch sends to
		// dendrite.log; a "file" hook would only duplicate it (and miss
		// panics and config errors).
		"logging": []any{map[string]any{"type": "std", "level": "info"}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // static map of plain values
	}
	return b
}

// launch starts Dendrite on addr and waits until it answers.
func (h *Homeserver) launch(dendrite, cfgPath, addr string) error {
	cmd := exec.Command(dendrite, "--config", cfgPath, "--http-bind-address", addr)
	cmd.Dir = h.dir // relative default paths (e.g. the search index) land here
	h.URL = "http://" + addr
	client := &http.Client{Timeout: 2 * time.Second}
	// The unauthenticated versions endpoint answers once the client API serves.
	return h.start(cmd, readyTimeout, func() error {
		resp, err := client.Get(h.URL + "/_matrix/client/versions")
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /versions: HTTP %d", resp.StatusCode)
		}
		return nil
	})
}

// Register creates the account @localpart:localhost through the shared-secret
// admin API (the Synapse-compatible /_synapse/admin/v1/register: GET a
// nonce, POST with an HMAC-SHA1 over nonce, user, password and admin flag)
// and returns it logged in. The account is a normal user, so it is subject
// to rate limiting like the bot will be.
//
// The user does not sync until the first WaitForMessages/WaitForJoin, so its
// access token can also be handed to code under test without two sync loops
// competing for the device's to-device messages.
func (h *Homeserver) Register(t testing.TB, localpart, password string) *User {
	t.Helper()
	return h.newUser(t, h.registerAccount(t, localpart, password), password, false)
}

// registration is the shared-secret registration response.
type registration struct {
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token"`
	DeviceID    id.DeviceID `json:"device_id"`
}

func (h *Homeserver) registerAccount(t testing.TB, localpart, password string) registration {
	t.Helper()
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	h.adminRequest(t, http.MethodGet, nil, &nonce)

	mac := hmac.New(sha1.New, []byte(h.sharedSecret))
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, localpart, password, "notadmin"}, "\x00")))
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    false,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	var reg registration
	h.adminRequest(t, http.MethodPost, req, &reg)
	if reg.AccessToken == "" || reg.DeviceID == "" {
		t.Fatalf("register %s: response without access token or device: %+v", localpart, reg)
	}
	return reg
}

func (h *Homeserver) adminRequest(t testing.TB, method string, body, out any) {
	t.Helper()
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, h.URL+"/_synapse/admin/v1/register", reqBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s shared-secret register: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s shared-secret register: %v", method, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s shared-secret register: HTTP %d: %s", method, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s shared-secret register: %v: %s", method, err, b)
	}
}

// FreeLoopbackAddr returns a loopback address whose port was free a moment
// ago (see the retry in StartDendrite).
func FreeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
