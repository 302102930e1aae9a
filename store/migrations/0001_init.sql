-- Small settings the transports persist: Matrix device ID, access token, sync token.
CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Stream positions of the watchers (Nomad event index, Consul index, ...).
CREATE TABLE cursors (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Every outgoing message, persisted with its transaction ID before it is sent.
-- edit_of and thread_root point at earlier outbox rows: their remote event IDs
-- are only known once those rows are sent, and delivery is in order per room.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    transport   TEXT    NOT NULL,
    room        TEXT    NOT NULL,
    txn_id      TEXT    NOT NULL UNIQUE,
    plain       TEXT    NOT NULL,
    html        TEXT    NOT NULL,
    reply_to    TEXT    NOT NULL DEFAULT '',
    edit_of     INTEGER REFERENCES outbox(id),
    thread_root INTEGER REFERENCES outbox(id),
    state       TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    remote_id   TEXT    NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    done_at     INTEGER
);
CREATE INDEX outbox_pending ON outbox (transport, state, id);

-- Command events already handled, so a redelivered event never runs twice.
CREATE TABLE seen_events (
    event_id TEXT PRIMARY KEY,
    seen_at  INTEGER NOT NULL
);

-- Who asked for what, and what came of it.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    room     TEXT    NOT NULL,
    event_id TEXT    NOT NULL,
    command  TEXT    NOT NULL,
    args     TEXT    NOT NULL,
    access   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    detail   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
