//! Retention limits: what people wrote (chat turns, tickets, agents' replies, webhook payloads) is
//! deleted once its conversation has been quiet for `Retention::chat`; a ticket nobody touched for
//! `ticket_idle` is closed (so its conversation can age out); a contact a person left is cleared
//! `contact_after_close` after their ticket closed; a webhook delivery its receiver never took goes
//! with the chat limit; scan events (no personal data) go after `scan_events`, the audit log after
//! `audit`; expired staff and patient sessions, and failed sign-in counts that no longer count, go at
//! once. Runs at start and then hourly.

use std::time::Duration;

use crate::error::Result;
use crate::store::Store;
use crate::support::{publish, SupportEvent};
use crate::{AppError, AppState};

/// How often the purge runs.
const EVERY: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A conversation with no turn and no ticket change for this long, and no ticket still open, is
    /// deleted with everything in it.
    pub chat: Duration,
    /// A contact left on a ticket is cleared this long after the ticket closed.
    pub contact_after_close: Duration,
    /// Scan events older than this are deleted (13 months keeps a year-on-year comparison).
    pub scan_events: Duration,
    /// A ticket not closed with no message, reply or change for this long is closed by the purge:
    /// otherwise a ticket nobody closes keeps its conversation, and the contact, for ever.
    pub ticket_idle: Duration,
    /// Audit log entries (who opened which patient packet, sign-ins) older than this are deleted.
    pub audit: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            chat: DAY * 90,
            contact_after_close: DAY * 14,
            scan_events: DAY * 395,
            ticket_idle: DAY * 30,
            audit: DAY * 395,
        }
    }
}

/// What one purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub conversations: u64,
    /// Tickets closed for being idle past `ticket_idle` (their ids: the close is announced).
    pub tickets_closed: Vec<i64>,
    pub contacts_cleared: u64,
    pub webhook_deliveries: u64,
    pub scan_events: u64,
    pub audit_entries: u64,
    pub sessions: u64,
    /// Failed sign-in counts whose window and lockout are both over.
    pub signin_attempts: u64,
}

fn cutoff(now: chrono::DateTime<chrono::Utc>, age: Duration) -> String {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Closes every ticket idle past `policy.ticket_idle` as of `now` (`closed_by` "retention";
/// `updated_at` is left alone: closing is not activity) and returns their ids.
async fn close_idle_tickets(
    store: &Store,
    policy: Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE tickets SET status = 'closed', closed_by = 'retention', closed_at = ?2
         WHERE status != 'closed' AND COALESCE(updated_at, created_at) < ?1
         RETURNING id",
    )
    .bind(cutoff(now, policy.ticket_idle))
    .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    .fetch_all(store.pool())
    .await?)
}

