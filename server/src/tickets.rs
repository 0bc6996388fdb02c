//! Tickets in the store: what the support console lists and shows (the ticket, its conversation's
//! turns with the citations the person saw, the agents' replies), and the state changes agents make.

use serde::Serialize;

use crate::error::Result;
use crate::store::Store;

/// A ticket with what the console shows beside it (its asset's name and queue).
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TicketRecord {
    pub id: i64,
    pub conversation_id: String,
    pub asset_id: String,
    pub asset_name: String,
    pub queue_id: String,
    /// The asset's site time zone: agents read times as the site lives them.
    pub timezone: String,
    pub code: Option<String>,
    pub role: String,
    pub language: String,
    pub confidence: f64,
    pub reason: String,
    /// `open` (nobody answered yet), `answered` (an agent replied), `waiting` (the person wrote
    /// after an agent's reply), `closed`.
    pub status: String,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub contact: Option<String>,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    /// The agent who took the ticket (username), if one has.
    pub assigned_to: Option<String>,
}

/// One turn of the conversation as the person saw it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TurnRecord {
    pub id: i64,
    pub at: String,
    pub question: String,
    pub answer: String,
    /// The citations shown, as the chat API serialised them.
    pub citations: String,
    pub confidence: f64,
    pub escalated: bool,
    pub feedback: Option<i64>,
}

/// An agent's reply on a ticket.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TicketMessage {
    pub id: i64,
    pub ticket_id: i64,
    pub at: String,
    pub author: String,
    pub body: String,
}

const TICKET_COLUMNS: &str = "t.id, t.conversation_id, t.asset_id, a.name AS asset_name, a.queue_id, s.timezone, t.code, t.role, t.language, t.confidence, t.reason, t.status, t.created_at, t.updated_at, t.contact, t.closed_at, t.closed_by, t.assigned_to";

