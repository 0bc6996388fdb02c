-- The administrators' account changes (/admin/users) are read by action from a log that holds every
-- patient access: by this index, not a scan of the whole log.
CREATE INDEX audit_log_action ON audit_log(action, id);
