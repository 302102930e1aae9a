package bot

import (
	"context"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/vigie/vigie/commands"
)

// onMessage turns a command message into a command. It ignores the bot's
// own messages, notices (other bots), edits, and anything sent before the
// bot started (minus a grace for clock skew): commands queued while it was
// down are not run late.
func (b *Bot) onMessage(ctx context.Context, evt *event.Event) {
	if evt.Sender == b.cli.UserID {
		return
	}
	content := evt.Content.AsMessage()
	if content.MsgType == event.MsgNotice || content.RelatesTo.GetReplaceID() != "" || content.NewContent != nil {
		return
	}
	text, ok := b.commandText(event.TrimReplyFallbackText(content.Body))
	if !ok {
		return
	}
	log := b.log.With().Str("event_id", evt.ID.String()).Str("room", evt.RoomID.String()).Str("sender", evt.Sender.String()).Logger()
	if b.beforeStart(evt) {
		log.Info().Msg("Ignoring a command sent before Vigie started")
		return
	}
	b.cmds.Handle(ctx, commands.Incoming{
		Transport: Transport, Room: evt.RoomID.String(), EventID: evt.ID.String(),
		Sender: evt.Sender.String(), Text: text, Prefix: b.cfg.CommandPrefix,
	})
}

// beforeStart reports events sent before the bot started, minus the grace.
func (b *Bot) beforeStart(evt *event.Event) bool {
	return time.UnixMilli(evt.Timestamp).Before(b.cfg.Started.Add(-b.cfg.EventGrace))
}

// incidentReactions maps reactions on incident messages to the commands
// they stand for.
var incidentReactions = map[string]string{"👀": "ack", "🔇": "silence"}

// confirmReaction on a change's preview confirms it.
const confirmReaction = "✅"

// onReaction turns reactions on the bot's messages into commands,
// authorized and audited like typed ones: 👀 and 🔇 on an incident, ✅ on
// the preview of a change.
func (b *Bot) onReaction(ctx context.Context, evt *event.Event) {
	if evt.Sender == b.cli.UserID || b.beforeStart(evt) {
		return
	}
	rel := evt.Content.AsReaction().RelatesTo
	key := strings.TrimSuffix(rel.Key, "\ufe0f")
	in := commands.Incoming{Transport: Transport, Room: evt.RoomID.String(), EventID: evt.ID.String(),
		Sender: evt.Sender.String(), Prefix: b.cfg.CommandPrefix}
	log := b.log.With().Str("event_id", evt.ID.String()).Logger()
	switch name, ok := incidentReactions[key]; {
	case ok && b.incidents != nil:
		id, found, err := b.incidents.IncidentIDByEvent(ctx, Transport, rel.EventID.String())
		if err != nil {
			log.Error().Err(err).Msg("Cannot look up the incident of a reaction")
			return
		}
		if !found {
			return // a reaction on another message
		}
		in.Text, in.Quiet = name+" #"+strconv.FormatInt(id, 10), true
	case key == confirmReaction:
		id, found, err := b.state.OutboxIDByRemote(ctx, Transport, rel.EventID.String())
		if err != nil {
			log.Error().Err(err).Msg("Cannot look up the message of a reaction")
			return
		}
		if !found {
			return
		}
		in.Text, in.ReactsTo = "confirm", id
	default:
		return
	}
	b.cmds.Handle(ctx, in)
}

// commandText strips the command prefix, matched case-insensitively because
// phone keyboards capitalise the first letter.
func (b *Bot) commandText(body string) (string, bool) {
	body = strings.TrimLeftFunc(body, unicode.IsSpace)
	p := b.cfg.CommandPrefix
	if len(body) < len(p) || !strings.EqualFold(body[:len(p)], p) {
		return "", false
	}
	rest := body[len(p):]
	if r, _ := utf8.DecodeRuneInString(rest); rest != "" && !unicode.IsSpace(r) {
		return "", false // "!vigies" is not our prefix
	}
	return strings.TrimSpace(rest), true
}

// onMember joins rooms on invitation from an allowed user or server, and
// rejects other invitations so they do not linger.
func (b *Bot) onMember(ctx context.Context, evt *event.Event) {
	if evt.GetStateKey() != b.cli.UserID.String() || evt.Content.AsMember().Membership != event.MembershipInvite {
		return
	}
	log := b.log.With().Str("room", evt.RoomID.String()).Str("inviter", evt.Sender.String()).Logger()
	if !inviterAllowed(evt.Sender, b.cfg.AllowedInviters) {
		log.Warn().Msg("Rejecting invitation from a user not in matrix.allowed_inviters")
		if _, err := b.cli.LeaveRoom(ctx, evt.RoomID, &mautrix.ReqLeave{Reason: "inviter not allowed"}); err != nil {
			log.Warn().Err(err).Msg("Cannot reject invitation")
		}
		return
	}
	err := b.retry(ctx, "join "+evt.RoomID.String(), func(ctx context.Context) error {
		_, err := b.cli.JoinRoomByID(ctx, evt.RoomID)
		return err
	})
	if err != nil {
		log.Error().Err(err).Msg("Cannot join the room I was invited to")
		return
	}
	log.Info().Msg("Joined room on invitation")
}

func inviterAllowed(sender id.UserID, allowed []string) bool {
	_, server, err := sender.Parse()
	if err != nil {
		return false
	}
	for _, a := range allowed {
		if a == sender.String() || (strings.HasPrefix(a, ":") && a[1:] == server) {
			return true
		}
	}
	return false
}

func (b *Bot) onEncryptedWithoutCrypto(_ context.Context, evt *event.Event) {
	b.log.Warn().Str("room", evt.RoomID.String()).Str("sender", evt.Sender.String()).
		Msg("Received an encrypted message but matrix.encryption is off: commands in this room cannot be read")
}
