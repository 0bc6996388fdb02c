-- Failed sign-ins per account and per client, in the store so that every server replica on one
-- store counts the same failures and a restart does not lift a lockout early. The key is a SHA-256
-- of the scope and what was typed (a username field sometimes holds a password), never the text.
-- Times are milliseconds since the Unix epoch: the upsert does arithmetic on them.
CREATE TABLE signin_attempts (
    key_hash TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    locked_until_ms INTEGER,
    -- When the row stops mattering (end of its window or of its lockout): the retention purge
    -- deletes rows past it.
    expires_ms INTEGER NOT NULL
);
CREATE INDEX signin_attempts_expiry ON signin_attempts (expires_ms);
