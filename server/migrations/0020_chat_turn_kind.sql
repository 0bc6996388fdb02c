-- What a chat turn was, so the content team's unanswered-questions view holds questions the
-- assistant was asked and could not answer, not requests for a person or messages written to an
-- agent who had the conversation: 'answered', 'unsure', 'person' (asked for a person and nothing
-- more), 'to_agent' (written while an agent had the conversation), 'forwarded' (sent on to a
-- person while the assistant was busy). NULL for turns stored before it was kept.
ALTER TABLE chat_turns ADD COLUMN kind TEXT;
