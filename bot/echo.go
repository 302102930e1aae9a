package bot

import (
	"context"
	"strings"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/outbox"
)

// txnPrefix starts every transaction ID of the outbox.
const txnPrefix = "vigie."

// keyProcessed stores the sync position whose events were all handled.
// mautrix saves next_batch before running handlers, so that one may be
// past echoes nobody saw if the process died in between.
const keyProcessed = "matrix.processed_batch"

// echoes tracks what the sync loop has fully processed: the echoes of our
// own messages (the homeserver gives the sending session the transaction
// ID in unsigned.transaction_id, which proves delivery even when a send's
// answer was lost) and when the last sync response was done.
type echoes struct {
	mu        sync.Mutex
	seen      map[string]string // txn ID -> event ID, this process only
	order     []string          // for bounding seen
	processed time.Time         // when the last sync response was fully handled
	changed   chan struct{}     // closed and replaced when processed moves
	// startBatch is the previous process's last fully processed position.
	startBatch string
}

const maxEchoes = 4096

func newEchoes(startBatch string) *echoes {
	return &echoes{seen: map[string]string{}, changed: make(chan struct{}), startBatch: startBatch}
}

func (e *echoes) add(txn, eventID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.seen[txn]; ok {
		return
	}
	e.seen[txn] = eventID
	e.order = append(e.order, txn)
	if len(e.order) > maxEchoes {
		delete(e.seen, e.order[0])
		e.order = e.order[1:]
	}
}

func (e *echoes) lookup(txn string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.seen[txn]
	return id, ok
}

func (e *echoes) done(at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.processed = at
	close(e.changed)
	e.changed = make(chan struct{})
}

// waitProcessedAfter waits until a sync response was fully handled after t.
func (e *echoes) waitProcessedAfter(ctx context.Context, t time.Time) error {
	for {
		e.mu.Lock()
		ok, ch := e.processed.After(t), e.changed
		e.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// onOwnEvent records the echo of a message we sent.
func (b *Bot) onOwnEvent(ctx context.Context, evt *event.Event) {
	txn := evt.Unsigned.TransactionID
	if evt.Sender != b.cli.UserID || !strings.HasPrefix(txn, txnPrefix) {
		return
	}
	b.echoes.add(txn, evt.ID.String())
	if _, err := b.state.MarkSentByTxn(ctx, Transport, txn, evt.ID.String()); err != nil {
		b.log.Error().Err(err).Str("event_id", evt.ID.String()).Msg("Cannot record the echo of a sent message")
	}
}

// processed is called once a sync response's handlers have all run.
func (b *Bot) processed(ctx context.Context, nextBatch string) {
	if err := b.state.SetValue(ctx, keyProcessed, nextBatch); err != nil {
		b.log.Warn().Err(err).Msg("Cannot save the processed sync position")
	}
	b.echoes.done(time.Now())
}

// echoSettle is how long after an interrupted attempt the homeserver may
// still be persisting the event it received.
const echoSettle = time.Second

// echoFilter asks a one-off /sync for recent timelines only.
const echoFilter = `{"room":{"timeline":{"limit":100},"state":{"limit":0},"ephemeral":{"limit":0},"account_data":{"limit":0}},` +
	`"presence":{"limit":0},"account_data":{"limit":0}}`

// Reconcile tells whether a message whose earlier attempt had an unknown
// outcome reached its room, by finding its echo.
func (b *Bot) Reconcile(ctx context.Context, d outbox.Delivery) (string, bool, error) {
	settled := d.AttemptedAt.Add(echoSettle)
	if wait := time.Until(settled); wait > 0 {
		select {
		case <-ctx.Done():
			return "", false, ctx.Err()
		case <-time.After(wait):
		}
	}
	if !d.AttemptedAt.Before(b.cfg.Started) || b.echoes.startBatch == "" {
		// This process made the attempt: its echo, if any, comes through the
		// sync loop. A sync that ends after the settle time has seen it.
		waitCtx, cancel := context.WithTimeout(ctx, 2*syncTimeout)
		defer cancel()
		if err := b.echoes.waitProcessedAfter(waitCtx, settled); err != nil && ctx.Err() != nil {
			return "", false, err
		}
		id, ok := b.echoes.lookup(d.TxnID)
		return id, ok, nil
	}
	// An earlier process made it: look from where that process had handled
	// everything, which covers a death between saving and handling.
	resp, err := b.cli.FullSyncRequest(ctx, mautrix.ReqSync{Since: b.echoes.startBatch, FilterID: echoFilter})
	if err != nil {
		return "", false, classify(err)
	}
	own := 0
	if room, ok := resp.Rooms.Join[id.RoomID(d.Room)]; ok {
		for _, evt := range room.Timeline.Events {
			if evt.Sender != b.cli.UserID {
				continue
			}
			own++
			if evt.Unsigned.TransactionID == d.TxnID {
				return evt.ID.String(), true, nil
			}
		}
	}
	if id, ok := b.echoes.lookup(d.TxnID); ok {
		return id, true, nil
	}
	b.log.Debug().Int64("outbox_id", d.ID).Int("own_events", own).Msg("No echo of an interrupted attempt: sending again")
	return "", false, nil
}
