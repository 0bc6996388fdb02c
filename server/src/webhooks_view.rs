//! `/admin/webhooks`: what each support queue's webhook receiver has been sent and what waits for
//! it. A receiver that is down keeps every event (see `webhook.rs`) and retries back off to an
//! hour, so without this page nobody would notice a ticket system that stopped hearing from us
//! until someone asks why. An administrator sees how many events wait, since when, the last
//! failure's kind, and can send the waiting events now once the receiver is back.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::account::{forbidden, require_admin, CsrfForm};
use crate::error::Result;
use crate::store::Store;
use crate::{AppError, AppState};

/// One queue's webhook, as the page shows it.
#[derive(Debug, sqlx::FromRow)]
pub struct QueueWebhook {
    pub queue_id: String,
    pub queue_name: String,
    /// `None` when the queue's webhook was removed (`Store::set_queue_webhook`) but events for it
    /// still wait.
    pub webhook_url: Option<String>,
    pub waiting: i64,
    /// Events the receiver refused too often, set aside (`webhook::REFUSALS_BEFORE_SET_ASIDE`).
    pub set_aside: i64,
    /// When the oldest waiting event happened (RFC 3339 UTC).
    pub oldest_waiting: Option<String>,
    pub next_attempt: Option<String>,
    /// Attempts made so far on the waiting event tried most.
    pub most_attempts: Option<i64>,
    /// The kind of the newest failure among the waiting events (never the URL: see `webhook.rs`).
    pub last_error: Option<String>,
    pub delivered_last_day: i64,
    pub last_delivered: Option<String>,
}

