// Package leader elects one Vigie instance among several through a Consul
// lock, as Consul's own `api.Lock` does it, with a session this package
// owns: it renews the session itself so that a leader which cannot reach
// Consul stops within one TTL, well before Consul hands the lock to another
// (one to two TTLs after the last renewal, plus the lock delay).
//
// Beside the lock key, the leader holds <key>/config, the fingerprint of its
// configuration, acquired with the same session: it disappears from the
// leader's hold when the session ends. An instance whose configuration
// differs from a live leader's does not contend; it says which keys differ.
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/vigie/vigie/clock"
	"github.com/vigie/vigie/config"
)

// Config is an elector's.
type Config struct {
	Client      *api.Client
	Address     string // Consul's, for messages
	Key         string // the lock's KV key
	Instance    string
	TTL         time.Duration // session TTL
	LockDelay   time.Duration
	Fingerprint map[string]string // this instance's configuration, key by key
	Clock       clock.Clock
	// RetryMin and RetryMax bound the waits after Consul failed.
	RetryMin, RetryMax time.Duration
}

// Elector campaigns for leadership and tells what it sees.
type Elector struct {
	cfg Config

	mu     sync.Mutex
	status Status
}

// Role of an instance.
const (
	Candidate = "candidate" // waiting for the lock
	Leader    = "leader"
	Refusing  = "refusing" // its configuration differs from the leader's
)

// Status is what an elector reports in /readyz and logs.
type Status struct {
	Role   string
	Since  time.Time
	Leader string // the instance holding the lock, when known
	Reason string // why not leading, or why leadership ended
}

// New returns an elector; it contacts nothing.
func New(cfg Config) *Elector {
	cfg.Clock = clock.OrSystem(cfg.Clock)
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = 30 * time.Second
	}
	return &Elector{cfg: cfg, status: Status{Role: Candidate, Since: cfg.Clock.Now()}}
}

// Status is the elector's current view.
func (e *Elector) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status
}

func (e *Elector) set(role, leader, reason string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.status.Role != role {
		e.status.Since = e.cfg.Clock.Now()
	}
	e.status.Role, e.status.Leader, e.status.Reason = role, leader, reason
}

// Term is one leadership, from acquiring the lock until it is lost or
// released.
type Term struct {
	// Index is the lock's LockIndex at acquisition: each acquisition of
	// the key raises it, so a later leader's term is higher.
	Index uint64
	// Lost is cancelled the moment leadership ends; context.Cause says why.
	Lost context.Context

	release func(ctx context.Context) error
}

// Release gives the lock up without a lock delay (a planned handover)
// and ends the term.
func (t *Term) Release(ctx context.Context) error { return t.release(ctx) }

