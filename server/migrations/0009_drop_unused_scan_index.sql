-- No query reads scan events by asset (the scans view filters by time and groups in Rust), and every
-- index costs each scan's INSERT: `scanaid bench events` (200,000 events in batches of 1,000) went
-- from 7.2 to 4.95 us of CPU per event without this one. Add it back with the first query that
-- needs it.
DROP INDEX scan_events_asset;
