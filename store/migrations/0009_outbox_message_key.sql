-- A message's key says what it is (an incident's message, a line of its
-- thread) the same way on every instance, so that a new leader can find
-- in the room what the last one sent after its replicated state and not
-- send it again. Empty for messages that are never looked for.
ALTER TABLE outbox ADD COLUMN message_key TEXT NOT NULL DEFAULT '';
