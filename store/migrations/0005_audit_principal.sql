-- Who the directory says the actor is, and how long the command took.
ALTER TABLE audit ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN duration_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX audit_actor ON audit (actor, id);