impl QueueWebhook {
    /// Where the receiver is, without the path, query or credentials a webhook URL may carry (many
    /// receivers put their secret there): `http://host[:port]`.
    pub fn receiver(&self) -> String {
        let Some(url) = &self.webhook_url else {
            return "none (its webhook was removed)".to_string();
        };
        match url::Url::parse(url) {
            Ok(url) => match (url.host_str(), url.port()) {
                (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
                (Some(host), None) => format!("{}://{host}", url.scheme()),
                (None, _) => "not a URL with a host".to_string(),
            },
            Err(_) => "not a valid URL".to_string(),
        }
    }
}

/// A stored time as `YYYY-MM-DD HH:MM UTC`, or `-`.
pub fn minute(at: &Option<String>) -> String {
    at.as_deref().map_or_else(
        || "-".to_string(),
        |at| crate::console::local_time(at, "UTC"),
    )
}

impl Store {
    /// Every queue with a webhook or with events waiting for one, by name. The next try is the
    /// queue's oldest waiting event's: the others wait for it (events go out in order).
    pub async fn queue_webhooks(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<QueueWebhook>> {
        let day_ago = crate::store::stored_time(now - chrono::Duration::days(1));
        Ok(sqlx::query_as(
            "SELECT q.id AS queue_id, q.name AS queue_name, q.webhook_url,
                    COUNT(d.id) FILTER (WHERE d.delivered_at IS NULL AND d.set_aside_at IS NULL) AS waiting,
                    COUNT(d.id) FILTER (WHERE d.delivered_at IS NULL AND d.set_aside_at IS NOT NULL) AS set_aside,
                    MIN(d.created_at) FILTER (WHERE d.delivered_at IS NULL AND d.set_aside_at IS NULL) AS oldest_waiting,
                    (SELECT h.next_attempt_at FROM webhook_deliveries h
                     WHERE h.queue_id = q.id AND h.delivered_at IS NULL AND h.set_aside_at IS NULL
                     ORDER BY h.id LIMIT 1) AS next_attempt,
                    MAX(d.attempts) FILTER (WHERE d.delivered_at IS NULL AND d.set_aside_at IS NULL) AS most_attempts,
                    (SELECT e.last_error FROM webhook_deliveries e
                     WHERE e.queue_id = q.id AND e.delivered_at IS NULL AND e.last_error IS NOT NULL
                     ORDER BY e.id DESC LIMIT 1) AS last_error,
                    COUNT(d.id) FILTER (WHERE d.delivered_at >= ?1) AS delivered_last_day,
                    MAX(d.delivered_at) AS last_delivered
             FROM queues q LEFT JOIN webhook_deliveries d ON d.queue_id = q.id
             GROUP BY q.id
             HAVING q.webhook_url IS NOT NULL OR waiting > 0 OR set_aside > 0
             ORDER BY q.name",
        )
        .bind(day_ago)
        .fetch_all(self.pool())
        .await?)
    }

    /// Makes the waiting events of `queue` that wait out a retry's backoff due at `now`; how many.
    /// One a server has claimed (its next attempt is the end of a lease, at most `CLAIM_LEASE`
    /// ahead) is left alone, so no two servers send it together; it goes out within the lease
    /// anyway. The deliverer sends the others on its next pass (wake it).
    pub async fn send_waiting_now(
        &self,
        queue: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        let lease_end =
            now + chrono::Duration::from_std(crate::webhook::CLAIM_LEASE).expect("fits");
        Ok(sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = ?1
             WHERE queue_id = ?2 AND delivered_at IS NULL AND next_attempt_at > ?3",
        )
        .bind(crate::store::stored_time(now))
        .bind(queue)
        .bind(crate::store::stored_time(lease_end))
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Puts the deliveries of `queue` that were set aside back in line, due at `now`, with their
    /// count of refusals started again (the receiver was fixed); how many. They are older than
    /// what waits, so they go out first, in order.
    pub async fn send_set_aside_again(
        &self,
        queue: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE webhook_deliveries SET set_aside_at = NULL, attempts = 0, refusals = 0, next_attempt_at = ?1
             WHERE queue_id = ?2 AND delivered_at IS NULL AND set_aside_at IS NOT NULL",
        )
        .bind(crate::store::stored_time(now))
        .bind(queue)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Events waiting for a receiver, per queue id (for `/metrics`).
    pub async fn webhook_backlog(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT q.id, COUNT(d.id) FROM queues q
             LEFT JOIN webhook_deliveries d ON d.queue_id = q.id AND d.delivered_at IS NULL
             WHERE q.webhook_url IS NOT NULL OR d.id IS NOT NULL
             GROUP BY q.id ORDER BY q.id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

#[derive(Template)]
#[template(path = "admin_webhooks.html")]
pub struct WebhooksPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub queues: Vec<QueueWebhook>,
}

/// `GET /admin/webhooks`.
pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> std::result::Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let page = WebhooksPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        queues: app.store.queue_webhooks(chrono::Utc::now()).await?,
    }
    .render()?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

/// What both forms of the page check first: an administrator, the form's CSRF token, a queue that
/// exists; or the response refusing the form.
async fn queue_form(
    app: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    queue: &str,
) -> std::result::Result<std::result::Result<(), Response>, AppError> {
    let me = match require_admin(app, headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(Err(refused)),
    };
    if !crate::auth::tokens_match(&me.csrf, csrf) {
        return forbidden("This form expired. Reload the page and try again.").map(Err);
    }
    if app.store.queue(queue).await?.is_none() {
        return Ok(Err((
            StatusCode::NOT_FOUND,
            "There is no such support queue.",
        )
            .into_response()));
    }
    Ok(Ok(()))
}

/// `POST /admin/webhooks/{queue}/send`: sends the queue's waiting events now instead of at their
/// next retry (the receiver is back), then shows the page again.
pub async fn send_now(
    State(app): State<AppState>,
    crate::http::PathSegment(queue): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<CsrfForm>,
) -> std::result::Result<Response, AppError> {
    if let Err(refused) = queue_form(&app, &headers, &form.csrf, &queue).await? {
        return Ok(refused);
    }
    let due = app
        .store
        .send_waiting_now(&queue, chrono::Utc::now())
        .await?;
    if due > 0 {
        app.support.webhook_wake.notify_one();
    }
    Ok(Redirect::to("/admin/webhooks").into_response())
}

/// `POST /admin/webhooks/{queue}/retry`: the events the receiver refused too often go back in line
/// (it was fixed), first, in order; then the page again.
pub async fn send_set_aside(
    State(app): State<AppState>,
    crate::http::PathSegment(queue): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<CsrfForm>,
) -> std::result::Result<Response, AppError> {
    if let Err(refused) = queue_form(&app, &headers, &form.csrf, &queue).await? {
        return Ok(refused);
    }
    if app
        .store
        .send_set_aside_again(&queue, chrono::Utc::now())
        .await?
        > 0
    {
        app.support.webhook_wake.notify_one();
    }
    Ok(Redirect::to("/admin/webhooks").into_response())
}
