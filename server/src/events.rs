//! Scan events, written off the request path. A handler hands its event to a bounded queue and returns;
//! one writer thread commits them in batches. A full queue drops the event and counts it (a metric), so
//! a burst of scans never waits on the disk. Shutdown drains the queue before the store closes.
//!
//! The writer has its own SQLite connection (rusqlite) and one prepared single-row INSERT, on a thread
//! of its own rather than a tokio worker. Through sqlx, each value was copied into an argument list,
//! sent to sqlx's worker thread and bound into a 64-row statement built per batch: with the copies
//! and the hops that cost about as much as SQLite's insert itself (README, "Scan throughput").

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::device::DeviceClass;
use crate::store::Store;
use crate::ServerError;

/// One scan, as stored. No names, no message text, no full IP address.
///
/// Values that come from a fixed set (`default`, `page:operator`, a role's name) are static text rather
/// than a copy per scan, and the time is written out by the writer thread: each scan used to allocate
/// a dozen strings here, and free them on another thread.
#[derive(Debug, Clone)]
pub struct ScanEvent {
    /// Stored as RFC 3339 text with milliseconds, in UTC.
    pub at: chrono::DateTime<chrono::Utc>,
    pub code: String,
    pub asset_id: Option<String>,
    pub site_id: Option<String>,
    pub placement: Option<String>,
    pub device: DeviceClass,
    pub language: Cow<'static, str>,
    pub role: &'static str,
    pub returning: bool,
    /// The rule that fired, or `default` / `fallback`.
    pub rule: Cow<'static, str>,
    pub destination: Cow<'static, str>,
    pub fallback: bool,
    pub latency_us: u64,
    pub ip_prefix: Option<String>,
}

/// `t.to_rfc3339_opts(SecondsFormat::Millis, true)` (`2026-12-04T03:37:41.123Z`), written by hand for
/// years 0 to 9999: chrono's formatting machinery was a tenth of building a scan's event.
pub fn rfc3339_millis(t: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = [0u8; 24];
    match write_rfc3339_millis(t, &mut out) {
        Some(text) => text.to_string(),
        None => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}

/// The same into `out`, without allocating; `None` outside years 0 to 9999.
fn write_rfc3339_millis(t: chrono::DateTime<chrono::Utc>, out: &mut [u8; 24]) -> Option<&str> {
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    // A leap second shows as :60 in chrono; its nanoseconds run past 1e9.
    let nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        put(17, 2, 60);
    }
    put(20, 3, (nanos % 1_000_000_000) / 1_000_000);
    for (i, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[i] = c;
    }
    std::str::from_utf8(out).ok()
}

enum Message {
    Event(Box<ScanEvent>),
    /// Write everything queued before this message, then answer.
    Flush(oneshot::Sender<()>),
    /// Write everything queued before this message, then stop.
    Close,
}

/// Counters the metrics page and tests read.
#[derive(Debug, Default)]
pub struct EventCounters {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub write_errors: AtomicU64,
}

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Message>,
    pub counters: Arc<EventCounters>,
}

/// Most events written in one transaction (at 25,000 scans/s, half a second's worth).
const BATCH: usize = 12_800;
/// How long the writer lets events gather before writing them. 2 ms rather than 20: the batch is
/// then written in a burst of well under a millisecond, where a 20 ms batch (about 2,000 rows at
/// 100,000 scans/s) held a core for a few milliseconds and raised the scans' p99 from about 1.5 to
/// 3.5-4.8 ms at the same rate (`evals/scan_bench.sh`-style runs, README "Scan throughput").
const LINGER: Duration = Duration::from_millis(2);

impl EventSink {
    /// Opens the writer's connection to `store`'s database and starts its thread; `capacity` bounds
    /// the events waiting to be written.
    pub fn start(
        store: &Store,
        capacity: usize,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), ServerError> {
        let writer = EventWriter::open(store.path())?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(EventCounters::default());
        let loop_counters = counters.clone();
        let handle = tokio::task::spawn_blocking(move || write_loop(writer, rx, loop_counters));
        Ok((Self { tx, counters }, handle))
    }

