-- The chat sends a random id with each message and sends it again when it retries one whose answer
-- it never received (a dropped connection): a repeat is answered with the stored turn, so it is not
-- stored, forwarded to an agent or escalated twice, and a retried first message does not open a
-- second conversation and ticket.
ALTER TABLE chat_turns ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX chat_turns_request_id ON chat_turns(request_id) WHERE request_id IS NOT NULL;
