package incidents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/vigie/vigie/store"
)

// tick is how often owed edits, reminders and expiries are looked at.
const tick = time.Second

// Run performs the timed work until ctx is done: debounced edits, storm
// summaries, reminders, the end of flapping and of silences.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			zerolog.Ctx(ctx).Error().Err(err).Msg("Incident timers failed; retrying")
		}
	}
}

// Tick does one round of timed work.
func (e *Engine) Tick(ctx context.Context) error {
	return e.write(ctx, func(p *pass) error {
		errs := errors.Join(p.settled(ctx), p.overdueHolds(ctx), p.timers(ctx), p.flushEdits(ctx), p.flushSummaries(ctx))
		if p.now.Sub(e.prunedAt) >= pruneEvery {
			errs = errors.Join(errs, p.prune(ctx))
			e.prunedAt = p.now // a failed commit postpones pruning to the next round
		}
		return errs
	})
}

// How long facts unseen are kept, and how often they are pruned.
const (
	// One fact per allocation ever seen; a live one is learnt again at
	// its next event.
	allocFactTTL = 30 * 24 * time.Hour
	// Deployments, drains and Stolon failovers refresh their fact at each
	// event; a deployment or drain whose end was missed must not hold its
	// job's or node's checks forever, nor a failover's fact outlive the
	// watch of its cluster.
	holdFactTTL = 24 * time.Hour
	pruneEvery  = time.Hour
)

func (p *pass) prune(ctx context.Context) error {
	return errors.Join(
		p.forgetFactsBefore(ctx, factAlloc, p.now.Add(-allocFactTTL)),
		p.forgetFactsBefore(ctx, factDeploy, p.now.Add(-holdFactTTL)),
		p.forgetFactsBefore(ctx, factDrain, p.now.Add(-holdFactTTL)),
		p.forgetFactsBefore(ctx, factFailover, p.now.Add(-holdFactTTL)),
	)
}

// settled resolves the incidents whose key stayed quiet for the settle time.
func (p *pass) settled(ctx context.Context) error {
	due, err := p.synced(ctx).SettledIncidents(ctx, p.now)
	if err != nil {
		return err
	}
	for i := range due {
		in := &due[i]
		if err := p.resolve(ctx, in, in.SettleReason+" for "+duration(p.e.cfg.SettleAfter)); err != nil {
			return err
		}
	}
	return nil
}

// overdueHolds posts the incidents held for longer than MaxHold: the end of
// what held them was missed, or it is taking too long to be waited on.
func (p *pass) overdueHolds(ctx context.Context) error {
	due, err := p.synced(ctx).OverdueHolds(ctx, p.now)
	if err != nil {
		return err
	}
	for i := range due {
		in := &due[i]
		why := "still failing after " + duration(p.e.cfg.MaxHold) + " of the " + in.HoldReason
		if err := p.unhold(ctx, in, why); err != nil {
			return err
		}
	}
	return nil
}

