//! Retention limits: what people wrote (chat turns, tickets, agents' replies, webhook payloads) is
//! deleted once its conversation has been quiet for `Retention::chat`; a ticket nobody touched for
//! `ticket_idle` is closed (so its conversation can age out); a contact a person left is cleared
//! `contact_after_close` after their ticket closed; a webhook delivery its receiver never took goes
//! with the chat limit; scan events (no personal data) go after `scan_events`, the audit log after
//! `audit`; a discharge packet (the patient's name, the hash of their date of birth and PIN, their
//! documents) is deleted as a clinician's deletion is once the day `packets` after the UTC day it
//! was made on (or a clinician last kept it longer on) has ended in every time zone (the date is
//! printed on the PIN slip and shown on the patient's page); expired staff
//! and patient sessions, and failed sign-in counts that no longer count, go at once. Runs at start
//! and then hourly.

use std::time::Duration;

use crate::error::Result;
use crate::store::Store;
use crate::support::{publish, SupportEvent};
use crate::{AppError, AppState};

/// How often the purge runs.
const EVERY: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Rows deleted per statement by the purge's batched deletes.
const PURGE_BATCH: i64 = 5_000;
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
    /// A discharge packet opens through the day this long after the UTC day it was made or a
    /// clinician last kept it longer (whole days; see `packet_kept_until`), in every time zone,
    /// then is deleted with everything about its patient.
    pub packets: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            chat: DAY * 90,
            contact_after_close: DAY * 14,
            scan_events: DAY * 395,
            ticket_idle: DAY * 30,
            audit: DAY * 395,
            packets: DAY * 90,
        }
    }
}

/// What one purge removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub conversations: u64,
    /// Tickets closed for being idle past `ticket_idle` (their ids: the close is announced).
    pub tickets_closed: Vec<i64>,
    /// Contacts cleared and agents' notes deleted on tickets closed past `contact_after_close`.
    pub contacts_cleared: u64,
    pub webhook_deliveries: u64,
    pub scan_events: u64,
    pub audit_entries: u64,
    pub sessions: u64,
    /// Failed sign-in counts whose window and lockout are both over.
    pub signin_attempts: u64,
    /// Discharge packets past `Retention::packets`, deleted with their patients' data.
    pub packets: u64,
}

