-- Content editing: every published text (so any revision can be read back and audited), the re-index
-- jobs publishing and rollbacks start, and the content audit trail (who, when, what).
CREATE TABLE manual_revisions (
    id INTEGER PRIMARY KEY,
    manual_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    markdown TEXT NOT NULL,
    -- The file as it was before this publish (NULL: a new manual), which a rollback puts back.
    previous_markdown TEXT,
    -- The file the text went to, relative to the manuals folder.
    file TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE INDEX manual_revisions_by_manual ON manual_revisions (manual_id, id);

CREATE TABLE index_jobs (
    id INTEGER PRIMARY KEY,
    -- 'publish' (a rollback updates the job it undoes)
    kind TEXT NOT NULL,
    manual_id TEXT,
    -- The publish's text (manual_revisions), for a publish.
    revision_id INTEGER REFERENCES manual_revisions(id),
    -- 'running', 'promoted', 'blocked' (quality gate), 'failed', 'rolled back'
    status TEXT NOT NULL,
    -- The generation served when the job started: what a rollback returns to.
    previous_generation TEXT,
    started_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    generation TEXT,
    -- What happened, for people: chunks embedded and reused, or why it failed.
    report TEXT NOT NULL DEFAULT ''
);

CREATE TABLE content_audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    -- 'publish', 'publish.refused', 'publish.blocked', 'override', 'rollback'
    action TEXT NOT NULL,
    manual_id TEXT,
    revision TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
