// Package bot is Vigie's Matrix transport (mautrix): it logs in, keeps its
// device and sync position across restarts, joins rooms it is invited to by
// allowed users, turns command messages into commands.Incoming, and delivers
// the outbox's messages as m.notice events, end-to-end encrypted where the
// room is. Only this package imports mautrix.
package bot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/cryptohelper"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/commands"
)

// Transport is the outbox transport name of Matrix messages.
const Transport = "matrix"

// Config is what the bot needs; secrets are already resolved.
type Config struct {
	Homeserver      string
	UserID          string
	AccessToken     string
	Password        string
	PickleKey       string
	DeviceName      string
	CommandPrefix   string
	AllowedInviters []string // "@user:server" or ":server"
	Encryption      bool
	EventGrace      time.Duration // accept commands sent up to this long before the start
	DataDir         string        // the crypto store lives here
	Started         time.Time     // process start; older commands are ignored
	// AdoptSince, when set, is when the last leader's replicated state was
	// taken: its messages sent since are found in the rooms at start, so
	// that they are not sent again.
	AdoptSince time.Time
}

// State is what the bot persists: its session, and the echoes of the
// messages it sent.
type State interface {
	Value(ctx context.Context, key string) (string, bool, error)
	SetValue(ctx context.Context, key, value string) error
	MarkSentByTxn(ctx context.Context, transport, txnID, remoteID string) (bool, error)
	OutboxIDByRemote(ctx context.Context, transport, remoteID string) (int64, bool, error)
}

// Commands receives command messages; the bot does not wait for them.
type Commands interface {
	Handle(ctx context.Context, in commands.Incoming) <-chan struct{}
}

// Incidents finds the incident a reacted-to message belongs to.
type Incidents interface {
	IncidentIDByEvent(ctx context.Context, transport, eventID string) (int64, bool, error)
}

// Bot is the Matrix transport.
type Bot struct {
	cfg       Config
	state     State
	cmds      Commands
	incidents Incidents // nil: reactions are ignored
	log       zerolog.Logger
	cli       *mautrix.Client
	crypto    *cryptohelper.CryptoHelper

	ready     atomic.Bool
	firstSync sync.Once
	outage    outage
	echoes    *echoes
	adopted   *adopted      // nil: not a takeover
	adoptDone chan struct{} // closed once adopted is read; nil: not a takeover
}

// New creates a bot; Start logs it in. incidents may be nil.
func New(cfg Config, state State, cmds Commands, incidents Incidents, log zerolog.Logger) *Bot {
	return &Bot{cfg: cfg, state: state, cmds: cmds, incidents: incidents, log: log.With().Str("component", "matrix").Logger()}
}

// Start logs in (retrying while the homeserver is unreachable) and sets up
// encryption. An error is fatal: bad credentials or configuration.
func (b *Bot) Start(ctx context.Context) error {
	ctx = b.log.WithContext(ctx)
	cli, err := mautrix.NewClient(b.cfg.Homeserver, id.UserID(b.cfg.UserID), "")
	if err != nil {
		return fmt.Errorf("matrix client for %s: %w", b.cfg.Homeserver, err)
	}
	cli.Log = b.log
	// The outbox owns retries and rate limits; mautrix must not retry too.
	cli.DefaultHTTPRetries = 0
	cli.Store = &syncStore{state: b.state}
	syncer := mautrix.NewDefaultSyncer()
	cli.Syncer = &retryingSyncer{DefaultSyncer: syncer, bot: b}
	b.cli = cli

	if err := b.login(ctx); err != nil {
		return err
	}
	startBatch, _, err := b.state.Value(ctx, keyProcessed)
	if err != nil {
		return err
	}
	b.echoes = newEchoes(startBatch)
	if b.cfg.Encryption {
		if err := b.setupCrypto(ctx); err != nil {
			return err
		}
	}
	if !b.cfg.AdoptSince.IsZero() {
		b.adoptDone = make(chan struct{})
	}
	syncer.OnSync(b.onSync)
	syncer.OnEvent(b.onOwnEvent)
	syncer.OnEventType(event.StateMember, b.onMember)
	syncer.OnEventType(event.EventMessage, b.onMessage)
	syncer.OnEventType(event.EventReaction, b.onReaction)
	if !b.cfg.Encryption {
		syncer.OnEventType(event.EventEncrypted, b.onEncryptedWithoutCrypto)
	}
	b.log.Info().Str("user_id", b.cfg.UserID).Str("device_id", cli.DeviceID.String()).Bool("encryption", b.cfg.Encryption).Msg("Logged in")
	return nil
}

