-- What the person's chat showed for a turn (the sentences with their citation numbers, and whether
-- it was marked "not sure"), as JSON, so a chat reloaded on the phone can show the conversation
-- again as it was. NULL for turns stored before this column.
ALTER TABLE chat_turns ADD COLUMN shown TEXT;
