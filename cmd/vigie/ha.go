package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/vigie/vigie/backups"
	"github.com/vigie/vigie/bot"
	"github.com/vigie/vigie/config"
	"github.com/vigie/vigie/leader"
	"github.com/vigie/vigie/replica"
	"github.com/vigie/vigie/store"
	"github.com/vigie/vigie/watchers"
)

// runHA waits for leadership, restores the state the last leader
// replicated, and leads until leadership is lost (the process then ends:
// its supervisor starts it again, as a candidate) or ctx ends (the lock is
// then handed over without a lock delay, after a last upload).
func (p *process) runHA(ctx context.Context) error {
	cfg, log := p.cfg, p.log
	consul, err := consulClient(cfg)
	if err != nil {
		return err
	}
	storage, err := s3Storage(cfg)
	if err != nil {
		return err
	}
	el := leader.New(leader.Config{
		Client: consul, Address: cfg.Consul.Address, Key: cfg.HA.LockKey, Instance: cfg.HA.Instance,
		TTL: cfg.HA.SessionTTL.Duration, LockDelay: cfg.HA.LockDelay.Duration,
		Fingerprint: cfg.Fingerprint(), Clock: p.clock,
	})
	p.setReadiness(func(context.Context) error { return candidateReady(el.Status()) })
	p.metrics.RegisterRole(func() string { return el.Status().Role })
	p.prepareDevice(ctx)
	log.Info().Str("instance", cfg.HA.Instance).Str("lock", cfg.HA.LockKey).Msg("Campaigning for leadership")
	term, err := el.Campaign(ctx)
	if err != nil {
		return nil // ctx ended
	}
	tookAt := p.clock.Now()
	log.Info().Uint64("term", term.Index).Msg("Leading: restoring the replicated state")
	t := &haTerm{p: p, term: term, storage: storage, tookAt: tookAt}
	if err := t.restore(ctx); err != nil {
		_ = term.Release(context.WithoutCancel(ctx))
		return err
	}
	err = p.lead(ctx, t)
	if term.Lost.Err() != nil {
		log.Error().Err(context.Cause(term.Lost)).Msg("Leadership lost: stopped watching, alerting and sending")
		return err
	}
	// Asked to stop: the last changes go to S3, then the lock to the other
	// instance at once.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if t.replicator != nil {
		if ferr := t.replicator.Flush(stopCtx); ferr != nil {
			log.Warn().Err(ferr).Msg("Last upload of the state failed; the next leader restores the one before")
		}
	}
	if rerr := term.Release(stopCtx); rerr != nil {
		log.Warn().Err(rerr).Msg("Cannot release the lock; the next leader waits for the session to expire")
	}
	return err
}

// deviceSetupTimeout bounds a candidate's login before it campaigns.
const deviceSetupTimeout = 30 * time.Second

// prepareDevice logs this instance's device in and publishes its keys
// before it campaigns, without syncing: the leader then shares the room
// keys of what it sends with this device too, and at takeover this
// device can read, in encrypted rooms, what the last leader sent (to
// adopt it rather than send it again). A failure only costs that.
func (p *process) prepareDevice(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, deviceSetupTimeout)
	defer cancel()
	local, err := store.Open(ctx, p.cfg.SessionDir(), p.clock)
	if err != nil {
		p.log.Warn().Err(err).Msg("Cannot open the instance's own store to prepare its Matrix device")
		return
	}
	defer local.Close()
	b := bot.New(p.botConfig(p.started, time.Time{}), local, nil, nil, p.log)
	defer b.Close()
	if err := b.Start(ctx); err != nil {
		p.log.Warn().Err(err).Msg("Cannot prepare this instance's Matrix device before leading; it logs in when it leads")
	}
}

// candidateReady: a candidate is ready while it can campaign; one whose
// configuration differs from the leader's, or which cannot reach Consul,
// is not, and says why.
func candidateReady(s leader.Status) error {
	switch {
	case s.Role == leader.Refusing:
		return errors.New(s.Reason)
	case s.Role == leader.Candidate && s.Reason != "":
		return fmt.Errorf("cannot campaign for leadership: %s", s.Reason)
	}
	return nil
}

// haTerm is what a leadership adds to leading: the restored state, its
// replication, and the bot's own session kept with this instance.
type haTerm struct {
	p         *process
	term      *leader.Term
	storage   *backups.Storage
	tookAt    time.Time
	restored  replica.Restored
	lostState string // why the state could not be restored; "" if it was
	// index numbers this term's replicas: the lock's index, or above the
	// bucket's highest term when the lock key was recreated (its index
	// restarts at 1, and an older leader's replicas must not win).
	index      uint64
	local      *store.Store
	replicator *replica.Replicator
}

// restoreRetry is the wait between restore attempts while S3 is unavailable.
const restoreRetry = 2 * time.Second

