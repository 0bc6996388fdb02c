-- Bumped by every write to codes (new discharge codes, retirements, the first-start seed), so each
-- server on the store notices and reloads its in-memory code table (see `changes.rs`).
CREATE TABLE registry_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
