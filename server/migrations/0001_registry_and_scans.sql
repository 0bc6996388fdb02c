-- Sites, queues, assets and codes (seeded from manuals/assets.toml on first start), staff users and their
-- sessions, and scan events. Plain SQL that PostgreSQL also accepts, so a second backend can follow.

CREATE TABLE sites (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    contact TEXT NOT NULL DEFAULT '',
    on_call TEXT NOT NULL DEFAULT ''
);

CREATE TABLE queues (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    site_id TEXT NOT NULL REFERENCES sites(id),
    hours TEXT NOT NULL DEFAULT ''
);

CREATE TABLE assets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    serial TEXT NOT NULL DEFAULT '',
    site_id TEXT NOT NULL REFERENCES sites(id),
    location TEXT NOT NULL DEFAULT '',
    queue_id TEXT NOT NULL REFERENCES queues(id),
    -- JSON array of manual ids, the asset's own first.
    manuals TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE codes (
    code TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'asset',
    asset_id TEXT REFERENCES assets(id),
    placement TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- A retired code still resolves, to the fallback page of its site.
    retired_at TEXT
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE sessions (
    -- sha256 of the cookie's token: a leaked database does not give working cookies.
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    last_seen TEXT NOT NULL
);

-- No names, no message text, no full IP address: see ARCHITECTURE.md, privacy.
CREATE TABLE scan_events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    code TEXT NOT NULL,
    asset_id TEXT,
    site_id TEXT,
    placement TEXT,
    device TEXT NOT NULL,
    language TEXT NOT NULL,
    role TEXT NOT NULL,
    returning_visit INTEGER NOT NULL,
    rule TEXT NOT NULL,
    destination TEXT NOT NULL,
    fallback INTEGER NOT NULL,
    latency_us INTEGER NOT NULL,
    ip_prefix TEXT
);

CREATE INDEX scan_events_at ON scan_events(at);
CREATE INDEX scan_events_asset ON scan_events(asset_id, at);
