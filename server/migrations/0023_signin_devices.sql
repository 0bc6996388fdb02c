-- Browsers a staff member has signed in from before (a "device cookie", after the OWASP
-- guidance on lockouts): a sign-in from one is not refused because strangers on the same address,
-- or guessing at the same account, set off the lockouts; it has its own count of failures. Only a
-- hash of the cookie is kept; it lets nothing in by itself (the password is still checked).
CREATE TABLE signin_devices (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX signin_devices_expiry ON signin_devices (expires_ms);
