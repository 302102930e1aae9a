package bot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Keys of the session persisted in the store. The access token is kept
// because the homeserver de-duplicates transaction IDs per access token: a
// new token after a restart would turn a resent message into a duplicate.
const (
	keyAccessToken = "matrix.session.access_token"
	keyDeviceID    = "matrix.session.device_id"
	keyUserID      = "matrix.session.user_id"
)

// login authenticates with a configured access token, or with the password,
// reusing the stored session (token and device) when it is still valid.
func (b *Bot) login(ctx context.Context) error {
	if b.cfg.AccessToken != "" {
		b.cli.AccessToken = b.cfg.AccessToken
		err := b.whoami(ctx)
		if errors.Is(err, mautrix.MUnknownToken) {
			return fmt.Errorf("homeserver %s rejected the configured access token of %s (M_UNKNOWN_TOKEN): check VIGIE_MATRIX_ACCESS_TOKEN or matrix.access_token_file", b.cfg.Homeserver, b.cfg.UserID)
		}
		return err
	}

	storedUser, _, err := b.state.Value(ctx, keyUserID)
	if err != nil {
		return err
	}
	var deviceID string
	if storedUser == b.cfg.UserID {
		token, _, err := b.state.Value(ctx, keyAccessToken)
		if err != nil {
			return err
		}
		if deviceID, _, err = b.state.Value(ctx, keyDeviceID); err != nil {
			return err
		}
		if token != "" {
			b.cli.AccessToken = token
			err := b.whoami(ctx)
			if err == nil {
				return nil
			}
			if !errors.Is(err, mautrix.MUnknownToken) {
				return err
			}
			b.log.Info().Msg("Stored access token is no longer valid; logging in again with the password, same device")
		}
	}

	var resp *mautrix.RespLogin
	err = b.retry(ctx, "log in", func(ctx context.Context) error {
		var err error
		resp, err = b.cli.Login(ctx, &mautrix.ReqLogin{
			Type:                     mautrix.AuthTypePassword,
			Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: b.cfg.UserID},
			Password:                 b.cfg.Password,
			DeviceID:                 id.DeviceID(deviceID),
			InitialDeviceDisplayName: b.cfg.DeviceName,
			StoreCredentials:         true,
		})
		return err
	})
	if errors.Is(err, mautrix.MForbidden) {
		return fmt.Errorf("homeserver %s refused the password of %s (M_FORBIDDEN): check VIGIE_MATRIX_PASSWORD or matrix.password_file", b.cfg.Homeserver, b.cfg.UserID)
	}
	if err != nil {
		return fmt.Errorf("log in to %s as %s: %w", b.cfg.Homeserver, b.cfg.UserID, err)
	}
	for k, v := range map[string]string{keyUserID: b.cfg.UserID, keyDeviceID: resp.DeviceID.String(), keyAccessToken: resp.AccessToken} {
		if err := b.state.SetValue(ctx, k, v); err != nil {
			return fmt.Errorf("save Matrix session: %w", err)
		}
	}
	return nil
}

// whoami checks the token and learns the device it belongs to.
func (b *Bot) whoami(ctx context.Context) error {
	var resp *mautrix.RespWhoami
	err := b.retry(ctx, "check the access token", func(ctx context.Context) error {
		var err error
		resp, err = b.cli.Whoami(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if resp.UserID.String() != b.cfg.UserID {
		return fmt.Errorf("the access token belongs to %s, not to the configured matrix.user_id %s", resp.UserID, b.cfg.UserID)
	}
	if resp.DeviceID == "" && b.cfg.Encryption {
		return fmt.Errorf("the access token of %s is not bound to a device, which encryption needs: create it with a password login", b.cfg.UserID)
	}
	b.cli.DeviceID = resp.DeviceID
	return nil
}

// retry calls fn until it succeeds or fails for a reason other than the
// homeserver being unreachable or overloaded.
func (b *Bot) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	wait := minRetry
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			if err == nil && attempt > 1 {
				b.log.Info().Str("homeserver", b.cfg.Homeserver).Msg("Homeserver reachable again")
			}
			return err
		}
		lvl := zerolog.WarnLevel
		if attempt > 1 {
			lvl = zerolog.InfoLevel
		}
		b.log.WithLevel(lvl).Err(err).Str("homeserver", b.cfg.Homeserver).Int("attempt", attempt).Stringer("retry_in", wait.Round(time.Millisecond)).
			Msgf("Cannot %s: homeserver unreachable, retrying", what)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, maxRetry)
	}
}

// unreachable reports network failures, 5xx and 429: worth retrying.
func unreachable(err error) bool {
	var herr mautrix.HTTPError
	if errors.As(err, &herr) {
		if herr.Response == nil {
			return true
		}
		code := herr.Response.StatusCode
		return code >= 500 || code == 429
	}
	var uerr *url.Error
	var nerr net.Error
	return errors.As(err, &uerr) || errors.As(err, &nerr)
}
