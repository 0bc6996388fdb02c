-- The support queues an agent works: the console shows them only those queues' tickets, pages and
-- events. An agent with no row here works every queue (as before this table); administrators always
-- see every queue. Not a foreign key to queues: a row for a queue dropped from assets.toml is not
-- counted (Store::agent_queues).
CREATE TABLE agent_queues (
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    queue_id TEXT NOT NULL,
    PRIMARY KEY (user_id, queue_id)
);
