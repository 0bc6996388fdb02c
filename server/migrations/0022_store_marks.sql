-- Things the store has done once and must not do again, by name. `demo_packets`: the demo
-- patients' packets were made (on a store's first start); a store whose packets later all expire
-- or are deleted must not get the fictional patients back among real ones.
CREATE TABLE store_marks (
    name TEXT PRIMARY KEY,
    at TEXT NOT NULL
);
-- A store that existed before this table has had its first start (its registry or its staff
-- were made then; on a new store both tables are still empty while migrations run).
INSERT INTO store_marks (name, at)
SELECT 'demo_packets', strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
WHERE EXISTS (SELECT 1 FROM packets)
   OR EXISTS (SELECT 1 FROM audit_log WHERE action = 'packet.created')
   OR EXISTS (SELECT 1 FROM sites)
   OR EXISTS (SELECT 1 FROM users);
