-- A packet's lock after too many wrong tries ends by itself (15 min, then 1 h, 4 h, 24 h for each
-- lock after that), so someone holding a patient's code cannot lock them out for good; a clinician
-- can still unlock it at once. Wrong tries older than a day are forgotten, so a patient's scattered
-- typos over weeks never add up to a lock. A lock from before this (locked_until NULL) lasts until a
-- clinician unlocks it, as it did.
ALTER TABLE packets ADD COLUMN locked_until TEXT;
ALTER TABLE packets ADD COLUMN times_locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE packets ADD COLUMN last_failed_at TEXT;