/// Applies `policy` as of `now`. Timestamps are stored as RFC 3339 UTC with milliseconds, so text
/// comparison is time comparison.
pub async fn purge(
    store: &Store,
    policy: Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Purged> {
    let chat_cutoff = cutoff(now, policy.chat);
    // Idle tickets close first, so a conversation whose ticket closes here can age out below when
    // it is also past the chat limit.
    let mut purged = Purged {
        tickets_closed: close_idle_tickets(store, policy, now).await?,
        ..Purged::default()
    };

    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT c.id FROM conversations c
         WHERE c.created_at < ?1
           AND NOT EXISTS (SELECT 1 FROM chat_turns t WHERE t.conversation_id = c.id AND t.at >= ?1)
           AND NOT EXISTS (SELECT 1 FROM tickets k WHERE k.conversation_id = c.id
                           AND (k.status != 'closed' OR COALESCE(k.updated_at, k.created_at) >= ?1))",
    )
    .bind(&chat_cutoff)
    .fetch_all(store.pool())
    .await?;
    for batch in stale.chunks(500) {
        let ids = serde_json::to_string(batch).expect("strings serialise");
        let mut tx = store.pool().begin().await?;
        for sql in [
            "DELETE FROM ticket_messages WHERE ticket_id IN
               (SELECT id FROM tickets WHERE conversation_id IN (SELECT value FROM json_each(?)))",
            "DELETE FROM tickets WHERE conversation_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM chat_turns WHERE conversation_id IN (SELECT value FROM json_each(?))",
            "DELETE FROM conversations WHERE id IN (SELECT value FROM json_each(?))",
        ] {
            let done = sqlx::query(sql).bind(&ids).execute(&mut *tx).await?;
            if sql.starts_with("DELETE FROM conversations") {
                purged.conversations += done.rows_affected();
            }
        }
        tx.commit().await?;
    }

    purged.contacts_cleared = sqlx::query(
        "UPDATE tickets SET contact = NULL
         WHERE contact IS NOT NULL AND status = 'closed' AND closed_at < ?",
    )
    .bind(cutoff(now, policy.contact_after_close))
    .execute(store.pool())
    .await?
    .rows_affected();

    // Payloads carry what people wrote: delivered ones go with the chat limit, and so do ones a
    // receiver never took (a removed or dead receiver would otherwise keep them for ever).
    purged.webhook_deliveries =
        sqlx::query("DELETE FROM webhook_deliveries WHERE COALESCE(delivered_at, created_at) < ?")
            .bind(&chat_cutoff)
            .execute(store.pool())
            .await?
            .rows_affected();

    purged.scan_events = sqlx::query("DELETE FROM scan_events WHERE at < ?")
        .bind(cutoff(now, policy.scan_events))
        .execute(store.pool())
        .await?
        .rows_affected();

    purged.audit_entries = sqlx::query("DELETE FROM audit_log WHERE at < ?")
        .bind(cutoff(now, policy.audit))
        .execute(store.pool())
        .await?
        .rows_affected();

    purged.sessions = sqlx::query("DELETE FROM sessions WHERE last_seen < ?")
        .bind(cutoff(now, crate::auth::SESSION_IDLE))
        .execute(store.pool())
        .await?
        .rows_affected();
    purged.sessions += sqlx::query("DELETE FROM patient_sessions WHERE last_seen < ?")
        .bind(cutoff(now, crate::patients::PATIENT_IDLE))
        .execute(store.pool())
        .await?
        .rows_affected();
    purged.signin_attempts = crate::signin_limits::purge_expired(store, now).await?;
    Ok(purged)
}

/// `purge` with the server's policy, announcing each ticket it closes as `ticket.closed` (by
/// "retention"), as an agent's close is: open consoles drop it from the queue, the person's chat
/// says so, webhooks hear of it. The idle tickets are closed and announced first, on their own:
/// a later step failing, or a conversation aging out in the same purge, must not leave a ticket
/// closed that nobody was told of (no later purge would tell).
pub async fn purge_and_announce(
    app: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<Purged, AppError> {
    let policy = app.config.retention;
    let closed = close_idle_tickets(&app.store, policy, now).await?;
    for &id in &closed {
        let announced = match app.store.ticket(id).await {
            Ok(Some(ticket)) => {
                publish(
                    app,
                    SupportEvent::of("ticket.closed", &ticket).by("retention"),
                )
                .await
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error.into()),
        };
        if let Err(AppError(error)) = announced {
            tracing::error!(%error, ticket = id, "announcing a ticket retention closed failed");
        }
    }
    let mut purged = purge(&app.store, policy, now).await?;
    purged.tickets_closed = closed;
    Ok(purged)
}

/// Purges now and then every hour until aborted.
pub fn start(app: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        loop {
            every.tick().await;
            match purge_and_announce(&app, chrono::Utc::now()).await {
                Ok(purged) if purged != Purged::default() => {
                    tracing::info!(?purged, "retention: removed what is past its limit")
                }
                Ok(_) => {}
                Err(AppError(error)) => tracing::error!(%error, "retention purge failed"),
            }
        }
    })
}
