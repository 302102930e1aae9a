-- One row per incident: a problem under one key, from first signal to
-- resolution. 'held' incidents wait for a deployment or drain to end before
-- they are posted; 'notice' rows are one-off informational posts.
CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    key          TEXT    NOT NULL,
    rule         TEXT    NOT NULL,
    severity     INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('held', 'open', 'resolved', 'notice')),
    title        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    labels       TEXT    NOT NULL,            -- JSON
    events       INTEGER NOT NULL DEFAULT 0,  -- signals counted, firing or not
    changes      TEXT    NOT NULL DEFAULT '', -- unix ms of recent state changes, comma separated (flap detection)
    flapping     INTEGER NOT NULL DEFAULT 0,
    hold_reason  TEXT    NOT NULL DEFAULT '',
    opened_at    INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    resolved_at  INTEGER,
    resolution   TEXT    NOT NULL DEFAULT '',
    acked_by     TEXT    NOT NULL DEFAULT '',
    silenced_by  TEXT    NOT NULL DEFAULT '',  -- who or which silence
    edit_due_at  INTEGER,                      -- a debounced edit is owed at this time
    last_edit_at INTEGER NOT NULL DEFAULT 0,
    reminded_at  INTEGER NOT NULL DEFAULT 0,
    reminders    INTEGER NOT NULL DEFAULT 0,
    thread_sent  INTEGER NOT NULL DEFAULT 0,  -- detail replies posted in the current minute
    thread_window INTEGER NOT NULL DEFAULT 0, -- start of that minute, unix ms
    thread_skipped INTEGER NOT NULL DEFAULT 0 -- details not posted because of the cap
);
CREATE UNIQUE INDEX incidents_live_key ON incidents (key) WHERE state IN ('held', 'open');
CREATE INDEX incidents_key ON incidents (key, id);
CREATE INDEX incidents_due ON incidents (edit_due_at) WHERE edit_due_at IS NOT NULL;

-- Storm bounding: when a room got too many new incident messages in the
-- last minute, further incidents are listed in one summary message.
CREATE TABLE summaries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    transport   TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    outbox_id   INTEGER NOT NULL REFERENCES outbox(id),
    opened_at   INTEGER NOT NULL,
    edit_due_at INTEGER,
    last_edit_at INTEGER NOT NULL DEFAULT 0
);

-- Where each incident is shown: its own message (outbox_id) in each room
-- it is routed to, or a line in a summary.
CREATE TABLE incident_messages (
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    transport   TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    outbox_id   INTEGER REFERENCES outbox(id),
    summary_id  INTEGER REFERENCES summaries(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (incident_id, transport, room)
);
CREATE INDEX incident_messages_outbox ON incident_messages (outbox_id);
CREATE INDEX incident_messages_room ON incident_messages (transport, room, created_at);

-- Silences: matchers on incident labels, or one incident until it resolves.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers    TEXT    NOT NULL DEFAULT '', -- "label=glob,label=glob"
    incident_id INTEGER REFERENCES incidents(id),
    reason      TEXT    NOT NULL DEFAULT '',
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,                     -- null: until the incident resolves
    ended_at    INTEGER
);

-- Facts the pipeline remembers between events for cross-source
-- suppression: running deployments, draining nodes, allocation owners.
CREATE TABLE facts (
    kind       TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