func (p *pass) flushEdits(ctx context.Context) error {
	due, err := p.synced(ctx).DueIncidents(ctx, p.now)
	if err != nil {
		return err
	}
	for i := range due {
		in := &due[i]
		in.EditDueAt, in.LastEditAt = time.Time{}, p.now
		if err := p.save(ctx, in); err != nil {
			return err
		}
		if err := p.edit(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

func (p *pass) flushSummaries(ctx context.Context) error {
	due, err := p.tx.DueSummaries(ctx, p.now)
	if err != nil {
		return err
	}
	for i := range due {
		sum := &due[i]
		ins, err := p.synced(ctx).SummaryIncidents(ctx, sum.ID)
		if err != nil {
			return err
		}
		if len(ins) == 0 {
			continue
		}
		sum.EditDueAt, sum.LastEditAt = time.Time{}, p.now
		out := p.e.message(sum.Transport, sum.Room, renderSummary(ins, p.now))
		if hash := contentHash(out); hash != sum.LastHash {
			sum.LastHash = hash
			out.EditOf = sum.OutboxID
			if _, err := p.enqueue(ctx, out); err != nil {
				return err
			}
		}
		if err := p.tx.SaveSummary(ctx, sum); err != nil {
			return err
		}
	}
	return nil
}

// timers handles reminders, flapping that calmed down and silences that
// ended, over the open incidents.
func (p *pass) timers(ctx context.Context) error {
	open, err := p.synced(ctx).IncidentsInState(ctx, store.IncidentOpen)
	if err != nil {
		return err
	}
	for i := range open {
		in := &open[i]
		switch {
		case in.SilencedBy != "":
			if err := p.unsilenceIfEnded(ctx, in); err != nil {
				return err
			}
		case in.Flapping && len(in.Changes) > 0 && p.now.Sub(time.UnixMilli(in.Changes[len(in.Changes)-1])) >= p.e.cfg.FlapWindow:
			in.Flapping, in.Changes = false, nil
			if err := p.editSoon(ctx, in); err != nil {
				return err
			}
		case p.e.cfg.ReminderInterval > 0 && Severity(in.Severity) == Critical && in.AckedBy == "" &&
			p.now.Sub(latest(in.OpenedAt, in.RemindedAt)) >= p.e.cfg.ReminderInterval:
			in.Reminders++
			in.RemindedAt = p.now
			if err := p.editSoon(ctx, in); err != nil {
				return err
			}
			if err := p.thread(ctx, in, renderReminder(in, p.now), false); err != nil {
				return err
			}
		}
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unsilenceIfEnded posts (or updates) an incident whose silence ended.
func (p *pass) unsilenceIfEnded(ctx context.Context, in *store.Incident) error {
	by, err := p.silencedBy(ctx, in)
	if err != nil || by != "" {
		return err
	}
	in.SilencedBy = ""
	msgs, err := p.tx.IncidentMessages(ctx, in.ID)
	if err != nil {
		return err
	}
	if len(msgs) == 0 {
		return p.post(ctx, in, nil)
	}
	return p.editSoon(ctx, in)
}

// ErrNotFound is returned for an incident or silence that does not exist.
var ErrNotFound = errors.New("not found")

// Acknowledge marks an incident acknowledged by who and edits its messages.
func (e *Engine) Acknowledge(ctx context.Context, id int64, who string) (store.Incident, error) {
	return e.change(ctx, id, func(p *pass, in *store.Incident) error {
		if in.State != store.IncidentOpen && in.State != store.IncidentHeld {
			return fmt.Errorf("incident #%d is %s", id, in.State)
		}
		if in.AckedBy != "" {
			return fmt.Errorf("incident #%d was already acknowledged by %s", id, in.AckedBy)
		}
		in.AckedBy = who
		return nil
	})
}

// SilenceIncident silences one incident until it resolves.
func (e *Engine) SilenceIncident(ctx context.Context, id int64, who string) (store.Incident, error) {
	return e.change(ctx, id, func(p *pass, in *store.Incident) error {
		if in.State != store.IncidentOpen && in.State != store.IncidentHeld {
			return fmt.Errorf("incident #%d is %s", id, in.State)
		}
		active, err := p.tx.ActiveSilences(ctx, p.now)
		if err != nil {
			return err
		}
		for _, s := range active {
			if s.IncidentID == id {
				return fmt.Errorf("incident #%d is already silenced until resolved by %s", id, s.CreatedBy)
			}
		}
		// A timed silence may cover it too; this one lasts until resolved.
		in.SilencedBy = who
		return p.tx.AddSilence(ctx, &store.Silence{IncidentID: id, CreatedBy: who, CreatedAt: p.now, Reason: "until resolved"})
	})
}

// change applies fn to an incident and edits its messages.
func (e *Engine) change(ctx context.Context, id int64, fn func(*pass, *store.Incident) error) (store.Incident, error) {
	var in store.Incident
	err := e.write(ctx, func(p *pass) error {
		var ok bool
		var err error
		if in, ok, err = p.synced(ctx).Incident(ctx, id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("incident #%d: %w", id, ErrNotFound)
		}
		if err := fn(p, &in); err != nil {
			return err
		}
		return p.editSoon(ctx, &in)
	})
	return in, err
}

// IncidentIDByEvent finds the incident whose message is the given remote
// event (a reaction's target).
func (e *Engine) IncidentIDByEvent(ctx context.Context, transport, eventID string) (int64, bool, error) {
	var in store.Incident
	var ok bool
	err := e.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		in, ok, err = tx.IncidentByRemoteID(ctx, transport, eventID)
		return err
	})
	return in.ID, ok, err
}

// Live returns the open and held incidents, oldest first.
func (e *Engine) Live(ctx context.Context) ([]store.Incident, error) {
	var out []store.Incident
	err := e.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.IncidentsInState(ctx, store.IncidentOpen, store.IncidentHeld)
		return err
	})
	return out, err
}

// AddSilence silences every incident matching the matchers for d. Open
// incidents it covers are marked at once.
func (e *Engine) AddSilence(ctx context.Context, matchers []Matcher, d time.Duration, reason, who string) (store.Silence, error) {
	var s store.Silence
	err := e.write(ctx, func(p *pass) error {
		s = store.Silence{Matchers: FormatMatchers(matchers), Reason: reason, CreatedBy: who, CreatedAt: p.now, ExpiresAt: p.now.Add(d)}
		if err := p.tx.AddSilence(ctx, &s); err != nil {
			return err
		}
		open, err := p.synced(ctx).IncidentsInState(ctx, store.IncidentOpen, store.IncidentHeld)
		if err != nil {
			return err
		}
		for i := range open {
			in := &open[i]
			if in.SilencedBy != "" || !matches(matchers, in) {
				continue
			}
			in.SilencedBy = "silence #" + fmt.Sprint(s.ID) + " (" + who + ")"
			if err := p.editSoon(ctx, in); err != nil {
				return err
			}
		}
		return nil
	})
	return s, err
}

// EndSilence ends a silence; incidents it covered are posted or updated by
// the next tick.
func (e *Engine) EndSilence(ctx context.Context, id int64) error {
	return e.st.InTx(ctx, func(tx *store.Tx) error {
		ok, err := tx.EndSilence(ctx, id)
		if err == nil && !ok {
			err = fmt.Errorf("silence #%d: %w (or already ended)", id, ErrNotFound)
		}
		return err
	})
}

// Silences returns the silences in force.
func (e *Engine) Silences(ctx context.Context) ([]store.Silence, error) {
	var out []store.Silence
	err := e.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		out, err = tx.ActiveSilences(ctx, tx.Now())
		return err
	})
	return out, err
}
