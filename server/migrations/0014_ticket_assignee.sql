-- The agent who took a ticket (a username), so two agents do not answer the same person at once.
-- NULL: nobody has it yet. An agent's first reply takes an untaken ticket.
ALTER TABLE tickets ADD COLUMN assigned_to TEXT;
