-- Backup runs: backups, verifications, restores and prunes, as they start
-- and end. S3 holds the backups themselves; this is the history of the
-- work, what a crash interrupted (and left to abort), and the order in
-- which finished runs are told to the incident pipeline (finished_seq,
-- its cursor).
CREATE TABLE backup_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    action       TEXT NOT NULL,              -- backup, verify, restore, prune
    trigger      TEXT NOT NULL,              -- schedule, catch-up, or the Matrix ID who asked
    started_at   INTEGER NOT NULL,           -- unix ms
    ended_at     INTEGER,                    -- NULL while running
    outcome      TEXT NOT NULL,              -- running, ok, failed, interrupted
    backup_id    TEXT NOT NULL DEFAULT '',   -- the backup made or worked on
    upload_key   TEXT NOT NULL DEFAULT '',   -- the object being uploaded, to abort after a crash
    raw_bytes    INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    error        TEXT NOT NULL DEFAULT '',
    detail       TEXT NOT NULL DEFAULT '',   -- e.g. pg_dump's standard error
    finished_seq INTEGER UNIQUE              -- set when it ends, in end order
);
CREATE INDEX backup_runs_target ON backup_runs (target, action, started_at);
