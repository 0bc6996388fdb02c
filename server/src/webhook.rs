//! Outbound webhooks, one optional receiver per support queue. Every ticket event is first stored as a
//! delivery (so nothing is lost to a restart or a receiver that is down), then POSTed as JSON with an
//! HMAC-SHA256 signature and retried with exponential backoff until the receiver answers 2xx.
//! Delivery is at least once: a receiver drops repeats by the `x-scanaid-delivery` header. Each
//! attempt is claimed in the store first (a lease), so several servers on one store do not send the
//! same delivery together.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::error::Result;
use crate::store::Store;

/// `sha256=<hex>`: the HMAC-SHA256 of `{timestamp}.{body}` under the queue's secret.
pub const SIGNATURE_HEADER: &str = "x-scanaid-signature";
/// Unix seconds when the delivery was signed; part of what is signed, so a captured delivery cannot
/// be passed off later as new.
pub const TIMESTAMP_HEADER: &str = "x-scanaid-timestamp";
/// The event name, e.g. `ticket.opened`.
pub const EVENT_HEADER: &str = "x-scanaid-event";
/// The delivery's id: the same on every retry of one event.
pub const DELIVERY_HEADER: &str = "x-scanaid-delivery";

/// How long a receiver may take to answer before the attempt counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries in flight at once (each the head of its queue); more wait for one to finish.
const BATCH: usize = 32;
/// How long a claimed delivery stays with the server that claimed it: longer than one attempt can
/// take (`ATTEMPT_TIMEOUT` plus the wait for a blocking thread), short enough that a delivery whose
/// server stopped mid-attempt goes out again soon.
pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(60);
/// The longest the deliverer sleeps without being woken, so retries fall due on time.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The signature a receiver recomputes to check a delivery came from us, unchanged.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Waits between attempts of one delivery: `first`, then doubling, never more than `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after the `failures`-th failed attempt (1-based).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A delivery due now, with where it goes.
#[derive(Debug)]
struct Due {
    id: i64,
    event: String,
    payload: String,
    attempts: i64,
    /// How many of those attempts the receiver refused (`Outcome::Refused`).
    refusals: i64,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
}

/// A delivery `d` that is its queue's oldest undelivered one: only those go out (in order per
/// queue), and only their times say when the deliverer has work.
/// One set aside (refused too often) is neither sent nor in the way.
const QUEUE_HEAD: &str = "d.delivered_at IS NULL AND d.set_aside_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
     WHERE e.queue_id = d.queue_id AND e.delivered_at IS NULL AND e.set_aside_at IS NULL AND e.id < d.id)";

/// How many times a receiver may refuse one delivery (a 4xx but 408 and 429) before it is set
/// aside: a refusal that repeats is about the payload, not the moment, and retrying it for ever
/// would hold up every later event of the queue.
pub const REFUSALS_BEFORE_SET_ASIDE: i64 = 5;

fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    /// Stores a delivery of `event` for `queue` if the queue has a webhook; the id when it does.
    pub async fn enqueue_webhook(
        &self,
        queue: &str,
        event: &str,
        payload: &serde_json::Value,
    ) -> Result<Option<i64>> {
        let has_webhook: Option<(Option<String>,)> =
            sqlx::query_as("SELECT webhook_url FROM queues WHERE id = ?")
                .bind(queue)
                .fetch_optional(self.pool())
                .await?;
        if !matches!(has_webhook, Some((Some(_),))) {
            return Ok(None);
        }
        let now = stamp(chrono::Utc::now());
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (queue_id, event, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(queue)
        .bind(event)
        .bind(payload.to_string())
        .bind(&now)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(Some(done.last_insert_rowid()))
    }

    /// Sets or removes (`None`) a queue's webhook; false when there is no such queue.
    pub async fn set_queue_webhook(
        &self,
        queue: &str,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE queues SET webhook_url = ?, webhook_secret = ? WHERE id = ?")
                .bind(url)
                .bind(secret)
                .bind(queue)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes the oldest delivery due at `now` for this process, among those that are the oldest
    /// undelivered of their queue: a queue's receiver gets its events in order (a `ticket.reply`
    /// never before its `ticket.opened`), and one queue's failing receiver holds up only that
    /// queue. Its next attempt moves to the end of a lease, so another server on the same store
    /// does not send it too, and the next claim takes another queue's; if this one stops before
    /// recording the outcome, the delivery falls due again when the lease ends. `None` when nothing
    /// is due. (On PostgreSQL the outer WHERE repeats the test so a concurrent claimer that lost the
    /// race updates nothing.)
    async fn claim_due(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Option<Due>> {
        let lease_end = now + chrono::Duration::from_std(CLAIM_LEASE).expect("fits");
        let claimed: Option<(i64, String, String, String, i64, i64)> = sqlx::query_as(&format!(
            "UPDATE webhook_deliveries SET next_attempt_at = ?1
                 WHERE id = (SELECT d.id FROM webhook_deliveries d
                             WHERE d.next_attempt_at <= ?2 AND {QUEUE_HEAD}
                             ORDER BY d.id LIMIT 1)
                   AND delivered_at IS NULL AND set_aside_at IS NULL AND next_attempt_at <= ?2
                 RETURNING id, queue_id, event, payload, attempts, refusals"
        ))
        .bind(stamp(lease_end))
        .bind(stamp(now))
        .fetch_optional(self.pool())
        .await?;
        let Some((id, queue_id, event, payload, attempts, refusals)) = claimed else {
            return Ok(None);
        };
        let receiver: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT webhook_url, webhook_secret FROM queues WHERE id = ?")
                .bind(&queue_id)
                .fetch_optional(self.pool())
                .await?;
        let (webhook_url, webhook_secret) = receiver.unwrap_or((None, None));
        Ok(Some(Due {
            id,
            event,
            payload,
            attempts,
            refusals,
            webhook_url,
            webhook_secret,
        }))
    }

    /// When the next delivery at the head of its queue falls due, if any is waiting (those behind
    /// a head wait for it, not for their own time).
    async fn next_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let next: Option<String> = sqlx::query_scalar(&format!(
            "SELECT MIN(d.next_attempt_at) FROM webhook_deliveries d WHERE {QUEUE_HEAD}"
        ))
        .fetch_one(self.pool())
        .await?;
        Ok(next
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&chrono::Utc)))
    }

    async fn delivery_done(&self, id: i64, attempts: i64) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET delivered_at = ?, attempts = ?, last_error = NULL WHERE id = ?",
        )
        .bind(stamp(chrono::Utc::now()))
        .bind(attempts)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets a delivery aside after its receiver refused it `REFUSALS_BEFORE_SET_ASIDE` times.
    async fn delivery_set_aside(
        &self,
        id: i64,
        attempts: i64,
        refusals: i64,
        error: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = ?, refusals = ?, last_error = ?, set_aside_at = ? WHERE id = ?",
        )
        .bind(attempts)
        .bind(refusals)
        .bind(error)
        .bind(stamp(chrono::Utc::now()))
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn delivery_failed(
        &self,
        id: i64,
        (attempts, refusals): (i64, i64),
        retry_in: Duration,
        error: &str,
    ) -> Result<()> {
        let next = chrono::Utc::now() + chrono::Duration::from_std(retry_in).expect("fits");
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = ?, refusals = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
        )
        .bind(attempts)
        .bind(refusals)
        .bind(stamp(next))
        .bind(error)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Failed(String),
    /// The receiver answered and will not take it (a 4xx but 408 Request Timeout and 429 Too Many
    /// Requests, which say "later"): worth a few more tries (a receiver being redeployed), not
    /// for ever.
    Refused(String),
}

/// What an answer with `status` (not 2xx) means for the delivery.
fn not_taken(status: u16) -> Outcome {
    let error = format!("receiver answered {status}");
    if (400..500).contains(&status) && status != 408 && status != 429 {
        Outcome::Refused(error)
    } else {
        Outcome::Failed(error)
    }
}

/// POSTs one delivery; blocking (ureq), so it runs on the blocking pool.
fn attempt(url: &str, secret: &str, id: i64, event: &str, payload: &str) -> Outcome {
    let timestamp = chrono::Utc::now().timestamp();
    let agent = ureq::AgentBuilder::new()
        .timeout(ATTEMPT_TIMEOUT)
        .redirects(0)
        .build();
    let sent = agent
        .post(url)
        .set("content-type", "application/json")
        .set("user-agent", "scanaid-webhook")
        .set(EVENT_HEADER, event)
        .set(DELIVERY_HEADER, &id.to_string())
        .set(TIMESTAMP_HEADER, &timestamp.to_string())
        .set(SIGNATURE_HEADER, &signature(secret, timestamp, payload))
        .send_string(payload);
    match sent {
        Ok(response) if (200..300).contains(&response.status()) => Outcome::Delivered,
        Ok(response) => not_taken(response.status()),
        Err(ureq::Error::Status(status, _)) => not_taken(status),
        // Only the kind of failure: ureq's message starts with the URL, and a webhook URL often
        // carries its receiver's secret (it is logged and stored with the delivery).
        Err(e) => Outcome::Failed(format!("could not reach the receiver: {}", e.kind())),
    }
}

