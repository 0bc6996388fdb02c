//! Agents' notes on a ticket: written on its console page for the other agents (what was tried,
//! what the person said on the phone), never shown to the person. They live in a table of their own
//! (migration 0029), which nothing the person is sent reads: not the replies, not their chat's
//! history or live stream, not the webhooks.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::{AppError, AppState};

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;
/// The same note from the same agent within this long is the form sent again, not a new note.
const SAME_NOTE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// One note as the ticket page shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketNote {
    pub id: i64,
    pub at: String,
    pub author: String,
    pub body: String,
}

impl crate::store::Store {
    /// The notes on ticket `ticket`, oldest first.
    pub async fn ticket_notes(&self, ticket: i64) -> crate::error::Result<Vec<TicketNote>> {
        Ok(sqlx::query_as(
            "SELECT id, at, author, body FROM ticket_notes WHERE ticket_id = ? ORDER BY id",
        )
        .bind(ticket)
        .fetch_all(self.pool())
        .await?)
    }

    /// Adds a note, unless the same agent added the very same note to the ticket in the last
    /// `SAME_NOTE_WITHIN` (the form sent again: a double tap, or back and resend); its id when
    /// it was added.
    pub(crate) async fn add_ticket_note(
        &self,
        ticket: i64,
        author: &str,
        body: &str,
    ) -> crate::error::Result<Option<i64>> {
        let now = chrono::Utc::now();
        let since = crate::store::stored_time(
            now - chrono::Duration::from_std(SAME_NOTE_WITHIN).expect("fits"),
        );
        let added: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ticket_notes (ticket_id, at, author, body)
             SELECT ?1, ?2, ?3, ?4
             WHERE NOT EXISTS (SELECT 1 FROM ticket_notes
                               WHERE ticket_id = ?1 AND author = ?3 AND body = ?4 AND at >= ?5)
             RETURNING id",
        )
        .bind(ticket)
        .bind(crate::store::stored_time(now))
        .bind(author)
        .bind(body)
        .bind(since)
        .fetch_optional(self.pool())
        .await?;
        // An agent working a ticket by phone writes notes and no replies: that is activity, and the
        // ticket must not be closed as idle under them.
        sqlx::query("UPDATE tickets SET updated_at = ? WHERE id = ? AND status != 'closed'")
            .bind(crate::store::stored_time(now))
            .bind(ticket)
            .execute(self.pool())
            .await?;
        Ok(added)
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct NoteForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub body: String,
}

/// `POST /support/tickets/{id}/note`: adds a note (also on a closed ticket: what happened after).
/// A note that is empty or too long is shown back in its box with why.
pub async fn add(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<NoteForm>,
) -> Result<Response, AppError> {
    let (me, ticket) = match crate::console::ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok(found) => found,
        Err(refused) => return Ok(refused),
    };
    let body = form.body.replace("\r\n", "\n");
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_NOTE_CHARS {
        let message = format!(
            "A note is 1 to {MAX_NOTE_CHARS} characters; this one has {}.",
            body.chars().count()
        );
        return crate::console::ticket_page_with_note(
            &app,
            &me,
            ticket.id,
            StatusCode::UNPROCESSABLE_ENTITY,
            &message,
            body,
        )
        .await;
    }
    if let Some(note) = app
        .store
        .add_ticket_note(ticket.id, &me.username, body)
        .await?
    {
        // Colleagues with the ticket open see it at once; never the person, nor the webhook.
        crate::support::tell_consoles(
            &app,
            crate::support::SupportEvent::of("ticket.note", &ticket)
                .with_text(body)
                .with_note(note)
                .by(me.username.as_str()),
        );
    }
    Ok(Redirect::to(&format!("/support/tickets/{}#notes", ticket.id)).into_response())
}
