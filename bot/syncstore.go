package bot

import (
	"context"

	"maunium.net/go/mautrix/id"
)

// syncStore persists the sync position and filter in Vigie's store, so a
// restart resumes where it stopped instead of replaying or skipping.
type syncStore struct{ state State }

func (s *syncStore) key(kind string, user id.UserID) string {
	return "matrix." + kind + "." + user.String()
}

func (s *syncStore) SaveFilterID(ctx context.Context, user id.UserID, filterID string) error {
	return s.state.SetValue(ctx, s.key("filter_id", user), filterID)
}

func (s *syncStore) LoadFilterID(ctx context.Context, user id.UserID) (string, error) {
	v, _, err := s.state.Value(ctx, s.key("filter_id", user))
	return v, err
}

func (s *syncStore) SaveNextBatch(ctx context.Context, user id.UserID, token string) error {
	return s.state.SetValue(ctx, s.key("next_batch", user), token)
}

func (s *syncStore) LoadNextBatch(ctx context.Context, user id.UserID) (string, error) {
	v, _, err := s.state.Value(ctx, s.key("next_batch", user))
	return v, err
}
