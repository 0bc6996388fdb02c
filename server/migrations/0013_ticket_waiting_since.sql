-- Since when a ticket has waited for an agent: its opening, or the person's first message after an
-- agent's reply. The queue sorts by it; `updated_at` (any change, the idle close's clock) moved on
-- every message and sent the people who kept asking to the back.
ALTER TABLE tickets ADD COLUMN waiting_since TEXT;
UPDATE tickets SET waiting_since = COALESCE(updated_at, created_at) WHERE status != 'closed';
-- Migration 0011 closed the extra live tickets of a conversation as 'merged', keeping the oldest; a
-- contact the person left may sit on one of those: the kept ticket takes it.
UPDATE tickets SET contact = (
    SELECT d.contact FROM tickets d
    WHERE d.conversation_id = tickets.conversation_id AND d.closed_by = 'merged' AND d.contact IS NOT NULL
    ORDER BY d.id DESC LIMIT 1
)
WHERE status != 'closed' AND contact IS NULL;
