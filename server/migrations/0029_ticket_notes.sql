-- Agents' notes on a ticket, for each other (what was tried, who to call back): a table of their
-- own, so no query of what the person is sent (replies, their chat's history, its live stream,
-- webhooks) can ever read one. Deleted with their ticket (retention).
CREATE TABLE ticket_notes (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    at TEXT NOT NULL,
    -- The agent's username.
    author TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX ticket_notes_ticket ON ticket_notes(ticket_id, id);
