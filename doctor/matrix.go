package doctor

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/store"
)

// Keys of the bot's Matrix session in the state store (bot/login.go).
const (
	keyAccessToken = "matrix.session.access_token"
	keyDeviceID    = "matrix.session.device_id"
	keyUserID      = "matrix.session.user_id"
)

// cryptoStoreFile is the bot's crypto store in the data directory
// (bot/bot.go).
const cryptoStoreFile = "matrix-crypto.db"

// matrixSession is how the doctor is logged in: with the configured
// token, the bot's stored session, or a temporary device of its own.
type matrixSession struct {
	cli       *mautrix.Client
	how       string      // for the login line
	device    id.DeviceID // the bot's device, "" if unknown
	temporary bool        // cli is a device the doctor created, logged out at Close
	note      string      // something worth a warning, e.g. a stored token that expired
}

// storedSession is what the bot saved of its last login.
type storedSession struct {
	user, token, device string
}

// readStoredSession reads the bot's session from the state store without
// changing anything there (read-only, no migration); none when the store
// does not exist yet.
func readStoredSession(ctx context.Context, dataDir string) (storedSession, error) {
	path := filepath.Join(dataDir, store.FileName)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return storedSession{}, nil
		}
		return storedSession{}, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return storedSession{}, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT key, value FROM kv WHERE key IN (?, ?, ?)", keyUserID, keyAccessToken, keyDeviceID)
	if err != nil {
		return storedSession{}, fmt.Errorf("state store %s: %w", path, err)
	}
	defer rows.Close()
	var s storedSession
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return storedSession{}, err
		}
		switch k {
		case keyUserID:
			s.user = v
		case keyAccessToken:
			s.token = v
		case keyDeviceID:
			s.device = v
		}
	}
	return s, rows.Err()
}

type matrixProbe struct {
	cfg        config.Matrix
	dataDir    string
	sessionDir string // where the bot's session is stored
	session    *Lazy[*matrixSession]
	joined     *Lazy[map[id.RoomID]bool]
}

func (m *matrixProbe) client(token string) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(m.cfg.Homeserver, id.UserID(m.cfg.UserID), token)
	if err != nil {
		return nil, fmt.Errorf("matrix.homeserver %q: %w", m.cfg.Homeserver, err)
	}
	cli.Client = &http.Client{}
	cli.DefaultHTTPRetries = 0
	return cli, nil
}

// unreachable says which homeserver could not be reached, and what to check.
func (m *matrixProbe) unreachable(err error) string {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.Response == nil {
		return fmt.Sprintf("homeserver %s is unreachable: %v (check matrix.homeserver)", m.cfg.Homeserver, herr.WrappedError)
	}
	return fmt.Sprintf("homeserver %s: %v", m.cfg.Homeserver, err)
}

// matrixChecks are the checks of the [matrix] section.
func matrixChecks(p *Plan, cfg *config.Config) {
	const comp = "matrix"
	if cfg.Matrix.Homeserver == "" {
		p.Add(Check{Component: comp, Name: "homeserver", Run: func(context.Context) Result {
			return Skip("matrix.homeserver is not set: only \"vigie console\" can be used")
		}})
		return
	}
	m := &matrixProbe{cfg: cfg.Matrix, dataDir: cfg.DataDir, sessionDir: cfg.SessionDir()}
	m.session = NewLazy(m.login)
	m.joined = NewLazy(func(ctx context.Context) (map[id.RoomID]bool, error) {
		s, err := m.session.Get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := s.cli.JoinedRooms(ctx)
		if err != nil {
			return nil, err
		}
		out := map[id.RoomID]bool{}
		for _, r := range resp.JoinedRooms {
			out[r] = true
		}
		return out, nil
	})
	p.OnClose(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if s, ok := m.session.Wait(ctx); ok && s.temporary {
			_, _ = s.cli.Logout(ctx) // deletes the temporary device
		}
	})

	p.Add(Check{Component: comp, Name: "reachable", Run: m.reachable})
	p.Add(Check{Component: comp, Name: "login", Run: func(ctx context.Context) Result {
		s, err := m.session.Get(ctx)
		if err != nil {
			return Fail("%s", m.loginError(err))
		}
		if s.note != "" {
			return Warn("%s; %s", s.how, s.note)
		}
		return OK("%s", s.how)
	}})
	for _, r := range configuredRooms(cfg) {
		p.Add(Check{Component: comp, Name: "room " + r.room, Run: func(ctx context.Context) Result {
			joined, err := m.joined.Get(ctx)
			if err != nil {
				return Skip("cannot list the bot's rooms: %s", m.loginError(err))
			}
			uses := strings.Join(r.uses, ", ")
			if joined[id.RoomID(r.room)] {
				return OK("joined (%s)", uses)
			}
			res := Fail
			if !r.needed {
				res = Warn
			}
			return res("%s is not a member of %s (%s): invite it from an account in matrix.allowed_inviters, it joins on invite",
				m.cfg.UserID, r.room, uses)
		}})
	}
	p.Add(Check{Component: comp, Name: "e2ee", Run: m.e2ee})
}