fn cutoff(now: chrono::DateTime<chrono::Utc>, age: Duration) -> String {
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn whole_days(age: Duration) -> i64 {
    i64::try_from(age.as_secs() / DAY.as_secs()).unwrap_or(i64::MAX)
}

/// The last day a packet whose retention count started at `start` (RFC 3339; see
/// `PacketRecord::retention_start`) is kept: that UTC day plus `policy.packets`. It opens through
/// the whole of that day in every time zone (see `expire_packets`). Shown to clinicians and on the
/// patient's PIN slip and page. `None` for a time that does not parse (none is stored so).
pub fn packet_kept_until(start: &str, policy: Retention) -> Option<chrono::NaiveDate> {
    let start = chrono::DateTime::parse_from_rfc3339(start).ok()?;
    start
        .with_timezone(&chrono::Utc)
        .date_naive()
        .checked_add_days(chrono::Days::new(whole_days(policy.packets) as u64))
}

/// A packet whose retention count started (`PacketRecord::retention_start`) before the time
/// returned (stored form) is past its limit at `now`: its last day has ended in every time zone.
pub fn packets_past_limit_before(policy: Retention, now: chrono::DateTime<chrono::Utc>) -> String {
    // A packet's last day is over everywhere once it is over at UTC-12, the last time zone: 12:00
    // UTC the day after. So a packet whose count started on a day before `packets` days before the
    // date at UTC-12 is past its last day.
    let first_kept_day = (now - chrono::Duration::hours(12))
        .date_naive()
        .checked_sub_days(chrono::Days::new(whole_days(policy.packets) as u64))
        .unwrap_or(chrono::NaiveDate::MIN);
    crate::store::stored_time(
        first_kept_day
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc(),
    )
}

/// Deletes every packet whose last day (`packet_kept_until`) has ended in every time zone by `now`
/// (the patient may read the date in theirs), as a clinician's deletion does (audited as
/// `packet.expired` by "retention"), and returns how many. The index still holds their documents
/// until it is rebuilt: `purge_and_announce` starts that.
async fn expire_packets(
    store: &Store,
    policy: Retention,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let cutoff = packets_past_limit_before(policy, now);
    let detail = format!(
        "patient data deleted when its last day (the day it was made or last kept longer + {} days) ended (retention limit)",
        whole_days(policy.packets)
    );
    let mut deleted = 0;
    for packet in store.packets_kept_from_before(&cutoff).await? {
        if store
            .remove_packet(
                &packet,
                "retention",
                "packet.expired",
                &detail,
                Some(&cutoff),
            )
            .await?
        {
            deleted += 1;
        }
    }
    Ok(deleted)
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

/// Tables whose rows go by age alone, each with an `id` in time order and an `at`.
#[derive(Debug, Clone, Copy)]
enum OldRows {
    ScanEvents,
    /// Who opened which patient packet, sign-ins.
    AuditLog,
    /// Who published, rolled back or marked what (editors).
    ContentAudit,
}

/// Deletes the rows of `table` from before `cutoff` (stored form), `PURGE_BATCH` at a time, each
/// batch its own short write: a year of rows deleted in one statement would hold the store's write
/// lock for seconds, and every writer meanwhile (a chat turn, a PIN try) would wait out its busy
/// timeout. Oldest first, by id, which follows time: the scan stops at the first batch's end.
async fn delete_older_in_batches(store: &Store, table: OldRows, cutoff: &str) -> Result<u64> {
    let sql = match table {
        OldRows::ScanEvents => {
            "DELETE FROM scan_events WHERE id IN (SELECT id FROM scan_events WHERE at < ? ORDER BY id LIMIT ?)"
        }
        OldRows::AuditLog => {
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? ORDER BY id LIMIT ?)"
        }
        OldRows::ContentAudit => {
            "DELETE FROM content_audit WHERE id IN (SELECT id FROM content_audit WHERE at < ? ORDER BY id LIMIT ?)"
        }
    };
    let mut total = 0;
    loop {
        let deleted = sqlx::query(sql)
            .bind(cutoff)
            .bind(PURGE_BATCH)
            .execute(store.pool())
            .await?
            .rows_affected();
        total += deleted;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
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
        // Patients' data before the bulk deletes below: one of those failing (a busy store) must
        // not keep a packet past its limit purge after purge.
        packets: expire_packets(store, policy, now).await?,
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
            "DELETE FROM ticket_notes WHERE ticket_id IN
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

    let contact_cutoff = cutoff(now, policy.contact_after_close);
    purged.contacts_cleared = sqlx::query(
        "UPDATE tickets SET contact = NULL
         WHERE contact IS NOT NULL AND status = 'closed' AND closed_at < ?",
    )
    .bind(&contact_cutoff)
    .execute(store.pool())
    .await?
    .rows_affected();
    // Agents' notes may hold what a contact does (a number, what was said on the phone): they go
    // when it does, however recent the note (one written after the close is about the same call).
    purged.contacts_cleared += sqlx::query(
        "DELETE FROM ticket_notes WHERE ticket_id IN
           (SELECT id FROM tickets WHERE status = 'closed' AND closed_at < ?)",
    )
    .bind(&contact_cutoff)
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

    purged.scan_events =
        delete_older_in_batches(store, OldRows::ScanEvents, &cutoff(now, policy.scan_events))
            .await?;
    let audit_cutoff = cutoff(now, policy.audit);
    purged.audit_entries = delete_older_in_batches(store, OldRows::AuditLog, &audit_cutoff).await?
        + delete_older_in_batches(store, OldRows::ContentAudit, &audit_cutoff).await?;

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
    purged.signin_attempts = crate::signin_limits::purge_expired(store, now).await?
        + crate::signin_devices::purge_expired(store, now).await?;
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
    // Tickets held by an agent with no live session (gone home without signing out) go back to
    // their queues, announced as a let-go: otherwise they would wait for someone who is not there.
    // A failure here is logged: it must not keep the purges below from running.
    if let Err(AppError(error)) = release_absent_agents_tickets(app, now).await {
        tracing::error!(%error, "letting go of the tickets of agents no longer signed in failed");
    }
    let purged = purge(&app.store, policy, now).await;
    // Expired packets' documents leave the index, its older generations and the embedding cache.
    // Asked for on every run, not only when this one deleted a packet: a purge that failed after
    // deleting some, or a rebuild that failed, is caught up by the next run (it costs nothing when
    // the index holds exactly the store's packets).
    crate::patient_chat::reindex_in_background(app);
    let mut purged = purged?;
    purged.tickets_closed = closed;
    Ok(purged)
}

/// Lets go of the tickets held by agents with no live session at `now`.
async fn release_absent_agents_tickets(
    app: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<(), AppError> {
    let held: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT assigned_to FROM tickets WHERE status != 'closed' AND assigned_to IS NOT NULL",
    )
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    for agent in held {
        if !crate::auth::has_live_session(&app.store, &agent, now).await? {
            let released = crate::account::release_held(
                app,
                "retention (signed out)",
                &agent,
                &crate::account::no_queue(),
            )
            .await?;
            if released > 0 {
                tracing::info!(agent = %agent, released, "let go of the tickets of an agent who is no longer signed in");
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packets_last_day_counts_whole_days_from_the_utc_day_it_was_made() {
        let policy = Retention::default();
        let day = |s: &str| s.parse::<chrono::NaiveDate>().unwrap();
        assert_eq!(
            packet_kept_until("2026-01-01T23:59:59.999Z", policy),
            Some(day("2026-04-01"))
        );
        // Made late on 31 December in New York is 1 January in UTC.
        assert_eq!(
            packet_kept_until("2025-12-31T20:00:00-05:00", policy),
            Some(day("2026-04-01"))
        );
        let week = Retention {
            packets: DAY * 7,
            ..policy
        };
        assert_eq!(
            packet_kept_until("2026-02-25T08:00:00.000Z", week),
            Some(day("2026-03-04"))
        );
        assert_eq!(packet_kept_until("yesterday", policy), None);
    }
}
