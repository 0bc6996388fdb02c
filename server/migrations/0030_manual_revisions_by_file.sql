-- A manual's history follows renames by file, within one life of the file (from the change that
-- created it): both lookups read a file's changes in order.
CREATE INDEX manual_revisions_by_file ON manual_revisions (file, id);