func (m *matrixProbe) reachable(ctx context.Context) Result {
	cli, err := m.client("")
	if err != nil {
		return Fail("%v", err)
	}
	resp, err := cli.Versions(ctx)
	if err != nil {
		return Fail("%s", m.unreachable(err))
	}
	var latest mautrix.SpecVersion
	for _, v := range resp.Versions {
		if v.GreaterThan(latest) {
			latest = v
		}
	}
	if latest.IsEmpty() {
		return Warn("%s answers but lists no Matrix version: is it a homeserver?", m.cfg.Homeserver)
	}
	detail := fmt.Sprintf("%s speaks Matrix up to %s", m.cfg.Homeserver, latest)
	if strings.HasPrefix(m.cfg.Homeserver, "http://") && !loopbackURL(m.cfg.Homeserver) {
		return Warn("%s over plain http: the access token travels unencrypted; use https", detail)
	}
	return OK("%s", detail)
}

// login finds a session to check the rest with, as the bot would log in
// (bot/login.go): the configured token, else its stored session, else the
// password. A password login creates a device: the doctor makes a
// temporary one, never touching the bot's, and logs it out at the end.
func (m *matrixProbe) login(ctx context.Context) (*matrixSession, error) {
	if m.cfg.AccessToken.IsSet() {
		cli, err := m.client(m.cfg.AccessToken.Reveal())
		if err != nil {
			return nil, err
		}
		device, err := m.whoami(ctx, cli)
		if errors.Is(err, mautrix.MUnknownToken) {
			return nil, fmt.Errorf("the homeserver rejected the configured access token of %s (M_UNKNOWN_TOKEN): check matrix.access_token_file or VIGIE_MATRIX_ACCESS_TOKEN", m.cfg.UserID)
		}
		if err != nil {
			return nil, err
		}
		return &matrixSession{cli: cli, device: device, how: fmt.Sprintf("configured access token of %s, device %s", m.cfg.UserID, device)}, nil
	}
	stored, err := readStoredSession(ctx, m.sessionDir)
	note := ""
	if err != nil {
		note = fmt.Sprintf("cannot read the bot's stored session: %v", err)
	}
	if stored.user == m.cfg.UserID && stored.token != "" {
		cli, err := m.client(stored.token)
		if err != nil {
			return nil, err
		}
		device, err := m.whoami(ctx, cli)
		switch {
		case err == nil:
			return &matrixSession{cli: cli, device: device,
				how: fmt.Sprintf("the bot's stored session of %s, device %s, is valid (the password is only used when it expires)", m.cfg.UserID, device)}, nil
		case errors.Is(err, mautrix.MUnknownToken):
			note = "the bot's stored access token has expired: it logs in again with the password at its next start"
		default:
			return nil, err
		}
	}
	if !m.cfg.Password.IsSet() {
		return nil, errors.New("neither an access token nor a password is configured: set matrix.access_token_file or matrix.password_file")
	}
	cli, err := m.client("")
	if err != nil {
		return nil, err
	}
	resp, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: m.cfg.UserID},
		Password:                 m.cfg.Password.Reveal(),
		InitialDeviceDisplayName: "Vigie doctor (temporary)",
		StoreCredentials:         true,
	})
	if errors.Is(err, mautrix.MForbidden) {
		return nil, fmt.Errorf("the homeserver refused the password of %s (M_FORBIDDEN): check matrix.password_file or VIGIE_MATRIX_PASSWORD", m.cfg.UserID)
	}
	if err != nil {
		return nil, err
	}
	s := &matrixSession{cli: cli, temporary: true,
		how: fmt.Sprintf("password of %s accepted (checked with a temporary device, logged out again)", m.cfg.UserID), note: note}
	if resp.UserID.String() != m.cfg.UserID {
		s.note = fmt.Sprintf("the homeserver logged in %s, not matrix.user_id %s: write the user ID as the homeserver does", resp.UserID, m.cfg.UserID)
	}
	if stored.user == m.cfg.UserID {
		s.device = id.DeviceID(stored.device)
	}
	return s, nil
}

