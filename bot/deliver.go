package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/outbox"
	"github.com/vigie/vigie/render"
)

// Deliver sends one outbox message as an m.notice with HTML, using the
// outbox's transaction ID so that a resend is de-duplicated by the server.
func (b *Bot) Deliver(ctx context.Context, d outbox.Delivery) (string, error) {
	content := &event.MessageEventContent{
		MsgType:       event.MsgNotice,
		Body:          d.Plain,
		Format:        event.FormatHTML,
		FormattedBody: d.HTML,
		Mentions:      &event.Mentions{}, // notices never ping
	}
	switch {
	case d.EditOfRemote != "":
		content.SetEdit(id.EventID(d.EditOfRemote))
		// mautrix cuts the fallback of a long edit at 50 bytes, mid-word
		// and even mid-character: the headline, cut between words, instead.
		content.Body = "* " + render.Excerpt(d.Plain, editFallbackBytes)
	case d.ThreadRootRemote != "":
		root := id.EventID(d.ThreadRootRemote)
		content.RelatesTo = (&event.RelatesTo{}).SetThread(root, root)
	case d.ReplyTo != "":
		content.RelatesTo = &event.RelatesTo{InReplyTo: &event.InReplyTo{EventID: id.EventID(d.ReplyTo)}}
	}
	if b.adoptDone != nil {
		select {
		case <-b.adoptDone:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	var body any = content
	if d.Key != "" {
		if b.adopted != nil {
			if eventID, ok := b.adopted.take(d.Room, d.Key); ok {
				b.log.Info().Int64("outbox_id", d.ID).Str("event_id", eventID).Msg("The last leader had sent this message; not sending it again")
				return eventID, nil
			}
		}
		body = &event.Content{Parsed: content, Raw: map[string]any{keyField: d.Key}}
	}
	resp, err := b.cli.SendMessageEvent(ctx, id.RoomID(d.Room), event.EventMessage, body, mautrix.ReqSendEvent{TransactionID: d.TxnID})
	if err != nil {
		return "", classify(err)
	}
	return resp.EventID.String(), nil
}

// editFallbackBytes bounds the plain body of an edit, shown only by clients
// that do not apply edits (m.new_content holds the whole message).
const editFallbackBytes = 160

// defaultRateLimitWait applies when a 429 names no delay.
const defaultRateLimitWait = 5 * time.Second

// classify tells the outbox how to treat a send error: rate limits pause
// the transport for the server's delay, other 4xx are permanent (not in the
// room, too large), the rest (network, 5xx, encryption setup) is retried;
// only network errors and proxies' 502-504 leave the outcome unknown.
func classify(err error) error {
	var herr mautrix.HTTPError
	if !errors.As(err, &herr) || herr.Response == nil {
		return err
	}
	code := herr.Response.StatusCode
	switch {
	case code == http.StatusTooManyRequests || errors.Is(err, mautrix.MLimitExceeded):
		return outbox.RateLimited(err, retryAfter(herr))
	case code == http.StatusBadGateway, code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout,
		code == http.StatusRequestTimeout:
		// A proxy's answer: the homeserver may have taken the message.
		return err
	case code == http.StatusUnauthorized, code >= 500:
		// The homeserver itself refused; a revoked token also stops the
		// sync loop, which ends the process.
		return outbox.Refused(err)
	case code >= 400:
		return outbox.Permanent(fmt.Errorf("homeserver refused the message (HTTP %d): %w", code, err))
	}
	return err
}

// retryAfter reads the Retry-After header (seconds or an HTTP date), then
// the body's retry_after_ms, which mautrix itself does not read.
func retryAfter(herr mautrix.HTTPError) time.Duration {
	if h := herr.Response.Header.Get("Retry-After"); h != "" {
		if s, err := strconv.Atoi(h); err == nil && s >= 0 {
			return max(time.Duration(s)*time.Second, time.Millisecond)
		}
		if t, err := http.ParseTime(h); err == nil {
			return max(time.Until(t), time.Millisecond)
		}
	}
	if herr.RespError != nil {
		if ms, ok := herr.RespError.ExtraData["retry_after_ms"].(float64); ok && ms >= 0 {
			return max(time.Duration(ms)*time.Millisecond, time.Millisecond)
		}
	}
	return defaultRateLimitWait
}