// Campaign blocks until this instance leads or ctx ends. Consul errors are
// retried with backoff (and reported in Status); a configuration that
// differs from a live leader's waits until that leader is gone.
func (e *Elector) Campaign(ctx context.Context) (*Term, error) {
	log := zerolog.Ctx(ctx)
	wait := e.cfg.RetryMin
	for {
		t, err := e.try(ctx)
		if t != nil {
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var differ *differsError
		if errors.As(err, &differ) {
			e.set(Refusing, differ.leader, err.Error())
			log.Warn().Str("leader", differ.leader).Strs("keys", differ.keys).Msg("Not contending for leadership: this configuration differs from the leader's")
			wait = e.cfg.RetryMax
		} else {
			e.set(Candidate, "", err.Error())
			log.Warn().Err(err).Stringer("retry_in", wait).Msg("Cannot campaign for leadership; retrying")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, e.cfg.RetryMax)
	}
}

// differsError: the leader's configuration is not this one.
type differsError struct {
	leader string
	keys   []string
}

func (d *differsError) Error() string {
	return fmt.Sprintf("this configuration differs from the one of the leader %s on %v; it will not lead while that leader lives", d.leader, d.keys)
}

// leaderConfig is the value of <key>/config.
type leaderConfig struct {
	Instance    string            `json:"instance"`
	Fingerprint map[string]string `json:"fingerprint"`
}

func (e *Elector) configKey() string { return e.cfg.Key + "/config" }

// checkConfig refuses to contend against a live leader configured otherwise.
func (e *Elector) checkConfig(ctx context.Context) error {
	pair, _, err := e.cfg.Client.KV().Get(e.configKey(), (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return e.consulErr("read the leader's configuration", err)
	}
	if pair == nil || pair.Session == "" {
		return nil // no live leader
	}
	var lc leaderConfig
	if err := json.Unmarshal(pair.Value, &lc); err != nil {
		return fmt.Errorf("the leader's configuration at %s is not what Vigie writes: %w", e.configKey(), err)
	}
	if lc.Instance == e.cfg.Instance {
		return nil
	}
	if keys := config.FingerprintDiff(lc.Fingerprint, e.cfg.Fingerprint); len(keys) > 0 {
		return &differsError{leader: lc.Instance, keys: keys}
	}
	return nil
}

func (e *Elector) consulErr(what string, err error) error {
	return fmt.Errorf("consul %s: %s: %w", e.cfg.Address, what, err)
}

// try makes one attempt: a session, then the lock, waiting while another
// instance holds it.
func (e *Elector) try(ctx context.Context) (*Term, error) {
	if err := e.checkConfig(ctx); err != nil {
		return nil, err
	}
	sess := e.cfg.Client.Session()
	// No health check: only the TTL ends the session, so that the renewals
	// below, which stop this leader at one TTL, decide before Consul does
	// (at one to two TTLs). A node check would end it at once, while
	// this leader may still be sending.
	id, _, err := sess.CreateNoChecks(&api.SessionEntry{
		Name: "vigie " + e.cfg.Instance, TTL: e.cfg.TTL.String(), LockDelay: e.cfg.LockDelay,
		Behavior: api.SessionBehaviorRelease,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, e.consulErr("create a session", err)
	}
	termCtx, end := context.WithCancelCause(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		e.renew(termCtx, id, end)
	}()
	destroy := func() {
		end(errors.New("released"))
		<-renewed
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = sess.Destroy(id, (&api.WriteOptions{}).WithContext(dctx))
	}
	e.set(Candidate, "", "")
	lock, err := e.cfg.Client.LockOpts(&api.LockOptions{
		Key: e.cfg.Key, Value: []byte(e.cfg.Instance), Session: id,
		LockWaitTime: 15 * time.Second,
		// The monitor's reads may fail while the session is still
		// valid; the renewals below decide when leadership ends.
		MonitorRetries: 1 << 20, MonitorRetryTime: time.Second,
	})
	if err != nil {
		destroy()
		return nil, err
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-termCtx.Done():
		}
		close(stop)
	}()
	held, err := e.waitLock(ctx, lock, stop)
	if err != nil || held == nil {
		destroy()
		if err == nil {
			err = context.Cause(termCtx)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
		return nil, err
	}
	go func() {
		select {
		case <-held:
			end(errors.New("Consul says another session holds the lock, or the key is gone"))
		case <-termCtx.Done():
		}
	}()
	index, err := e.acquired(ctx, id)
	if err != nil {
		_ = lock.Unlock()
		destroy()
		return nil, err
	}
	e.set(Leader, e.cfg.Instance, "")
	go func() {
		<-termCtx.Done()
		e.set(Candidate, "", "leadership ended: "+context.Cause(termCtx).Error())
	}()
	return &Term{Index: index, Lost: termCtx, release: func(ctx context.Context) error {
		// Released, not left to the session's end, which would put both
		// keys under the lock delay for the next leader.
		_, _, cerr := e.cfg.Client.KV().Release(&api.KVPair{Key: e.configKey(), Session: id}, (&api.WriteOptions{}).WithContext(ctx))
		err := lock.Unlock()
		destroy()
		return errors.Join(err, cerr)
	}}, nil
}

// waitLock waits for the lock, reporting the holder meanwhile.
func (e *Elector) waitLock(ctx context.Context, lock *api.Lock, stop chan struct{}) (<-chan struct{}, error) {
	watchCtx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		e.watchHolder(watchCtx)
	}()
	defer func() { cancel(); <-watched }()
	held, err := lock.Lock(stop)
	if err != nil {
		return nil, e.consulErr("take the lock "+e.cfg.Key, err)
	}
	return held, nil
}

// watchHolder follows who holds the lock while this instance waits, for
// its status and the log.
func (e *Elector) watchHolder(ctx context.Context) {
	var index uint64
	holder := ""
	for ctx.Err() == nil {
		pair, meta, err := e.cfg.Client.KV().Get(e.cfg.Key, (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx))
		if err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(e.cfg.RetryMin):
			}
			continue
		}
		index = meta.LastIndex
		now := ""
		if pair != nil && pair.Session != "" {
			now = string(pair.Value)
		}
		if now == e.cfg.Instance {
			return // this instance took it
		}
		if now != holder && ctx.Err() == nil {
			holder = now
			e.set(Candidate, holder, "")
			if holder != "" {
				zerolog.Ctx(ctx).Info().Str("leader", holder).Msg("Another instance leads; waiting, ready to take over")
			}
		}
	}
}

// acquired learns the term and publishes the configuration under the
// session.
func (e *Elector) acquired(ctx context.Context, session string) (uint64, error) {
	kv := e.cfg.Client.KV()
	pair, _, err := kv.Get(e.cfg.Key, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return 0, e.consulErr("read the lock", err)
	}
	if pair == nil || pair.Session != session {
		return 0, errors.New("the lock was lost as soon as it was taken")
	}
	value, err := json.Marshal(leaderConfig{Instance: e.cfg.Instance, Fingerprint: e.cfg.Fingerprint})
	if err != nil {
		return 0, err
	}
	ok, _, err := kv.Acquire(&api.KVPair{Key: e.configKey(), Value: value, Session: session}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return 0, e.consulErr("publish the configuration at "+e.configKey(), err)
	}
	if !ok {
		return 0, fmt.Errorf("cannot hold %s (within its lock delay, or held by another session)", e.configKey())
	}
	return pair.LockIndex, nil
}

// renew keeps the session alive every TTL/3. It ends the term when Consul
// says the session is gone, or at one TTL after the last renewal that
// succeeded, even with a renewal in flight: Consul may invalidate the
// session from then on, and another instance take the lock a lock delay
// later.
func (e *Elector) renew(ctx context.Context, id string, end context.CancelCauseFunc) {
	sess := e.cfg.Client.Session()
	every := e.cfg.TTL / 3
	deadline := e.cfg.Clock.Now().Add(e.cfg.TTL)
	wait := every
	var lastErr error
	for {
		left := deadline.Sub(e.cfg.Clock.Now())
		if left <= 0 {
			end(fmt.Errorf("Consul unreachable for %s (the session TTL): %w", e.cfg.TTL, e.consulErr("renew the session", lastErr)))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(wait, left)):
		}
		rctx, cancel := context.WithTimeout(ctx, min(every, max(deadline.Sub(e.cfg.Clock.Now()), time.Millisecond)))
		entry, _, err := sess.Renew(id, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && entry == nil:
			end(errors.New("Consul invalidated the session (its TTL expired, or it was destroyed)"))
			return
		case err != nil:
			lastErr, wait = err, time.Second
		default:
			deadline, lastErr, wait = e.cfg.Clock.Now().Add(e.cfg.TTL), nil, every
		}
	}
}
