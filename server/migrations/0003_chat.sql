-- The chat on a page: a conversation per page visit (a random id, no person), its turns, and tickets
-- for a person to pick up. The question text is kept so an agent can read the transcript.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    asset_id TEXT NOT NULL,
    code TEXT,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE chat_turns (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    at TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    confidence REAL NOT NULL,
    escalated INTEGER NOT NULL,
    -- 1 thumbs up, -1 thumbs down, NULL not rated.
    feedback INTEGER
);
CREATE INDEX chat_turns_conversation ON chat_turns(conversation_id, id);

CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id),
    asset_id TEXT NOT NULL,
    code TEXT,
    role TEXT NOT NULL,
    language TEXT NOT NULL,
    confidence REAL NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX tickets_status ON tickets(status, id);
