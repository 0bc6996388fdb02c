-- A rollback that publishes the previous text again (the index was rebuilt since) is a job of its
-- own; it names the job it undoes, which is marked 'rolled back' when it promotes, so the history
-- and the job page say what was undone and its text can be opened again.
ALTER TABLE index_jobs ADD COLUMN undoes INTEGER REFERENCES index_jobs(id);
