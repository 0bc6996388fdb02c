-- A delivery its receiver refused again and again (a 4xx other than 408 and 429: it will not take
-- that payload, however often it is sent) is set aside, so the queue's later events (out-of-hours
-- paging among them) go out behind it instead of waiting for ever. An administrator sends it again
-- from /admin/webhooks once the receiver is fixed; retention deletes it like any other.
ALTER TABLE webhook_deliveries ADD COLUMN set_aside_at TEXT;