/// Claims the due deliveries at the head of their queues (one per queue; at most `BATCH` in flight
/// in all) and starts sending each on `sending`.
async fn claim_and_send(
    store: &Store,
    sending: &mut tokio::task::JoinSet<(Due, Outcome)>,
) -> Result<()> {
    while sending.len() < BATCH {
        let Some(due) = store.claim_due(chrono::Utc::now()).await? else {
            break;
        };
        sending.spawn(async move {
            let outcome = match (due.webhook_url.clone(), due.webhook_secret.clone()) {
                (Some(url), Some(secret)) => {
                    let (id, event, payload) = (due.id, due.event.clone(), due.payload.clone());
                    tokio::task::spawn_blocking(move || {
                        attempt(&url, &secret, id, &event, &payload)
                    })
                    .await
                    .unwrap_or_else(|e| Outcome::Failed(format!("the attempt stopped: {e}")))
                }
                // Kept, not dropped: if the queue gets a webhook again, the events still go out.
                _ => {
                    Outcome::Failed("the queue has no webhook (or no secret) any more".to_string())
                }
            };
            (due, outcome)
        });
    }
    Ok(())
}

/// Records how one attempt went: delivered, or failed and due again after the backoff.
async fn record(store: &Store, backoff: Backoff, due: Due, outcome: Outcome) -> Result<()> {
    let attempts = due.attempts + 1;
    let (error, refusals) = match outcome {
        Outcome::Delivered => return store.delivery_done(due.id, attempts).await,
        Outcome::Refused(error) => (error, due.refusals + 1),
        Outcome::Failed(error) => (error, due.refusals),
    };
    if refusals >= REFUSALS_BEFORE_SET_ASIDE {
        tracing::error!(delivery = due.id, attempts, %error, "the webhook receiver refused a delivery every time; set aside, the queue's later events go on");
        return store
            .delivery_set_aside(due.id, attempts, refusals, &error)
            .await;
    }
    let wait = backoff.after(u32::try_from(attempts).unwrap_or(u32::MAX));
    tracing::warn!(delivery = due.id, attempts, %error, ?wait, "webhook delivery failed; will retry");
    store
        .delivery_failed(due.id, (attempts, refusals), wait, &error)
        .await
}