    /// Queues an event without waiting. Returns false when it was dropped because the queue is full.
    pub fn record(&self, event: ScanEvent) -> bool {
        match self.tx.try_send(Message::Event(Box::new(event))) {
            Ok(()) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Writes what is queued and stops the writer; later events are counted as dropped. The server calls
    /// it once no request is in flight.
    pub async fn close(&self) {
        let _ = self.tx.send(Message::Close).await;
    }

    /// Waits until every event queued before this call is in the store.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn write_loop(
    mut writer: EventWriter,
    mut rx: mpsc::Receiver<Message>,
    counters: Arc<EventCounters>,
) {
    let mut batch: Vec<ScanEvent> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut closing = false;
    // Ends on `Close`, or when every sender is gone, after writing what was queued.
    while let Some(first) = rx.blocking_recv() {
        let urgent = !matches!(first, Message::Event(_));
        take(first, &mut batch, &mut waiting, &mut closing);
        if !urgent {
            // Let events gather for `LINGER` without waking this thread for each one (a receiver
            // that is not waiting is not woken by a send): under load a wake-up per scan cost more
            // CPU than the write, and a few large transactions cost far less than many small ones.
            std::thread::sleep(LINGER);
        }
        while batch.len() < BATCH && !closing {
            match rx.try_recv() {
                Ok(message) => take(message, &mut batch, &mut waiting, &mut closing),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match writer.insert(&batch) {
                Ok(()) => {
                    counters
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    counters
                        .write_errors
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(%error, n_events = batch.len(), "writing scan events failed");
                }
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if closing {
            break;
        }
    }
}

const INSERT: &str = "INSERT INTO scan_events (at, code, asset_id, site_id, placement, device, language, role, returning_visit, rule, destination, fallback, latency_us, ip_prefix) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// The writer's connection to the store's database (migrated by `Store::open`, in WAL mode, so page
/// reads go on while it commits).
pub struct EventWriter {
    connection: rusqlite::Connection,
}

impl EventWriter {
    pub fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let connection = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // As the store's own connections: wait for a writer rather than fail, and the same
        // durability (WAL with synchronous=NORMAL survives a crash of the process, not of power).
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Self { connection })
    }

    /// Writes `events` in one transaction: all of them or, on an error, none.
    pub fn insert(&mut self, events: &[ScanEvent]) -> Result<(), rusqlite::Error> {
        let tx = self.connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            let mut at_text = [0u8; 24];
            for e in events {
                let at: Cow<str> = match write_rfc3339_millis(e.at, &mut at_text) {
                    Some(text) => Cow::Borrowed(text),
                    None => Cow::Owned(rfc3339_millis(e.at)),
                };
                insert.execute(rusqlite::params![
                    at,
                    e.code,
                    e.asset_id,
                    e.site_id,
                    e.placement,
                    e.device.as_str(),
                    e.language,
                    e.role,
                    e.returning,
                    e.rule,
                    e.destination,
                    e.fallback,
                    e.latency_us as i64,
                    e.ip_prefix,
                ])?;
            }
        }
        tx.commit()
    }
}

/// Files one message: an event into the batch, a flush among those answered after the write.
fn take(
    message: Message,
    batch: &mut Vec<ScanEvent>,
    waiting: &mut Vec<oneshot::Sender<()>>,
    closing: &mut bool,
) {
    match message {
        Message::Event(e) => batch.push(*e),
        Message::Flush(done) => waiting.push(done),
        Message::Close => *closing = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> ScanEvent {
        ScanEvent {
            at: chrono::DateTime::from_timestamp(1_796_324_400 + (n % 60) as i64, 0).unwrap(),
            code: format!("code{n}"),
            asset_id: Some("pump-icu-07".to_string()),
            site_id: None,
            placement: Some("nameplate".to_string()),
            device: DeviceClass::Android,
            language: "es".into(),
            role: "operator",
            returning: n % 2 == 1,
            rule: "default".into(),
            destination: "page:operator".into(),
            fallback: false,
            latency_us: n as u64,
            ip_prefix: Some("10.1.2.0/24".to_string()),
        }
    }

    proptest::proptest! {
        #[test]
        fn timestamps_read_as_chrono_writes_them(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = chrono::DateTime::from_timestamp(secs, nanos).unwrap();
            proptest::prop_assert_eq!(
                rfc3339_millis(t),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
        }
    }

    #[tokio::test]
    async fn batches_of_any_size_are_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut writer = EventWriter::open(store.path()).unwrap();
        let mut written = 0;
        for size in [0, 1, 3, 64, 65, 150] {
            let batch: Vec<ScanEvent> = (written..written + size).map(event).collect();
            writer.insert(&batch).unwrap();
            written += size;
            // Read through the store's own pool: the rows are committed, not just in this connection.
            assert_eq!(store.count_scan_events().await.unwrap(), written as i64);
        }
        type Row = (String, i64, i64, Option<String>, String, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT code, latency_us, returning_visit, site_id, device, ip_prefix FROM scan_events ORDER BY id",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        for (n, (code, latency, returning, site, device, prefix)) in rows.into_iter().enumerate() {
            assert_eq!(code, format!("code{n}"));
            assert_eq!(latency, n as i64);
            assert_eq!(returning, (n % 2) as i64);
            assert_eq!(site, None);
            assert_eq!(device, DeviceClass::Android.as_str());
            assert_eq!(prefix.as_deref(), Some("10.1.2.0/24"));
        }
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_writes_none_of_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut writer = EventWriter::open(store.path()).unwrap();
        // The sixth row of the batch is refused, after five were inserted.
        sqlx::query("CREATE TRIGGER refuse_code5 BEFORE INSERT ON scan_events WHEN NEW.code = 'code5' BEGIN SELECT RAISE(ABORT, 'refused'); END")
            .execute(store.pool())
            .await
            .unwrap();
        let batch: Vec<ScanEvent> = (0..10).map(event).collect();
        assert!(writer.insert(&batch).is_err());
        assert_eq!(store.count_scan_events().await.unwrap(), 0);
        writer.insert(&batch[..5]).unwrap();
        assert_eq!(store.count_scan_events().await.unwrap(), 5);
    }

    #[tokio::test]
    async fn a_failed_batch_writes_nothing_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let mut writer = EventWriter::open(store.path()).unwrap();
        // Another connection holds the write lock past the writer's patience: its batch fails whole.
        writer
            .connection
            .busy_timeout(Duration::from_millis(50))
            .unwrap();
        let mut blocker = store.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *blocker)
            .await
            .unwrap();
        let batch: Vec<ScanEvent> = (0..10).map(event).collect();
        assert!(writer.insert(&batch).is_err());
        sqlx::query("ROLLBACK")
            .execute(&mut *blocker)
            .await
            .unwrap();
        drop(blocker);
        assert_eq!(store.count_scan_events().await.unwrap(), 0);
        writer.insert(&batch).unwrap();
        assert_eq!(store.count_scan_events().await.unwrap(), 10);
    }
}
