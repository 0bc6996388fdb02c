# python3 evals/experiments/scans_view_sql.py
# Times the scans view's SQLite work on a synthetic year of a busy site: the old per-row read
# (up to 200,001 rows, counted in the caller) against the new GROUP BY queries. SQLite side only.
import sqlite3, random, time, datetime, os, tempfile
db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "scans.db"))
db.executescript("""
CREATE TABLE scan_events (id INTEGER PRIMARY KEY, at TEXT NOT NULL, code TEXT NOT NULL, asset_id TEXT, site_id TEXT,
 placement TEXT, device TEXT NOT NULL, language TEXT NOT NULL, role TEXT NOT NULL, returning_visit INTEGER NOT NULL,
 rule TEXT NOT NULL, destination TEXT NOT NULL, fallback INTEGER NOT NULL, latency_us INTEGER NOT NULL, ip_prefix TEXT);
CREATE INDEX scan_events_at ON scan_events(at);
""")
random.seed(1)
N = 1_000_000
start = datetime.datetime(2026, 1, 1)
rows = []
for i in range(N):
    t = start + datetime.timedelta(seconds=i * 31.5)  # ~1M events over a year (~2,700/day)
    a = random.randrange(300)
    rows.append((t.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "c%d" % a, "asset-%d" % a, "site-%d" % (a % 4),
                 random.choice(["nameplate", "door", "cart"]), "ios", "en", random.choice(["anonymous", "technician"]),
                 0, "default", random.choice(["page:operator", "redirect:x", "fallback:unknown"]), 0, random.randrange(200, 5000), None))
db.executemany("INSERT INTO scan_events (at, code, asset_id, site_id, placement, device, language, role, returning_visit, rule, destination, fallback, latency_us, ip_prefix) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
db.commit()
since = "2026-01-01T00:00:00.000Z"
def old():
    r = db.execute("SELECT at, asset_id, site_id, placement, role, destination, fallback != 0, latency_us FROM scan_events WHERE at >= ? ORDER BY id DESC LIMIT ?", (since, 200001)).fetchall()
    return len(r)
def new():
    db.execute("SELECT COUNT(*), SUM(fallback != 0), SUM(destination = 'fallback:unknown'), SUM(destination LIKE 'redirect:%') FROM scan_events WHERE at >= ?", (since,)).fetchall()
    for col in ["asset_id", "placement", "role"]:
        db.execute(f"SELECT COALESCE({col}, '-'), COUNT(*) FROM scan_events WHERE at >= ? GROUP BY 1", (since,)).fetchall()
    db.execute("SELECT site_id, substr(at, 1, 14) || printf('%02d', CAST(substr(at, 15, 2) AS INTEGER) / 15 * 15), COUNT(*) FROM scan_events WHERE at >= ? AND site_id IS NOT NULL GROUP BY 1, 2", (since,)).fetchall()
    db.execute("SELECT destination LIKE 'redirect:%', fallback != 0, latency_us FROM scan_events WHERE at >= ? ORDER BY id DESC LIMIT ?", (since, 200001)).fetchall()
for name, f in [("old (200,001 rows read, counted in the caller)", old), ("new (GROUP BY, every row counted)", new)] * 2:
    t = time.perf_counter(); f(); print(f"{name}: {time.perf_counter() - t:.2f} s")
