-- Tokens for content pipelines (`Authorization: Bearer ...` on /api/content): only a hash is kept;
-- the token is shown once when an administrator creates it. Scoped to the content editor's role.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);
