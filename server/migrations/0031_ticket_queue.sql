-- A ticket moved to another support queue by an agent (the right team for it). NULL: the queue of
-- the ticket's asset, as before this column; the console, scopes, events and webhooks all read
-- COALESCE(tickets.queue_id, assets.queue_id).
ALTER TABLE tickets ADD COLUMN queue_id TEXT;
