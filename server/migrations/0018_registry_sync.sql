-- assets.toml is read at every start (Store::sync_registry).
-- Who retired a code: 'registry' when assets.toml stopped listing it (undone when the file lists it
-- again: a replica started with an older file, or a wrong file, does no lasting harm); NULL for a
-- deliberate retirement, which stays.
ALTER TABLE codes ADD COLUMN retired_by TEXT;
-- When assets.toml stopped listing a site, queue or asset: the row stays for the tickets and scans
-- that name it, but it is no longer listed (the public contacts, the agents' queue choices) or
-- offered to new conversations.
ALTER TABLE sites ADD COLUMN dropped_at TEXT;
ALTER TABLE queues ADD COLUMN dropped_at TEXT;
ALTER TABLE assets ADD COLUMN dropped_at TEXT;
