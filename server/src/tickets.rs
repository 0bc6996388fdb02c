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
    /// Since when the person has waited for an agent: the opening, or their first message after
    /// an agent's reply (what the queue is sorted by).
    pub waiting_since: String,
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

/// What sending an agent's reply did.
#[derive(Debug)]
pub enum ReplyOutcome {
    Stored {
        message: TicketMessage,
        /// The person wrote after what the agent's page showed: the ticket still waits.
        person_wrote_meanwhile: bool,
    },
    /// The same form was sent before: that reply stands, nothing more is stored.
    Repeated,
    /// The ticket is closed; nothing is stored.
    Closed,
}

/// What closing a ticket did.
#[derive(Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    AlreadyClosed,
    /// The person wrote after what the agent's page showed; the ticket stays open.
    PersonWroteMeanwhile,
}

/// A ticket's queue is the one an agent moved it to (`tickets.queue_id`), else its asset's.
const TICKET_COLUMNS: &str = "t.id, t.conversation_id, t.asset_id, a.name AS asset_name, COALESCE(t.queue_id, a.queue_id) AS queue_id, s.timezone, t.code, t.role, t.language, t.confidence, t.reason, t.status, t.created_at, COALESCE(t.waiting_since, t.created_at) AS waiting_since, t.updated_at, t.contact, t.closed_at, t.closed_by, t.assigned_to";

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
        const IN_SCOPE: &str =
            "(? IS NULL OR COALESCE(t.queue_id, a.queue_id) IN (SELECT value FROM json_each(?)))";
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

    /// Stores an agent's reply (an untaken ticket becomes the author's) and marks the ticket
    /// answered, unless the person wrote after the turn the agent's page showed last (`seen`;
    /// `None`: not checked): then their message is still unanswered, and the ticket waits for an
    /// agent from that message on. Nothing is stored when the ticket is closed (even a moment ago,
    /// after the page was drawn) or when the same form (`nonce`) was sent before.
    pub async fn add_ticket_reply(
        &self,
        ticket: i64,
        author: &str,
        body: &str,
        seen: Option<i64>,
        nonce: Option<&str>,
    ) -> Result<ReplyOutcome> {
        let at = now();
        let mut tx = self.pool().begin().await?;
        // The write comes first, so the transaction holds the store's write lock from its first
        // statement: two sendings of one form at once queue up instead of one failing on a read
        // made before the other's write.
        let stored: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ticket_messages (ticket_id, at, author, body, form_nonce)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM tickets WHERE id = ?1 AND status != 'closed')
             ON CONFLICT (ticket_id, form_nonce) WHERE form_nonce IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(ticket)
        .bind(&at)
        .bind(author)
        .bind(body)
        .bind(nonce)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = stored else {
            // The same form was sent before (that reply stands), or the ticket is closed.
            let sent_before: Option<i64> = match nonce {
                Some(nonce) => {
                    sqlx::query_scalar(
                        "SELECT id FROM ticket_messages WHERE ticket_id = ? AND form_nonce = ?",
                    )
                    .bind(ticket)
                    .bind(nonce)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => None,
            };
            return Ok(if sent_before.is_some() {
                ReplyOutcome::Repeated
            } else {
                ReplyOutcome::Closed
            });
        };
        // The first of the person's turns the agent had not seen, if any.
        let unseen: Option<String> = match seen {
            Some(seen) => {
                sqlx::query_scalar(
                    "SELECT MIN(c.at) FROM chat_turns c JOIN tickets t ON t.conversation_id = c.conversation_id
                     WHERE t.id = ? AND c.id > ?",
                )
                .bind(ticket)
                .bind(seen)
                .fetch_one(&mut *tx)
                .await?
            }
            None => None,
        };
        sqlx::query(
            "UPDATE tickets SET updated_at = ?1, assigned_to = COALESCE(assigned_to, ?2),
                 status = CASE WHEN ?3 IS NULL THEN 'answered' WHEN status = 'open' THEN 'open' ELSE 'waiting' END,
                 waiting_since = CASE WHEN ?3 IS NULL OR status = 'open' THEN waiting_since ELSE ?3 END
             WHERE id = ?4",
        )
        .bind(&at)
        .bind(author)
        .bind(&unseen)
        .bind(ticket)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReplyOutcome::Stored {
            message: TicketMessage {
                id,
                ticket_id: ticket,
                at,
                author: author.to_string(),
                body: body.to_string(),
            },
            person_wrote_meanwhile: unseen.is_some(),
        })
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
        // Taking or letting go is activity: the idle close counts from it.
        let done = sqlx::query(
            "UPDATE tickets SET assigned_to = ?, updated_at = ?
             WHERE id = ? AND status != 'closed' AND assigned_to IS ?",
        )
        .bind(to)
        .bind(now())
        .bind(ticket)
        .bind(expected)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Moves a ticket to support queue `to`, only if it is not closed and is still in queue `from`
    /// (the queue the agent's page showed: a colleague who moved it meanwhile is not overridden).
    /// Nobody has it then: the new queue's agents take it. False when either no longer holds.
    pub async fn move_ticket(&self, ticket: i64, from: &str, to: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE tickets SET queue_id = ?1, assigned_to = NULL, updated_at = ?2
             WHERE id = ?3 AND status != 'closed'
               AND COALESCE(queue_id, (SELECT a.queue_id FROM assets a WHERE a.id = tickets.asset_id)) = ?4",
        )
        .bind(to)
        .bind(now())
        .bind(ticket)
        .bind(from)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes a ticket, unless the person wrote after the turn the agent's page showed last
    /// (`seen`; `None`: not checked): a message nobody read is not closed away.
    pub async fn close_ticket(
        &self,
        ticket: i64,
        by: &str,
        seen: Option<i64>,
    ) -> Result<CloseOutcome> {
        let at = now();
        let done = sqlx::query(
            "UPDATE tickets SET status = 'closed', closed_at = ?1, closed_by = ?2, updated_at = ?1
             WHERE id = ?3 AND status != 'closed'
               AND (?4 IS NULL OR NOT EXISTS (SELECT 1 FROM chat_turns c
                    WHERE c.conversation_id = tickets.conversation_id AND c.id > ?4))",
        )
        .bind(&at)
        .bind(by)
        .bind(ticket)
        .bind(seen)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 1 {
            return Ok(CloseOutcome::Closed);
        }
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM tickets WHERE id = ?")
            .bind(ticket)
            .fetch_optional(self.pool())
            .await?;
        Ok(match status.as_deref() {
            Some("closed") | None => CloseOutcome::AlreadyClosed,
            Some(_) => CloseOutcome::PersonWroteMeanwhile,
        })
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
    /// an agent again, and the console lists it by how long it has waited. False when the ticket
    /// closed meanwhile (the message is then not news on it).
    pub async fn touch_ticket(&self, ticket: i64) -> Result<bool> {
        // Waiting since now only when an agent had answered: a person writing again on a ticket
        // nobody has picked up keeps their place in the queue.
        let at = now();
        let done = sqlx::query(
            "UPDATE tickets SET updated_at = ?,
             waiting_since = CASE status WHEN 'answered' THEN ? ELSE waiting_since END,
             status = CASE status WHEN 'answered' THEN 'waiting' ELSE status END
             WHERE id = ? AND status != 'closed'",
        )
        .bind(&at)
        .bind(&at)
        .bind(ticket)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
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
