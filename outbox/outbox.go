// Package outbox delivers persisted messages exactly once: every message is
// in the store with its transaction ID before the first attempt, delivery is
// in order per room, failures are retried with backoff, and a resend after a
// crash reuses the transaction ID so the homeserver de-duplicates it.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigie/vigie/render"
	"github.com/vigie/vigie/store"
)

// Queue is what producers need from the store.
type Queue interface {
	Enqueue(ctx context.Context, msgs ...store.OutMessage) ([]int64, error)
}

// Outbox persists messages and wakes the sender of their transport.
type Outbox struct {
	queue Queue
	mu    sync.Mutex
	wake  map[string]chan struct{}
}

// New creates an outbox on a queue.
func New(q Queue) *Outbox {
	return &Outbox{queue: q, wake: map[string]chan struct{}{}}
}

// Message is what a producer asks to send.
type Message struct {
	Transport  string
	Room       string
	Content    render.Message
	ReplyTo    string // remote event ID this answers
	EditOf     int64  // outbox ID of the message this replaces
	ThreadRoot int64  // outbox ID of the thread root
}

// Send persists messages atomically, then wakes their senders. Once it
// returns nil the messages will be delivered, even across a crash.
func (o *Outbox) Send(ctx context.Context, msgs ...Message) ([]int64, error) {
	rows := make([]store.OutMessage, len(msgs))
	for i, m := range msgs {
		if m.Transport == "" || m.Room == "" {
			return nil, fmt.Errorf("outbox: message %d has no transport or room", i)
		}
		rows[i] = store.OutMessage{
			Transport: m.Transport, Room: m.Room, Plain: m.Content.Plain, HTML: m.Content.HTML,
			ReplyTo: m.ReplyTo, EditOf: m.EditOf, ThreadRoot: m.ThreadRoot,
		}
	}
	ids, err := o.queue.Enqueue(ctx, rows...)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		o.Wake(m.Transport)
	}
	return ids, nil
}

func (o *Outbox) wakeChan(transport string) chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	ch, ok := o.wake[transport]
	if !ok {
		ch = make(chan struct{}, 1)
		o.wake[transport] = ch
	}
	return ch
}

// Wake tells the sender of a transport that messages were queued for it,
// by Send or by another writer of the store (the incident engine).
func (o *Outbox) Wake(transport string) {
	select {
	case o.wakeChan(transport) <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// DeliveryError tells the sender how to treat a failed delivery. Errors of
// other types are transient, with an unknown outcome (the message may have
// arrived): retried with exponential backoff, after reconciliation.
type DeliveryError struct {
	Err        error
	Permanent  bool          // retrying cannot help (forbidden, bad request)
	RetryAfter time.Duration // rate limited: the transport pauses this long
	Refused    bool          // the server answered that it did not take the message
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// Permanent marks an error as not worth retrying.
func Permanent(err error) error { return &DeliveryError{Err: err, Permanent: true, Refused: true} }

// RateLimited marks an error as a rate limit with the server's delay.
func RateLimited(err error, after time.Duration) error {
	return &DeliveryError{Err: err, RetryAfter: after, Refused: true}
}

// Refused marks a transient error where the server answered that it did
// not take the message (e.g. HTTP 500): no need to look for it later.
func Refused(err error) error { return &DeliveryError{Err: err, Refused: true} }

func classify(err error) (permanent bool, retryAfter time.Duration, refused bool) {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Permanent, de.RetryAfter, de.Refused
	}
	return false, 0, false
}
