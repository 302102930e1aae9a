package bot

import (
	"context"
	"errors"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// keyField carries a message's outbox key (store.OutMessage.Key) in its
// content. The homeserver de-duplicates transaction IDs per device only:
// when another instance takes over, this is how it recognises, in the
// room, what the last leader sent after the state it restored.
const keyField = "io.github.vigie.key"

// adoptPages bounds the history read per room (100 events a page).
const adoptPages = 20

// adopted are the keyed messages other devices of the bot sent since the
// time given, by room and key: delivering one of them again adopts the
// event instead.
type adopted struct {
	mu     sync.Mutex
	events map[string][]string // room + "\x00" + key -> event IDs, oldest first
}

func roomKey(room, key string) string { return room + "\x00" + key }

// take returns the oldest event of a key not taken yet: the messages a
// replay sends again come in the order they were first sent; one more
// than the room holds is new, and sent.
func (a *adopted) take(room, key string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := a.events[roomKey(room, key)]
	if len(ids) == 0 {
		return "", false
	}
	a.events[roomKey(room, key)] = ids[1:]
	return ids[0], true
}

// adopt reads each joined room's history back to since and remembers the
// keyed messages the bot's other devices sent there. Events it cannot
// decrypt (its device never received their room keys) are counted and
// logged: their messages may be sent again.
func (b *Bot) adopt(ctx context.Context, since time.Time) error {
	b.adopted = &adopted{events: map[string][]string{}}
	rooms, err := b.cli.JoinedRooms(ctx)
	if err != nil {
		return classify(err)
	}
	filter := &mautrix.FilterPart{Senders: []id.UserID{b.cli.UserID}, Types: []event.Type{event.EventMessage, event.EventEncrypted}}
	for _, room := range rooms.JoinedRooms {
		found, undecryptable := 0, 0
		from := ""
		for range adoptPages {
			resp, err := b.cli.Messages(ctx, room, from, "", mautrix.DirectionBackward, filter, 100)
			if err != nil {
				return classify(err)
			}
			older := false
			for _, evt := range resp.Chunk {
				if time.UnixMilli(evt.Timestamp).Before(since) {
					older = true
					break
				}
				if evt.Type == event.EventEncrypted {
					if b.crypto == nil {
						undecryptable++
						continue
					}
					// /messages gives raw content, maybe without the room.
					evt.RoomID = room
					if err := evt.Content.ParseRaw(evt.Type); err != nil && !errors.Is(err, event.ErrContentAlreadyParsed) {
						undecryptable++
						continue
					}
					dec, err := b.crypto.Decrypt(ctx, evt)
					if err != nil {
						b.log.Debug().Err(err).Str("event_id", evt.ID.String()).Msg("Cannot decrypt a message of the last leader")
						undecryptable++
						continue
					}
					evt = dec
				}
				key, _ := evt.Content.Raw[keyField].(string)
				if key == "" {
					continue
				}
				// Read newest first: each goes before those read.
				k := roomKey(room.String(), key)
				b.adopted.events[k] = append([]string{evt.ID.String()}, b.adopted.events[k]...)
				found++
			}
			if older || resp.End == "" || len(resp.Chunk) == 0 {
				break
			}
			from = resp.End
		}
		if found > 0 || undecryptable > 0 {
			b.log.Info().Str("room", room.String()).Int("keyed", found).Int("undecryptable", undecryptable).
				Time("since", since).Msg("Read what the last leader sent")
		}
	}
	return nil
}
