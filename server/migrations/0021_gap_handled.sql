-- Chat turns an editor marked handled on the unanswered-questions view (the section was written
-- or fixed): they leave the view; the same question asked again is a new turn and comes back.
-- Deleted with their turn (chat retention).
CREATE TABLE gap_handled (
    turn_id INTEGER PRIMARY KEY REFERENCES chat_turns(id) ON DELETE CASCADE,
    handled_by TEXT NOT NULL,
    handled_at TEXT NOT NULL
);