// setupCrypto opens the E2EE store (pure-Go SQLite) and initialises the olm
// machine; the cryptohelper then decrypts incoming and encrypts outgoing
// events transparently.
func (b *Bot) setupCrypto(ctx context.Context) error {
	path := filepath.Join(b.cfg.DataDir, "matrix-crypto.db")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return fmt.Errorf("open crypto store %s: %w", path, err)
	}
	db, err := dbutil.NewWithDB(raw, "sqlite")
	if err != nil {
		return fmt.Errorf("crypto store %s: %w", path, err)
	}
	helper, err := cryptohelper.NewCryptoHelper(b.cli, []byte(b.cfg.PickleKey), db)
	if err != nil {
		return fmt.Errorf("crypto: %w", err)
	}
	helper.DecryptErrorCallback = func(evt *event.Event, err error) {
		b.log.Warn().Err(err).Str("event_id", evt.ID.String()).Str("room", evt.RoomID.String()).Str("sender", evt.Sender.String()).
			Msg("Cannot decrypt an event; if it was a command it is not run")
	}
	if err := helper.Init(ctx); err != nil {
		return fmt.Errorf("end-to-end encryption setup with crypto store %s: %w (if the device changed, move that file away to start a fresh crypto identity)", path, err)
	}
	b.cli.Crypto = helper
	b.crypto = helper
	return nil
}

// Run syncs until ctx is cancelled. It returns an error only for what
// retrying cannot fix (the access token was revoked).
func (b *Bot) Run(ctx context.Context) error {
	ctx = b.log.WithContext(ctx)
	defer b.ready.Store(false)
	for {
		err := b.cli.SyncWithContext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, mautrix.MUnknownToken) {
			return fmt.Errorf("homeserver %s no longer accepts the access token of %s: %w", b.cfg.Homeserver, b.cfg.UserID, err)
		}
		// Errors before the first /sync (creating the filter) end up here.
		wait := b.outage.failed(b.log, b.cfg.Homeserver, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Close releases the crypto store.
func (b *Bot) Close() error {
	if b.crypto != nil {
		return b.crypto.Close()
	}
	return nil
}

// Ready reports whether the last sync succeeded.
func (b *Bot) Ready() error {
	if !b.ready.Load() {
		return errors.New("matrix: not synced with " + b.cfg.Homeserver)
	}
	return nil
}

func (b *Bot) onSync(ctx context.Context, _ *mautrix.RespSync, _ string) bool {
	b.ready.Store(true)
	b.outage.recovered(b.log, b.cfg.Homeserver)
	b.firstSync.Do(func() {
		b.log.Info().Stringer("since_start", time.Since(b.cfg.Started).Round(time.Millisecond)).Msg("First sync completed")
		if b.adoptDone != nil {
			// After the first sync: its to-device events brought the room
			// keys the last leader shared with this device.
			if err := b.adopt(ctx, b.cfg.AdoptSince); err != nil {
				b.log.Error().Err(err).Msg("Cannot read what the last leader sent: its last messages may be sent again")
			}
			close(b.adoptDone)
		}
	})
	return true
}

// syncTimeout is mautrix's long-poll timeout.
const syncTimeout = 30 * time.Second

// retryingSyncer replaces mautrix's fixed 10 s wait after a failed sync with
// capped exponential backoff, logs an outage once and its end once, and
// notes when a response has been fully handled (for Reconcile).
type retryingSyncer struct {
	*mautrix.DefaultSyncer
	bot *Bot
}

func (s *retryingSyncer) ProcessResponse(ctx context.Context, res *mautrix.RespSync, since string) error {
	err := s.DefaultSyncer.ProcessResponse(ctx, res, since)
	if err == nil {
		s.bot.processed(ctx, res.NextBatch)
	}
	return err
}

func (s *retryingSyncer) OnFailedSync(_ *mautrix.RespSync, err error) (time.Duration, error) {
	if errors.Is(err, mautrix.MUnknownToken) {
		return 0, err
	}
	s.bot.ready.Store(false)
	return s.bot.outage.failed(s.bot.log, s.bot.cfg.Homeserver, err), nil
}

// outage tracks consecutive failures to reach the homeserver.
type outage struct {
	mu       sync.Mutex
	failures int
	since    time.Time
}

const (
	minRetry = time.Second
	maxRetry = time.Minute
)

func (o *outage) failed(log zerolog.Logger, homeserver string, err error) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures++
	wait := min(minRetry<<min(o.failures-1, 10), maxRetry)
	if o.failures == 1 {
		o.since = time.Now()
		log.Warn().Err(err).Str("homeserver", homeserver).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Cannot sync with the homeserver; retrying with backoff")
	} else {
		log.Debug().Err(err).Int("failures", o.failures).Stringer("retry_in", wait.Round(time.Millisecond)).Msg("Sync still failing")
	}
	return wait
}

func (o *outage) recovered(log zerolog.Logger, homeserver string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failures > 0 {
		log.Info().Str("homeserver", homeserver).Int("failures", o.failures).Stringer("outage", time.Since(o.since).Round(time.Millisecond)).Msg("Homeserver reachable again")
		o.failures = 0
	}
}
