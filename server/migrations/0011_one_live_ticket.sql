-- One live ticket per conversation, held by the store: two messages escalating at the same moment
-- used to open two tickets (a check, then an insert). Extra live tickets an older version opened are
-- closed first, keeping the oldest, so the unique index can be built.
UPDATE tickets SET status = 'closed', closed_by = 'merged', closed_at = COALESCE(updated_at, created_at)
WHERE status != 'closed'
  AND id NOT IN (SELECT MIN(id) FROM tickets WHERE status != 'closed' GROUP BY conversation_id);
CREATE UNIQUE INDEX tickets_one_live ON tickets(conversation_id) WHERE status != 'closed';
-- Every chat turn, catch-up and purge looks tickets up by conversation.
CREATE INDEX tickets_conversation ON tickets(conversation_id, status);
