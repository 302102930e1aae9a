package outbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/telemetry"
)

// Ledger is what the sender needs from the store.
type Ledger interface {
	PendingHeads(ctx context.Context, transport string) ([]store.OutMessage, error)
	Pending(ctx context.Context, transport string, limit int) ([]store.OutMessage, error)
	Message(ctx context.Context, id int64) (store.OutMessage, error)
	MarkSent(ctx context.Context, id int64, remoteID string) error
	MarkFailed(ctx context.Context, id int64, reason string) error
	StartAttempt(ctx context.Context, id int64) error
	RecordFailure(ctx context.Context, id int64, reason string, refused bool) error
}

// Delivery is a message with its relations resolved to remote event IDs.
type Delivery struct {
	store.OutMessage
	EditOfRemote     string
	ThreadRootRemote string
}

// Deliverer is a transport: Matrix or the console.
type Deliverer interface {
	// Deliver sends one message and returns its remote ID. It must send with
	// d.TxnID so that a resend after a crash is de-duplicated.
	Deliver(ctx context.Context, d Delivery) (remoteID string, err error)
}

// Reconciler is a transport that can tell whether a message whose earlier
// attempt had an unknown outcome (the process died during it, or the
// request timed out) reached its room after all. Homeservers de-duplicate
// transaction IDs, but not all of them in every case (Dendrite forgets a
// transaction whose request was cancelled mid-way).
type Reconciler interface {
	Reconcile(ctx context.Context, d Delivery) (remoteID string, delivered bool, err error)
}

// SenderConfig tunes retries.
type SenderConfig struct {
	MinBackoff  time.Duration
	MaxBackoff  time.Duration
	GiveUpAfter time.Duration // a message still failing this long after it was queued is dropped as failed
	Poll        time.Duration // also look for work this often (another process may have queued some)
	// Clock is the process's, the one that stamps the messages' queueing
	// time in the store; nil is the wall clock.
	Clock clock.Clock
}

// Sender delivers one transport's messages. Run it in one goroutine.
type Sender struct {
	transport string
	ledger    Ledger
	to        Deliverer
	cfg       SenderConfig
	metrics   *telemetry.Metrics
	wake      chan struct{}

	retryAt     map[int64]time.Time // per message, after a transient failure
	pausedUntil time.Time           // whole transport, after a rate limit
}

// NewSender creates the sender for a transport of this outbox.
func (o *Outbox) NewSender(transport string, ledger Ledger, to Deliverer, cfg SenderConfig, m *telemetry.Metrics) *Sender {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, 5*time.Minute)
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	return &Sender{
		transport: transport, ledger: ledger, to: to, cfg: cfg, metrics: m,
		wake: o.wakeChan(transport), retryAt: map[int64]time.Time{},
	}
}

