//! Operational figures for `/metrics`, in the OpenMetrics text format Prometheus scrapes: scans by
//! outcome and role with their latency, chat turns and escalations, index builds, the index being
//! served, and the scan-event queue (written, dropped). Labels never carry a code, a name or a
//! question: only small fixed vocabularies (outcome, role, scope, reason), so the series stay few
//! and nothing personal reaches a monitoring system.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::events::{EventCounters, ScanEvent};

/// Label sets of one or two (name, value) pairs, all static: looking a series up on the scan path
/// allocates nothing.
type Label = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];
type HistogramFamily = Family<Label, Histogram, fn() -> Histogram>;

/// Scan outcomes, the labels of `scan_outcome`'s indices.
const SCAN_OUTCOMES: [&str; 4] = ["page", "redirect", "fallback", "discharge"];
/// The roles' names and `other`.
const SCAN_ROLES: usize = crate::roles::ALL_ROLES.len() + 1;

pub struct Metrics {
    registry: Registry,
    scans: Family<Labels2, Counter>,
    scan_seconds: HistogramFamily,
    /// The scan series, each looked up in its family once and then kept (a family lookup hashes
    /// the labels under a lock, which every scan paid for before): counters by
    /// `outcome * SCAN_ROLES + role`, durations by outcome.
    scan_counts: Vec<OnceLock<Counter>>,
    scan_durations: [OnceLock<Histogram>; SCAN_OUTCOMES.len()],
    chat_turns: Family<Labels2, Counter>,
    chat_seconds: HistogramFamily,
    escalations: Family<Label, Counter>,
    index_builds: Family<Label, Counter>,
    index_build_seconds: Histogram,
    index_generation: Gauge,
    index_chunks: Gauge,
    /// Webhook events not yet delivered, by queue id (ids come from `assets.toml`: few, and
    /// nothing personal). Set at each scrape from the store.
    webhook_waiting: Family<[(&'static str, String); 1], Gauge>,
    /// The queues `webhook_waiting` has a series for, so a scrape removes only those gone.
    webhook_queues: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// 0.1 ms to about 3 s: scans are answered in well under a millisecond to a few.
fn scan_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// 1 ms to about 16 s: a chat turn embeds the question and may wait for an inference slot.
fn chat_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new(events: Arc<EventCounters>) -> Self {
        let mut registry = Registry::with_prefix("scanaid");
        let scans = Family::<Labels2, Counter>::default();
        registry.register(
            "scans",
            "Scans answered, by outcome (page, redirect, fallback, discharge) and role",
            scans.clone(),
        );
        let scan_seconds = HistogramFamily::new_with_constructor(scan_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "scan_duration",
            "Time from request to response for a scan, by outcome",
            Unit::Seconds,
            scan_seconds.clone(),
        );
        let chat_turns = Family::<Labels2, Counter>::default();
        registry.register(
            "chat_turns",
            "Chat messages answered, by scope (asset, patient) and outcome (answered, unsure, person)",
            chat_turns.clone(),
        );
        let chat_seconds = HistogramFamily::new_with_constructor(chat_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "chat_duration",
            "Time to answer a chat message, by scope",
            Unit::Seconds,
            chat_seconds.clone(),
        );
        let escalations = Family::<Label, Counter>::default();
        registry.register(
            "escalations",
            "Tickets opened for a person, by reason (asked, unsure, busy, failed)",
            escalations.clone(),
        );
        let index_builds = Family::<Label, Counter>::default();
        registry.register(
            "index_builds",
            "Index generations built by the server, by result (promoted, failed)",
            index_builds.clone(),
        );
        let index_build_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 12));
        registry.register_with_unit(
            "index_build_duration",
            "Time to build and promote an index generation",
            Unit::Seconds,
            index_build_seconds.clone(),
        );
        let index_generation = Gauge::default();
        registry.register(
            "index_generation",
            "Number of the index generation being served",
            index_generation.clone(),
        );
        let index_chunks = Gauge::default();
        registry.register(
            "index_chunks",
            "Chunks in the index generation being served",
            index_chunks.clone(),
        );
        let webhook_waiting = Family::<[(&'static str, String); 1], Gauge>::default();
        registry.register(
            "webhook_deliveries_waiting",
            "Ticket events not yet taken by their support queue's webhook receiver, by queue",
            webhook_waiting.clone(),
        );
        registry.register_collector(Box::new(EventQueue(events)));
        Self {
            registry,
            scans,
            scan_seconds,
            scan_counts: (0..SCAN_OUTCOMES.len() * SCAN_ROLES)
                .map(|_| OnceLock::new())
                .collect(),
            scan_durations: Default::default(),
            chat_turns,
            chat_seconds,
            escalations,
            index_builds,
            index_build_seconds,
            index_generation,
            index_chunks,
            webhook_waiting,
            webhook_queues: Default::default(),
        }
    }

    /// Sets the webhook backlog to `waiting` (queue id, events), forgetting queues not in it. Each
    /// series is set in place (a scrape running at the same time never finds one missing).
    pub fn set_webhook_backlog(&self, waiting: &[(String, i64)]) {
        let mut known = self.webhook_queues.lock().expect("metrics lock");
        for (queue, events) in waiting {
            self.webhook_waiting
                .get_or_create(&[("queue", queue.clone())])
                .set(*events);
        }
        let now: std::collections::BTreeSet<String> =
            waiting.iter().map(|(queue, _)| queue.clone()).collect();
        for gone in known.difference(&now) {
            self.webhook_waiting.remove(&[("queue", gone.clone())]);
        }
        *known = now;
    }

    /// One counted scan (HEAD requests and link-preview bots are not scans).
    pub fn scan(&self, event: &ScanEvent) {
        let o = scan_outcome(event);
        let outcome = SCAN_OUTCOMES[o];
        // The role as its static name (events carry it as text); anything else would be a bug.
        let r = crate::roles::ALL_ROLES
            .iter()
            .position(|r| r.as_str() == event.role)
            .unwrap_or(SCAN_ROLES - 1);
        let role = crate::roles::ALL_ROLES
            .get(r)
            .map_or("other", |r| r.as_str());
        self.scan_counts[o * SCAN_ROLES + r]
            .get_or_init(|| {
                self.scans
                    .get_or_create(&[("outcome", outcome), ("role", role)])
                    .clone()
            })
            .inc();
        self.scan_durations[o]
            .get_or_init(|| {
                self.scan_seconds
                    .get_or_create(&[("outcome", outcome)])
                    .clone()
            })
            .observe(event.latency_us as f64 / 1e6);
    }

    /// One answered chat message. `outcome`: `answered`, `unsure` (a person offered), or `person`
    /// (the person asked for one and nothing was looked up).
    pub fn chat_turn(&self, scope: &'static str, outcome: &'static str, seconds: f64) {
        self.chat_turns
            .get_or_create(&[("scope", scope), ("outcome", outcome)])
            .inc();
        self.chat_seconds
            .get_or_create(&[("scope", scope)])
            .observe(seconds);
    }

    /// A ticket opened: `asked` (the person asked for someone) or `unsure` (low confidence).
    pub fn escalation(&self, reason: &'static str) {
        self.escalations.get_or_create(&[("reason", reason)]).inc();
    }

    /// An index build the server ran (packets, a publish), whether it was promoted.
    pub fn index_build(&self, promoted: bool, seconds: f64) {
        let result = if promoted { "promoted" } else { "failed" };
        self.index_builds.get_or_create(&[("result", result)]).inc();
        if promoted {
            self.index_build_seconds.observe(seconds);
        }
    }

    /// The exposition, with the served index's generation and size as of now.
    pub fn render(&self, generation: &str, chunks: usize) -> String {
        self.index_generation
            .set(generation.trim_start_matches('g').parse().unwrap_or(0));
        self.index_chunks.set(chunks as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `GET /metrics`: the exposition for a scraper on this machine, or one bearing the configured
/// token; 404 for anyone else (the figures are operational, not for the public a QR code reaches).
pub async fn exposition(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let bearer = crate::http::header(request.headers(), "authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    let peer = crate::http::peer(&request);
    if !may_scrape(peer, app.config.metrics_token.as_deref(), bearer) {
        return StatusCode::NOT_FOUND.into_response();
    }
    match app.store.webhook_backlog().await {
        Ok(backlog) => app.metrics.set_webhook_backlog(&backlog),
        // The other figures are still worth a scrape; the backlog keeps its last value.
        Err(error) => tracing::warn!(%error, "reading the webhook backlog for /metrics failed"),
    }
    let index = app.index();
    let body = app.metrics.render(&index.generation, index.len());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A scraper on this machine may; another only with the configured token.
fn may_scrape(peer: Option<std::net::IpAddr>, token: Option<&str>, bearer: Option<&str>) -> bool {
    if peer.is_some_and(|ip| ip.is_loopback()) {
        return true;
    }
    match (token, bearer) {
        (Some(expected), Some(given)) => {
            crate::auth::same_secret(expected.as_bytes(), given.as_bytes())
        }
        _ => false,
    }
}

/// The scan's outcome, as an index into `SCAN_OUTCOMES`.
fn scan_outcome(event: &ScanEvent) -> usize {
    if event.fallback {
        2
    } else if event.rule == "discharge" {
        3
    } else if event.destination.starts_with("redirect:") {
        1
    } else {
        0
    }
}

/// The scan-event queue's counters, read at each scrape.
#[derive(Debug)]
struct EventQueue(Arc<EventCounters>);

impl Collector for EventQueue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "scan_events_written",
                "Scan events written to the store",
                &self.0.written,
            ),
            (
                "scan_events_dropped",
                "Scan events dropped because the queue was full",
                &self.0.dropped,
            ),
            (
                "scan_event_write_errors",
                "Batches of scan events the store failed to write",
                &self.0.write_errors,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_or_the_token_may_scrape() {
        let here = Some("127.0.0.1".parse().unwrap());
        let away = Some("10.1.2.3".parse().unwrap());
        assert!(may_scrape(here, None, None));
        assert!(!may_scrape(away, None, None));
        assert!(!may_scrape(away, None, Some("anything")));
        assert!(!may_scrape(away, Some("s3cret-token"), None));
        assert!(!may_scrape(
            away,
            Some("s3cret-token"),
            Some("s3cret-tokem")
        ));
        assert!(may_scrape(away, Some("s3cret-token"), Some("s3cret-token")));
        assert!(!may_scrape(None, Some("s3cret-token"), Some("")));
    }
}