/// Starts the deliverer. It sends each queue's oldest undelivered event, all queues at once (a
/// receiver that takes its full timeout delays only its own queue), records each outcome as it
/// comes, and otherwise sleeps until the next retry falls due or `wake` is notified (a new event).
/// Stopping it loses nothing: undelivered events stay in the store and go out after the next start
/// (one whose attempt was cut short goes again when its claim's lease ends).
pub fn start(store: Store, wake: Arc<Notify>, backoff: Backoff) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sending = tokio::task::JoinSet::new();
        loop {
            if let Err(error) = claim_and_send(&store, &mut sending).await {
                tracing::error!(%error, "webhook deliverer");
            }
            let sleep = match store.next_due().await {
                Ok(Some(at)) => (at - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(IDLE_CHECK),
                Ok(None) => IDLE_CHECK,
                Err(error) => {
                    tracing::error!(%error, "webhook deliverer");
                    IDLE_CHECK
                }
            };
            // Due already (more heads than `BATCH`, or a retry fell due meanwhile): go again soon,
            // but never in a busy loop when a receiver is down.
            let sleep = sleep.max(Duration::from_millis(10));
            tokio::select! {
                Some(sent) = sending.join_next(), if !sending.is_empty() => {
                    match sent {
                        Ok((due, outcome)) => {
                            if let Err(error) = record(&store, backoff, due, outcome).await {
                                tracing::error!(%error, "recording a webhook attempt");
                            }
                        }
                        // Its claim's lease ends and it goes out again.
                        Err(error) => tracing::error!(%error, "a webhook attempt stopped"),
                    }
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_and_body() {
        // Computed independently (Python's hmac module): HMAC-SHA256 of "1.{}" under "key".
        let sig = signature("key", 1, "{}");
        assert_eq!(
            sig,
            "sha256=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
        assert_ne!(sig, signature("key", 2, "{}"), "the timestamp is signed");
        assert_ne!(sig, signature("other", 1, "{}"), "the key matters");
        assert_ne!(
            sig,
            signature("key", 1, "{ }"),
            "the body is signed byte for byte"
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.after(1), Duration::from_secs(5));
        assert_eq!(b.after(2), Duration::from_secs(10));
        assert_eq!(b.after(4), Duration::from_secs(40));
        assert_eq!(b.after(5), Duration::from_secs(60));
        assert_eq!(b.after(1000), Duration::from_secs(60));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_due_delivery_is_claimed_by_one_server_until_its_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).await.unwrap();
        let second = Store::open(dir.path()).await.unwrap();
        let t0 = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        // One per queue: a queue's later deliveries wait for its oldest (tested below).
        for n in 0..20 {
            sqlx::query(
                "INSERT INTO webhook_deliveries (queue_id, event, payload, created_at, next_attempt_at)
                 VALUES (?, 'ticket.opened', ?, ?, ?)",
            )
            .bind(format!("q{n}"))
            .bind(format!("{{\"n\":{n}}}"))
            .bind(stamp(t0))
            .bind(stamp(t0))
            .execute(first.pool())
            .await
            .unwrap();
        }
        // Two servers claim at once, 15 times each: every delivery goes to exactly one of them.
        let claimers: Vec<_> = [first.clone(), second.clone()]
            .into_iter()
            .map(|store| {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    for _ in 0..15 {
                        if let Some(due) = store.claim_due(t0).await.unwrap() {
                            got.push(due.id);
                        }
                    }
                    got
                })
            })
            .collect();
        let mut ids = Vec::new();
        for claimer in claimers {
            ids.extend(claimer.await.unwrap());
        }
        ids.sort();
        assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
        // Claimed and never settled (the server stopped): not due again until the lease ends.
        let later = t0 + chrono::Duration::seconds(59);
        assert!(second.claim_due(later).await.unwrap().is_none());
        // An administrator's "Send now" meanwhile leaves claimed deliveries to their claimer.
        assert_eq!(first.send_waiting_now("q0", later).await.unwrap(), 0);
        assert!(second.claim_due(later).await.unwrap().is_none());
        let after_lease = t0 + chrono::Duration::seconds(61);
        let again = second.claim_due(after_lease).await.unwrap().unwrap();
        assert_eq!(again.id, 1, "the oldest first");
        assert_eq!(again.attempts, 0);
        // Delivered is final.
        second.delivery_done(again.id, 1).await.unwrap();
        let next = first.claim_due(after_lease).await.unwrap().unwrap();
        assert_eq!(next.id, 2);
        // "Send now" brings forward a delivery waiting out a long backoff, and leaves one a server
        // has claimed (due again at most a lease from now) to that server.
        let now = t0 - chrono::Duration::days(1);
        for (event, next) in [
            ("backoff", now + chrono::Duration::hours(1)),
            ("claimed", now + chrono::Duration::seconds(30)),
        ] {
            sqlx::query(
                "INSERT INTO webhook_deliveries (queue_id, event, payload, created_at, next_attempt_at)
                 VALUES ('fresh', ?, '{}', ?, ?)",
            )
            .bind(event)
            .bind(stamp(now))
            .bind(stamp(next))
            .execute(first.pool())
            .await
            .unwrap();
        }
        assert!(first.claim_due(now).await.unwrap().is_none());
        assert_eq!(first.send_waiting_now("fresh", now).await.unwrap(), 1);
        let sent_now = first.claim_due(now).await.unwrap().unwrap();
        assert_eq!(sent_now.event, "backoff");
        assert!(first.claim_due(now).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_queues_events_go_out_in_order_and_other_queues_do_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        // Now: the failure's backoff below is counted from the clock.
        let t0 = chrono::Utc::now();
        for (queue, event) in [
            ("a", "ticket.opened"),
            ("a", "ticket.reply"),
            ("b", "ticket.opened"),
        ] {
            sqlx::query(
                "INSERT INTO webhook_deliveries (queue_id, event, payload, created_at, next_attempt_at)
                 VALUES (?, ?, '{}', ?, ?)",
            )
            .bind(queue)
            .bind(event)
            .bind(stamp(t0))
            .bind(stamp(t0))
            .execute(store.pool())
            .await
            .unwrap();
        }
        // Both queues' oldest are claimed; a's second waits for its first.
        let first = store.claim_due(t0).await.unwrap().unwrap();
        let second = store.claim_due(t0).await.unwrap().unwrap();
        assert_eq!((first.id, second.id), (1, 3));
        assert!(store.claim_due(t0).await.unwrap().is_none());
        store.delivery_done(3, 1).await.unwrap();
        // a's first fails and backs off: its second still waits, and is not due before it.
        store
            .delivery_failed(1, (1, 0), Duration::from_secs(3600), "down")
            .await
            .unwrap();
        let soon = t0 + chrono::Duration::seconds(5);
        assert!(store.claim_due(soon).await.unwrap().is_none());
        let next = store.next_due().await.unwrap().unwrap();
        assert!(
            next > chrono::Utc::now() + chrono::Duration::minutes(59),
            "{next}"
        );
        // Delivered at last: then its second goes.
        store.delivery_done(1, 2).await.unwrap();
        assert_eq!(store.claim_due(soon).await.unwrap().unwrap().id, 2);
    }
}