// Run delivers until ctx is cancelled. It looks for work when woken (a
// commit queued messages for its transport), when a retry or a rate-limit
// pause is due, and otherwise every Poll: an idle sender reads the store no
// more often than that.
func (s *Sender) Run(ctx context.Context) error {
	log := zerolog.Ctx(ctx).With().Str("component", "outbox").Str("transport", s.transport).Logger()
	ctx = log.WithContext(ctx)
	for {
		wait, err := s.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Error().Err(err).Msg("Outbox pass failed; retrying")
			wait = s.cfg.MinBackoff
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// pass tries the head message of every room once and says how long to wait
// before the next pass (0: go again at once, some progress was made).
func (s *Sender) pass(ctx context.Context) (time.Duration, error) {
	// This pass reads what was committed before any wake-up already sent:
	// consume it, so that the wait after a pass that finds nothing is not
	// cut short for nothing.
	select {
	case <-s.wake:
	default:
	}
	heads, err := s.ledger.PendingHeads(ctx, s.transport)
	if err != nil {
		return 0, fmt.Errorf("read pending messages: %w", err)
	}
	s.forgetRetries(heads)
	wait := s.cfg.Poll
	progressed := false
	for _, m := range heads {
		now := s.cfg.Clock.Now()
		if now.Before(s.pausedUntil) {
			break
		}
		if at, ok := s.retryAt[m.ID]; ok && now.Before(at) {
			wait = min(wait, at.Sub(now))
			continue
		}
		if err := s.deliver(ctx, m); err != nil {
			return 0, err
		}
		if ctx.Err() != nil {
			return 0, nil
		}
		if _, retrying := s.retryAt[m.ID]; !retrying && !s.cfg.Clock.Now().Before(s.pausedUntil) {
			progressed = true
		}
	}
	if progressed {
		return 0, nil
	}
	if paused := s.pausedUntil.Sub(s.cfg.Clock.Now()); paused > 0 {
		wait = min(wait, paused)
	}
	return wait, nil
}

// forgetRetries drops the retry times of messages no longer pending (their
// echo marked them sent): a message waiting for a retry is its room's head.
func (s *Sender) forgetRetries(heads []store.OutMessage) {
	if len(s.retryAt) == 0 {
		return
	}
	pending := make(map[int64]bool, len(heads))
	for _, m := range heads {
		pending[m.ID] = true
	}
	for id := range s.retryAt {
		if !pending[id] {
			delete(s.retryAt, id)
		}
	}
}

// deliver makes one attempt; it returns an error only when the store fails.
func (s *Sender) deliver(ctx context.Context, m store.OutMessage) error {
	log := zerolog.Ctx(ctx).With().Int64("outbox_id", m.ID).Str("room", m.Room).Logger()
	d, err := s.resolve(ctx, m)
	var remoteID string
	delivered := false
	if r, ok := s.to.(Reconciler); ok && err == nil && !m.AttemptedAt.IsZero() {
		remoteID, delivered, err = r.Reconcile(ctx, d)
		if delivered {
			log.Info().Str("remote_id", remoteID).Msg("An interrupted attempt had delivered the message; not sending it again")
		}
	}
	if err == nil && !delivered {
		if err = s.ledger.StartAttempt(ctx, m.ID); err != nil {
			return err
		}
		m.Attempts++
		remoteID, err = s.to.Deliver(ctx, d)
	}
	if err == nil {
		delete(s.retryAt, m.ID)
		if m.Attempts > 1 {
			log.Info().Int("attempts", m.Attempts).Msg("Message delivered after retries")
		}
		s.metrics.MessagesSent.WithLabelValues(s.transport).Inc()
		return s.ledger.MarkSent(ctx, m.ID, remoteID)
	}
	if ctx.Err() != nil {
		return nil // shutting down: the message stays pending and is resent on start
	}
	permanent, retryAfter, refused := classify(err)
	switch {
	case permanent:
		return s.fail(ctx, m, err.Error())
	case s.cfg.Clock.Now().Sub(m.CreatedAt) > s.cfg.GiveUpAfter && s.cfg.GiveUpAfter > 0:
		return s.fail(ctx, m, fmt.Sprintf("gave up after %d attempts over %s: %v", m.Attempts, s.cfg.GiveUpAfter, err))
	case retryAfter > 0:
		s.pausedUntil = s.cfg.Clock.Now().Add(retryAfter)
		s.metrics.MessagesRetried.WithLabelValues(s.transport, "rate_limited").Inc()
		log.Warn().Err(err).Stringer("retry_after", retryAfter.Round(time.Millisecond)).Msg("Rate limited by the server; pausing delivery")
	default:
		delay := s.backoff(m.Attempts - 1)
		s.retryAt[m.ID] = s.cfg.Clock.Now().Add(delay)
		s.metrics.MessagesRetried.WithLabelValues(s.transport, "transient").Inc()
		ev := log.Debug()
		if m.Attempts <= 1 {
			ev = log.Warn() // once per message; later attempts are noise
		}
		ev.Err(err).Int("attempt", m.Attempts).Stringer("retry_in", delay.Round(time.Millisecond)).Msg("Delivery failed; will retry")
	}
	return s.ledger.RecordFailure(ctx, m.ID, err.Error(), refused)
}

// resolve turns edit and thread references into remote IDs. The referenced
// message is normally already sent (same room, earlier in the queue); if it
// failed, this one can never be delivered.
func (s *Sender) resolve(ctx context.Context, m store.OutMessage) (Delivery, error) {
	d := Delivery{OutMessage: m}
	refs := []struct {
		id  int64
		out *string
		rel string
	}{{m.EditOf, &d.EditOfRemote, "edited"}, {m.ThreadRoot, &d.ThreadRootRemote, "thread root"}}
	for _, ref := range refs {
		if ref.id == 0 {
			continue
		}
		orig, err := s.ledger.Message(ctx, ref.id)
		if err != nil {
			return d, err
		}
		switch orig.State {
		case store.StateSent:
			*ref.out = orig.RemoteID
		case store.StateFailed:
			return d, Permanent(fmt.Errorf("the %s message %d was never delivered", ref.rel, ref.id))
		default:
			return d, fmt.Errorf("the %s message %d is not delivered yet", ref.rel, ref.id)
		}
	}
	return d, nil
}

func (s *Sender) fail(ctx context.Context, m store.OutMessage, reason string) error {
	delete(s.retryAt, m.ID)
	s.metrics.MessagesFailed.WithLabelValues(s.transport).Inc()
	zerolog.Ctx(ctx).Error().Int64("outbox_id", m.ID).Str("room", m.Room).Str("reason", reason).Msg("Giving up on message")
	return s.ledger.MarkFailed(ctx, m.ID, reason)
}

// backoff is exponential from MinBackoff, capped, with ±20% jitter so that
// many queued messages do not retry in lockstep.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.cfg.MinBackoff << min(attempts, 20)
	if d <= 0 || d > s.cfg.MaxBackoff {
		d = s.cfg.MaxBackoff
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Drain waits until no message of this transport is pending, or ctx ends.
// The console uses it to exit once every reply is printed.
func (s *Sender) Drain(ctx context.Context) error {
	for {
		msgs, err := s.ledger.Pending(ctx, s.transport, 1)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), fmt.Errorf("%s messages still pending", s.transport))
		case <-time.After(20 * time.Millisecond):
		}
	}
}
