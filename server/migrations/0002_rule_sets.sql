-- Routing rules as admins saved them, newest last: the newest row is in force; older rows are the
-- history (who changed what, when) and what to go back to.
CREATE TABLE rule_sets (
    id INTEGER PRIMARY KEY,
    toml TEXT NOT NULL,
    saved_at TEXT NOT NULL,
    saved_by TEXT NOT NULL
);
