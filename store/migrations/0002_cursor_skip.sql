-- Nomad publishes several frames at one index: a cursor is the index plus
-- how many events at that index were already consumed.
ALTER TABLE cursors ADD COLUMN skip INTEGER NOT NULL DEFAULT 0;
