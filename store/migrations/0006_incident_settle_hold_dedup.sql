-- One failure told by several events counts once: each incident keeps the
-- keys of its recent occurrences. A settling resolution ("running for a
-- while" is healthy) is due at settle_at unless the key fires meanwhile. A
-- held incident is posted at hold_until even if its hold never ends; an
-- incident whose end releases held ones names their hold reason.
ALTER TABLE incidents ADD COLUMN occurrences TEXT NOT NULL DEFAULT ''; -- newline separated, newest last
ALTER TABLE incidents ADD COLUMN settle_at INTEGER;
ALTER TABLE incidents ADD COLUMN settle_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE incidents ADD COLUMN hold_until INTEGER;
ALTER TABLE incidents ADD COLUMN releases TEXT NOT NULL DEFAULT '';
CREATE INDEX incidents_settle ON incidents (settle_at) WHERE settle_at IS NOT NULL;
CREATE INDEX incidents_hold ON incidents (hold_until) WHERE hold_until IS NOT NULL;

-- Identical consecutive edits are not sent: a hash of what was last queued
-- for each message.
ALTER TABLE incident_messages ADD COLUMN last_hash INTEGER NOT NULL DEFAULT 0;
ALTER TABLE summaries ADD COLUMN last_hash INTEGER NOT NULL DEFAULT 0;
CREATE INDEX incident_messages_summary ON incident_messages (summary_id) WHERE summary_id IS NOT NULL;
