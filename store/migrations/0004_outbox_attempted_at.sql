-- When the last delivery attempt started: a message whose attempt was cut
-- short (crash, timeout) may have reached the homeserver anyway, and is
-- reconciled before it is sent again.
ALTER TABLE outbox ADD COLUMN attempted_at INTEGER NOT NULL DEFAULT 0;