// whoami checks a token as the bot does: it must be the configured user's
// and, with encryption, bound to a device.
func (m *matrixProbe) whoami(ctx context.Context, cli *mautrix.Client) (id.DeviceID, error) {
	resp, err := cli.Whoami(ctx)
	if err != nil {
		return "", err
	}
	if resp.UserID.String() != m.cfg.UserID {
		return "", fmt.Errorf("the access token belongs to %s, not to the configured matrix.user_id %s", resp.UserID, m.cfg.UserID)
	}
	if resp.DeviceID == "" && m.cfg.Encryption {
		return "", fmt.Errorf("the access token of %s is not bound to a device, which encryption needs: create it with a password login", m.cfg.UserID)
	}
	cli.DeviceID = resp.DeviceID
	return resp.DeviceID, nil
}

func (m *matrixProbe) loginError(err error) string {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.Response == nil {
		return m.unreachable(err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("the homeserver %s did not answer in time", m.cfg.Homeserver)
	}
	return err.Error()
}

// e2ee checks that the bot's device can encrypt: its crypto store and its
// keys on the homeserver belong together.
func (m *matrixProbe) e2ee(ctx context.Context) Result {
	if !m.cfg.Encryption {
		return Skip("matrix.encryption is off: the bot stays out of encrypted rooms")
	}
	s, err := m.session.Get(ctx)
	if err != nil {
		return Skip("no session: %s", m.loginError(err))
	}
	path := filepath.Join(m.dataDir, cryptoStoreFile)
	_, statErr := os.Stat(path)
	haveStore := statErr == nil
	if s.device == "" {
		if haveStore {
			return Warn("crypto store %s exists but no device is known for %s: the bot logs in afresh at its next start", path, m.cfg.UserID)
		}
		return Warn("the bot has not logged in yet: its device and keys are created at its first start")
	}
	resp, err := s.cli.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{id.UserID(m.cfg.UserID): {s.device}}})
	if err != nil {
		return Fail("cannot query the keys of device %s: %s", s.device, m.loginError(err))
	}
	keys, uploaded := resp.DeviceKeys[id.UserID(m.cfg.UserID)][s.device]
	uploaded = uploaded && len(keys.Keys) > 0
	switch {
	case uploaded && haveStore:
		return OK("device %s has its keys on the homeserver; crypto store %s", s.device, path)
	case uploaded:
		return Fail("device %s has keys on the homeserver but the crypto store %s is missing: the bot cannot take them over; "+
			"log that device out (or use a new access token) so that the bot starts a fresh one", s.device, path)
	case haveStore:
		return Warn("device %s has no keys on the homeserver yet: the bot uploads them at its next start", s.device)
	}
	return Warn("device %s has no keys and no crypto store yet: both are created at the bot's first start", s.device)
}

// room is a room the configuration names, with what for.
type room struct {
	room   string
	uses   []string
	needed bool // messages are lost if the bot is not there
}

// configuredRooms lists the rooms of the configuration, in a stable order.
func configuredRooms(cfg *config.Config) []room {
	var out []room
	add := func(r, use string, needed bool) {
		if r == "" {
			return
		}
		for i := range out {
			if out[i].room == r {
				if !slices.Contains(out[i].uses, use) {
					out[i].uses = append(out[i].uses, use)
				}
				out[i].needed = out[i].needed || needed
				return
			}
		}
		out = append(out, room{room: r, uses: []string{use}, needed: needed})
	}
	for _, r := range cfg.Alerts.Rooms {
		add(r.Room, "alerts", true)
	}
	add(cfg.Policy.AuditRoom, "audit", true)
	add(cfg.Backups.ReportRoom, "backup report", true)
	for _, r := range cfg.Policy.Rules {
		for _, rm := range r.Rooms {
			add(rm, "commands", false)
		}
	}
	return out
}