impl Store {
    pub async fn ticket(&self, id: i64) -> Result<Option<TicketRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t JOIN assets a ON a.id = t.asset_id JOIN sites s ON s.id = a.site_id WHERE t.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The tickets of the queues `scope` covers: those not closed, those waiting for an agent first
    /// (open or `waiting`), longest-waiting first (`waiting_since`: the opening, or the person's
    /// first message after an agent's reply), then the answered ones, then up to `closed_limit`
    /// closed ones, newest first.
    pub async fn tickets_for_console(
        &self,
        closed_limit: i64,
        scope: &crate::agent_queues::QueueScope,
    ) -> Result<Vec<TicketRecord>> {
        // NULL: every queue; else a JSON array of queue ids.
        let queues = match scope {
            crate::agent_queues::QueueScope::Every => None,
            crate::agent_queues::QueueScope::Only(ids) => {
                Some(serde_json::to_string(ids).expect("strings serialise"))
            }
        };
        const IN_SCOPE: &str = "(? IS NULL OR a.queue_id IN (SELECT value FROM json_each(?)))";
        let mut open: Vec<TicketRecord> = sqlx::query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t JOIN assets a ON a.id = t.asset_id JOIN sites s ON s.id = a.site_id
             WHERE t.status != 'closed' AND {IN_SCOPE}
             ORDER BY t.status = 'answered', COALESCE(t.waiting_since, t.created_at), t.id"
        ))
        .bind(&queues)
        .bind(&queues)
        .fetch_all(self.pool())
        .await?;
        // The limit counts the scope's closed tickets only: a quiet queue's are not pushed out by
        // a busy one's.
        let closed: Vec<TicketRecord> = sqlx::query_as(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets t JOIN assets a ON a.id = t.asset_id JOIN sites s ON s.id = a.site_id
             WHERE t.status = 'closed' AND {IN_SCOPE} ORDER BY t.id DESC LIMIT ?"
        ))
        .bind(&queues)
        .bind(&queues)
        .bind(closed_limit)
        .fetch_all(self.pool())
        .await?;
        open.extend(closed);
        Ok(open)
    }

    /// Every turn of a conversation, oldest first.
    pub async fn transcript(&self, conversation: &str) -> Result<Vec<TurnRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, at, question, answer, citations, confidence, escalated, feedback
             FROM chat_turns WHERE conversation_id = ? ORDER BY id",
        )
        .bind(conversation)
        .fetch_all(self.pool())
        .await?)
    }

    /// Agents' replies on any ticket of a conversation after message `after`, oldest first: what a
    /// person's chat has not shown yet.
    pub async fn replies_to_conversation(
        &self,
        conversation: &str,
        after: i64,
    ) -> Result<Vec<TicketMessage>> {
        Ok(sqlx::query_as(
            "SELECT m.id, m.ticket_id, m.at, m.author, m.body FROM ticket_messages m
             JOIN tickets t ON t.id = m.ticket_id
             WHERE t.conversation_id = ? AND m.id > ? ORDER BY m.id",
        )
        .bind(conversation)
        .bind(after)
        .fetch_all(self.pool())
        .await?)
    }

    /// Stores an agent's reply and marks the ticket answered (an untaken ticket becomes the
    /// author's); `None` (nothing stored) when the ticket is closed, even if it closed a moment ago,
    /// after the agent's page was drawn.
    pub async fn add_ticket_reply(
        &self,
        ticket: i64,
        author: &str,
        body: &str,
    ) -> Result<Option<TicketMessage>> {
        let at = now();
        let mut tx = self.pool().begin().await?;
        let marked = sqlx::query(
            "UPDATE tickets SET status = 'answered', updated_at = ?, assigned_to = COALESCE(assigned_to, ?)
             WHERE id = ? AND status != 'closed'",
        )
        .bind(&at)
        .bind(author)
        .bind(ticket)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let done = sqlx::query(
            "INSERT INTO ticket_messages (ticket_id, at, author, body) VALUES (?, ?, ?, ?)",
        )
        .bind(ticket)
        .bind(&at)
        .bind(author)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(TicketMessage {
            id: done.last_insert_rowid(),
            ticket_id: ticket,
            at,
            author: author.to_string(),
            body: body.to_string(),
        }))
    }

    /// Gives a ticket to `to` (a username; `None` leaves it to nobody), only if it is not closed and
    /// `expected` still has it: an agent acts on the page they saw, so a colleague who took the
    /// ticket meanwhile is not overridden unknowingly. False when either no longer holds.
    pub async fn assign_ticket(
        &self,
        ticket: i64,
        to: Option<&str>,
        expected: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tickets SET assigned_to = ?
             WHERE id = ? AND status != 'closed' AND assigned_to IS ?",
        )
        .bind(to)
        .bind(ticket)
        .bind(expected)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes a ticket; false when it was closed already.
    pub async fn close_ticket(&self, ticket: i64, by: &str) -> Result<bool> {
        let at = now();
        let done = sqlx::query(
            "UPDATE tickets SET status = 'closed', closed_at = ?, closed_by = ?, updated_at = ?
             WHERE id = ? AND status != 'closed'",
        )
        .bind(&at)
        .bind(by)
        .bind(&at)
        .bind(ticket)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Opens a closed ticket again for `by` (an agent who closed it too soon), who then has it.
    /// False when it is not closed, or its conversation has a newer live ticket (one live ticket
    /// per conversation).
    pub async fn reopen_ticket(&self, ticket: i64, by: &str) -> Result<bool> {
        let at = now();
        let done = sqlx::query(
            "UPDATE tickets SET status = 'open', closed_at = NULL, closed_by = NULL, assigned_to = ?1,
                 updated_at = ?2, waiting_since = ?2
             WHERE id = ?3 AND status = 'closed'
               AND NOT EXISTS (SELECT 1 FROM tickets live WHERE live.status != 'closed'
                   AND live.conversation_id = (SELECT conversation_id FROM tickets WHERE id = ?3))",
        )
        .bind(by)
        .bind(&at)
        .bind(ticket)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a ticket as having news from the person (a new message): an answered one is waiting for
    /// an agent again, and the console lists it by how long it has waited.
    pub async fn touch_ticket(&self, ticket: i64) -> Result<()> {
        // Waiting since now only when an agent had answered: a person writing again on a ticket
        // nobody has picked up keeps their place in the queue.
        let at = now();
        sqlx::query(
            "UPDATE tickets SET updated_at = ?,
             waiting_since = CASE status WHEN 'answered' THEN ? ELSE waiting_since END,
             status = CASE status WHEN 'answered' THEN 'waiting' ELSE status END
             WHERE id = ?",
        )
        .bind(&at)
        .bind(&at)
        .bind(ticket)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// How to reach the person, when they chose to leave it on their open ticket.
    pub async fn set_ticket_contact(&self, ticket: i64, contact: &str) -> Result<()> {
        sqlx::query("UPDATE tickets SET contact = ?, updated_at = ? WHERE id = ?")
            .bind(contact)
            .bind(now())
            .bind(ticket)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
