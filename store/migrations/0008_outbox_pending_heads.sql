-- The sender looks for the oldest pending message of each room after
-- every commit that queued messages: an index of the pending messages
-- alone, by room, answers it without reading the table or sorting.
CREATE INDEX outbox_pending_heads ON outbox (transport, room, id) WHERE state = 'pending';
