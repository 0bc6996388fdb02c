-- Live support: what agents write back to the person, how to reach the person (only when they chose to
-- leave it), who closed a ticket, and webhook deliveries kept until the receiver has taken them.
ALTER TABLE tickets ADD COLUMN contact TEXT;
ALTER TABLE tickets ADD COLUMN updated_at TEXT;
ALTER TABLE tickets ADD COLUMN closed_at TEXT;
ALTER TABLE tickets ADD COLUMN closed_by TEXT;

-- An optional outbound webhook per support queue; the secret signs each delivery (HMAC-SHA256).
ALTER TABLE queues ADD COLUMN webhook_url TEXT;
ALTER TABLE queues ADD COLUMN webhook_secret TEXT;

CREATE TABLE ticket_messages (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    -- The agent's username: shown to other agents, never to the person.
    author TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX ticket_messages_ticket ON ticket_messages(ticket_id, id);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(delivered_at, next_attempt_at);
