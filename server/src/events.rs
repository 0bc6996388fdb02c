//! Scan events, written off the request path. A handler hands its event to a bounded queue and returns;
//! one writer task commits them in batches. A full queue drops the event and counts it (a metric), so
//! a burst of scans never waits on the disk. Shutdown drains the queue before the store closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::device::DeviceClass;
use crate::store::Store;

/// One scan, as stored. No names, no message text, no full IP address.
#[derive(Debug, Clone)]
pub struct ScanEvent {
    pub at: String,
    pub code: String,
    pub asset_id: Option<String>,
    pub site_id: Option<String>,
    pub placement: Option<String>,
    pub device: DeviceClass,
    pub language: String,
    pub role: String,
    pub returning: bool,
    /// The rule that fired, or `default` / `fallback`.
    pub rule: String,
    pub destination: String,
    pub fallback: bool,
    pub latency_us: u64,
    pub ip_prefix: Option<String>,
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
/// How long the writer lets events gather before writing them.
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

impl EventSink {
    /// Starts the writer task; `capacity` bounds the events waiting to be written.
    pub fn start(store: Store, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let counters = Arc::new(EventCounters::default());
        let writer = tokio::spawn(write_loop(store, rx, counters.clone()));
        (Self { tx, counters }, writer)
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

async fn write_loop(store: Store, mut rx: mpsc::Receiver<Message>, counters: Arc<EventCounters>) {
    let mut batch: Vec<ScanEvent> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut closing = false;
    // Ends on `Close`, or when every sender is gone, after writing what was queued.
    while let Some(first) = rx.recv().await {
        let urgent = !matches!(first, Message::Event(_));
        take(first, &mut batch, &mut waiting, &mut closing);
        if !urgent {
            // Let events gather for `LINGER` without waking this task for each one (a receiver
            // that is not waiting is not woken by a send): under load a wake-up per scan cost more
            // CPU than the write, and a few large transactions cost far less than many small ones.
            tokio::time::sleep(LINGER).await;
        }
        while batch.len() < BATCH && !closing {
            match rx.try_recv() {
                Ok(message) => take(message, &mut batch, &mut waiting, &mut closing),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            match store.insert_scan_events(&batch).await {
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
