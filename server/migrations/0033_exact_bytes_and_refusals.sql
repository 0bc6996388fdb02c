-- The exact bytes a publish replaced when they were not UTF-8 (a broken file being fixed in the
-- editor): a job that does not promote puts back those bytes, not a lossy reading of them that
-- could parse as a manual nobody checked.
ALTER TABLE manual_revisions ADD COLUMN previous_bytes BLOB;
-- How many times the receiver refused a delivery (4xx but 408 and 429), apart from other failures:
-- it is set aside after a number of refusals, not of attempts of any kind.
ALTER TABLE webhook_deliveries ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