// restore puts the newest good replica in place. S3 unavailable is
// retried until restore_timeout; then, or when every replica is refused,
// the leader starts without it (the stale database is kept aside) and an
// incident says the state was lost.
func (t *haTerm) restore(ctx context.Context) error {
	cfg, log := t.p.cfg, t.p.log
	deadline := t.p.clock.Now().Add(cfg.HA.RestoreTimeout.Duration)
	for {
		r, err := replica.Restore(ctx, t.storage, cfg.ReplicaPrefix(), cfg.DataDir)
		for _, ref := range r.Refused {
			log.Error().Str("replica", ref.Key).Str("reason", ref.Reason).Msg("State replica refused")
		}
		t.index = max(t.term.Index, r.HighestTerm+1)
		switch {
		case err == nil:
			t.restored = r
			if r.Fresh {
				log.Warn().Msg("No state replica in S3 yet: starting from the local data directory")
			} else {
				log.Info().Str("replica", r.Key).Uint64("term", r.Manifest.Term).Uint64("seq", r.Manifest.Seq).Str("written_by", r.Manifest.Instance).Msg("State restored")
			}
			return nil
		case errors.Is(err, replica.ErrNoUsableReplica):
			t.lostState = fmt.Sprintf("every state replica was refused (%d)", len(r.Refused))
		case !errors.Is(err, replica.ErrUnavailable):
			return fmt.Errorf("restore the state: %w", err)
		case t.p.clock.Now().Before(deadline):
			log.Warn().Err(err).Msg("S3 unavailable: cannot restore the state yet; retrying")
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.term.Lost.Done():
				return context.Cause(t.term.Lost)
			case <-time.After(restoreRetry):
			}
			continue
		default:
			t.lostState = fmt.Sprintf("S3 unavailable for %s: %v", cfg.HA.RestoreTimeout, err)
		}
		log.Error().Str("why", t.lostState).Msg("Leading with an empty state: incidents, silences and pending messages of the last leader are lost")
		return setAside(cfg.DataDir, t.p.clock.Now())
	}
}

// setAside moves a database that may be stale out of the way, never
// deleting it.
func setAside(dataDir string, now time.Time) error {
	path := filepath.Join(dataDir, store.FileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	aside := fmt.Sprintf("%s.unrestored-%s", path, now.UTC().Format("20060102T150405Z"))
	for _, suffix := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+suffix, aside+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return os.Rename(path, aside)
}

// prepare sets up what leading adds: the bot's own state, which keeps the
// Matrix session (device, token, sync position) with this instance (each
// instance is its own device of the bot's account, and the replicated
// state never holds an access token), and the replication of the shared
// state, whose target is a source Vigie watches: S3 refusing it long
// enough is an incident in the rooms.
func (t *haTerm) prepare(ctx context.Context, a *app) (bot.State, error) {
	cfg := t.p.cfg
	r, err := replica.New(replica.Config{
		Storage: t.storage, Prefix: cfg.ReplicaPrefix(), Source: a.store, Term: t.index, Instance: cfg.HA.Instance,
		Interval: cfg.HA.ReplicateInterval.Duration, TempDir: cfg.DataDir, Clock: t.p.clock,
		Lookout: a.sight.Add("replica", "State replica (S3)", cfg.S3.Endpoint),
	})
	if err != nil {
		return nil, err
	}
	local, err := store.Open(ctx, cfg.SessionDir(), t.p.clock)
	if err != nil {
		return nil, fmt.Errorf("the instance's own store (its Matrix session): %w", err)
	}
	t.replicator, t.local = r, local
	return instanceState{Store: a.store, local: local}, nil
}

func (t *haTerm) closeLocal() {
	if t.local != nil {
		t.local.Close()
	}
}

// instanceState is the shared store, but for the session's values.
type instanceState struct {
	*store.Store
	local *store.Store
}

func (s instanceState) Value(ctx context.Context, key string) (string, bool, error) {
	return s.local.Value(ctx, key)
}

func (s instanceState) SetValue(ctx context.Context, key, value string) error {
	return s.local.SetValue(ctx, key, value)
}

// adoptWindow is how far back a new leader looks for what the last one
// sent when it has no replica's time to start from.
const adoptWindow = time.Hour

// adoptSince is from when the rooms may hold messages the restored state
// does not know: the replica's time (a minute earlier, for clocks apart).
func (t *haTerm) adoptSince() time.Time {
	if t.restored.Fresh || t.lostState != "" {
		return t.tookAt.Add(-adoptWindow)
	}
	return t.restored.Manifest.Created.Add(-time.Minute)
}

// news tells the room about the takeover: who leads, from what state.
func (t *haTerm) news() watchers.Batch {
	l := &watchers.Leadership{Instance: t.p.cfg.HA.Instance, Term: t.index, At: t.tookAt, Lost: t.lostState}
	for _, r := range t.restored.Refused {
		l.Refused = append(l.Refused, r.String())
	}
	m := t.restored.Manifest
	switch {
	case t.restored.Fresh:
		l.From = "the local data directory (no replica in S3 yet)"
	case t.lostState == "":
		l.From = fmt.Sprintf("the replica of %s written by %s (term %d)", m.Created.UTC().Format(time.RFC3339), m.Instance, m.Term)
	}
	evs := []watchers.Event{{Source: "vigie", Topic: watchers.TopicLeader, Type: watchers.LeaderTookOver, Index: t.index, Time: t.tookAt, Leader: l}}
	if t.lostState != "" {
		l.From = "an empty state"
		evs = append(evs, watchers.Event{Source: "vigie", Topic: watchers.TopicLeader, Type: watchers.LeaderStateLost, Index: t.index, Time: t.tookAt, Leader: l})
	}
	return watchers.Batch{Events: evs}
}

// ready: a leader whose state does not reach S3 is not ready.
func (t *haTerm) ready() error {
	if s := t.replicator.Status(); s.LastError != "" && s.Failures > 1 {
		return fmt.Errorf("state replication to S3 failing (%d in a row): %s", s.Failures, s.LastError)
	}
	return nil
}

// consulClient is the [consul] connection, for the lock.
func consulClient(cfg *config.Config) (*api.Client, error) {
	_, consulTLS, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	c := api.DefaultNonPooledConfig()
	c.Address, c.Datacenter, c.Token = cfg.Consul.Address, cfg.Consul.Datacenter, cfg.Consul.Token.Reveal()
	tr := c.Transport.Clone()
	tr.TLSClientConfig = consulTLS.Clone()
	c.HttpClient = &http.Client{Transport: tr}
	return api.NewClient(c)
}
