//! The support console (`/support`, agents and admins): the ticket queue, a ticket with its
//! transcript and the manual sections the assistant cited, replies that reach the person's chat
//! live, and closing. Pages work without JavaScript; `static/support.js` keeps them live.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::account::{no_store, require_role};
use crate::agent_queues::QueueScope;
use crate::auth::{self, SignedIn};
use crate::chat::CitationView;
use crate::roles::Role;
use crate::support::{publish, SupportEvent};
use crate::tickets::{CloseOutcome, ReplyOutcome, TicketRecord};
use crate::{AppError, AppState};

/// Longest agent reply, in characters.
pub const MAX_REPLY_CHARS: usize = 4000;
/// Closed tickets the queue page still lists.
const CLOSED_SHOWN: i64 = 20;

async fn require_agent(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Result<SignedIn, Response>, AppError> {
    require_role(
        app,
        headers,
        &[Role::Agent, Role::Admin],
        "The support console is for support agents.",
    )
    .await
}

/// The ticket, if it exists and is in a queue `me` works (`agent_queues`): another team's ticket
/// is answered as one that does not exist.
async fn visible_ticket(
    app: &AppState,
    me: &SignedIn,
    id: i64,
) -> Result<Option<TicketRecord>, AppError> {
    let Some(ticket) = app.store.ticket(id).await? else {
        return Ok(None);
    };
    let scope = app.store.queue_scope(me).await?;
    Ok(scope.sees(&ticket.queue_id).then_some(ticket))
}

/// A ticket as a row of the queue.
pub struct TicketRow {
    pub id: i64,
    pub status: String,
    /// The agent who has it: "you", a colleague's username, or empty for nobody.
    pub agent: String,
    pub asset_name: String,
    pub queue: String,
    pub reason: String,
    pub confidence: String,
    pub created: String,
    /// Since when the person has waited for an agent (RFC 3339), for tickets waiting for one
    /// (open, or written to again); empty for answered and closed ones.
    pub waiting_since: String,
    /// How long that is, as the page was drawn ("12 min"); the page's script keeps it current.
    pub waited: String,
}

/// How long someone has waited, as an agent reads it at a glance.
pub(crate) fn waited_for(since: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(since) = chrono::DateTime::parse_from_rfc3339(since) else {
        return String::new();
    };
    let minutes = (now - since.with_timezone(&chrono::Utc))
        .num_minutes()
        .max(0);
    match minutes {
        0 => "under a minute".to_string(),
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} days", m / (24 * 60)),
    }
}

/// One entry of a ticket's transcript.
pub struct Entry {
    /// `person`, `assistant` or `agent`.
    pub who: &'static str,
    pub label: String,
    pub at: String,
    pub text: String,
    pub citations: Vec<CitationView>,
}

#[derive(Template)]
#[template(path = "support.html")]
pub struct QueuePage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub tickets: Vec<TicketRow>,
    /// Which queues the agent works, when not every queue.
    pub scope_note: String,
    /// The live stream's position when the page was read: its console resumes from there.
    pub live_from: String,
}

#[derive(Template)]
#[template(path = "support_ticket.html")]
pub struct TicketPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub ticket: TicketRecord,
    pub created: String,
    pub confidence: String,
    pub entries: Vec<Entry>,
    pub message: String,
    /// A reply that was not sent (too long, or the ticket closed meanwhile), shown back so the
    /// agent's text is not lost.
    pub draft: String,
    /// The agent who has the ticket (empty: nobody); a take form sends it back as `expected`.
    pub assigned: String,
    /// Whether that is the agent viewing the page.
    pub mine: bool,
    /// The newest turn of the conversation this page shows: the reply and close forms send it back,
    /// so what the person wrote after it is not answered or closed away unread.
    pub seen: i64,
    /// Random per drawing of the reply form: the same form sent twice stores one reply.
    pub nonce: String,
    /// The newest reply the page shows (0: none): a live event for it is not shown twice.
    pub replied: i64,
    /// The live stream's position when the page was read: its console resumes from there.
    pub live_from: String,
    /// Agents' notes on the ticket (never shown to the person), oldest first.
    pub notes: Vec<crate::ticket_notes::TicketNote>,
    /// Why a note was not added, and its text kept for the box.
    pub note_message: String,
    pub note_draft: String,
    /// The other support queues it can be moved to, as (id, name).
    pub move_to: Vec<(String, String)>,
    /// Whether the person's chat is open now (when the page was drawn).
    pub person_listening: bool,
}

/// An instant in the asset's site time zone, as an agent reads it.
pub(crate) fn local_time(at: &str, timezone: &str) -> String {
    let (Ok(at), Ok(tz)) = (
        chrono::DateTime::parse_from_rfc3339(at),
        timezone.parse::<chrono_tz::Tz>(),
    ) else {
        return at.to_string();
    };
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

fn percent(confidence: f64) -> String {
    format!("{:.0}%", confidence * 100.0)
}

fn page(html: String) -> Response {
    no_store(Html(html).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct FindQuery {
    #[serde(default)]
    pub ticket: String,
}

/// `GET /support/find?ticket=N`: the ticket a person names on the phone ("ticket 12", "#12"),
/// opened from the queue page; a number that is not one goes back to the queue saying so.
pub async fn find(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<FindQuery>,
) -> Result<Response, AppError> {
    if let Err(refused) = require_agent(&app, &headers).await? {
        return Ok(refused);
    }
    let wanted = query.ticket.trim().trim_start_matches('#').trim();
    match wanted.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response()),
        _ => {
            let body = crate::views::MessagePage {
                lang: "en".to_string(),
                heading: "Not a ticket number".to_string(),
                message: format!(
                    "{wanted:?} is not a ticket number: type the number the person was given, such as 12."
                ),
                back: "/support".to_string(),
            }
            .render()?;
            Ok(no_store(
                (StatusCode::BAD_REQUEST, Html(body)).into_response(),
            ))
        }
    }
}

/// `GET /support`: tickets not closed, oldest first, then the last closed ones.
pub async fn queue(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let me = match require_agent(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    // Before the store is read: an event in between is then replayed, not missed.
    let live_from = app.support.position();
    let scope = app.store.queue_scope(&me).await?;
    let scope_note = match &scope {
        QueueScope::Every => String::new(),
        QueueScope::Only(queues) if queues.is_empty() => "None of the queues you were given is \
            listed any more: you see no tickets until an administrator gives you a queue."
            .to_string(),
        QueueScope::Only(queues) => {
            let names = app.store.queue_names().await?;
            let name_of = |id: &String| {
                names
                    .iter()
                    .find(|(known, _)| known == id)
                    .map_or(id.clone(), |(_, name)| name.clone())
            };
            format!(
                "You work {}.",
                queues.iter().map(name_of).collect::<Vec<_>>().join(", ")
            )
        }
    };
    let tickets = app
        .store
        .tickets_for_console(CLOSED_SHOWN, &scope)
        .await?
        .into_iter()
        .map(|t| {
            let waiting = matches!(t.status.as_str(), "open" | "waiting");
            TicketRow {
                waiting_since: if waiting {
                    t.waiting_since.clone()
                } else {
                    String::new()
                },
                waited: if waiting {
                    waited_for(&t.waiting_since, app.now())
                } else {
                    String::new()
                },
                agent: match t.assigned_to {
                    Some(who) if who == me.username => "you".to_string(),
                    Some(who) => who,
                    None => String::new(),
                },
                id: t.id,
                created: local_time(&t.created_at, &t.timezone),
                status: t.status,
                asset_name: t.asset_name,
                queue: t.queue_id,
                reason: t.reason,
                confidence: percent(t.confidence),
            }
        })
        .collect();
    Ok(page(
        QueuePage {
            lang: "en".to_string(),
            csrf: me.csrf.clone(),
            me: crate::views::Me::of(&me),
            tickets,
            scope_note,
            live_from,
        }
        .render()?,
    ))
}

/// `GET /support/tickets/{id}`.
pub async fn ticket(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let me = match require_agent(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    ticket_page(&app, &me, id, StatusCode::OK, "", "").await
}

async fn ticket_page(
    app: &AppState,
    me: &SignedIn,
    id: i64,
    status: StatusCode,
    message: &str,
    draft: &str,
) -> Result<Response, AppError> {
    ticket_page_drawn(app, me, id, status, (message, draft), ("", "")).await
}

/// The ticket page with a note that was not added (`message` says why), kept in its box.
pub(crate) async fn ticket_page_with_note(
    app: &AppState,
    me: &SignedIn,
    id: i64,
    status: StatusCode,
    message: &str,
    draft: &str,
) -> Result<Response, AppError> {
    ticket_page_drawn(app, me, id, status, ("", ""), (message, draft)).await
}

/// The ticket page, with (message, draft) for the reply form and for the note form.
async fn ticket_page_drawn(
    app: &AppState,
    me: &SignedIn,
    id: i64,
    status: StatusCode,
    (message, draft): (&str, &str),
    (note_message, note_draft): (&str, &str),
) -> Result<Response, AppError> {
    // Before the store is read: an event in between is then replayed, not missed.
    let live_from = app.support.position();
    let Some(ticket) = visible_ticket(app, me, id).await? else {
        return not_found(id);
    };
    let mut entries = Vec::new();
    let mut replied = 0;
    let mut seen = 0;
    for turn in app.store.transcript(&ticket.conversation_id).await? {
        seen = seen.max(turn.id);
        entries.push(Entry {
            who: "person",
            label: "Person".to_string(),
            at: turn.at.clone(),
            text: turn.question,
            citations: Vec::new(),
        });
        // What the person was shown, with its sources; the answer text carries its [n] markers.
        let citations: Vec<CitationView> =
            serde_json::from_str(&turn.citations).unwrap_or_default();
        // A message sent to the agent who had the conversation was not put to the assistant.
        if turn.answer.is_empty() {
            continue;
        }
        entries.push(Entry {
            who: "assistant",
            label: format!("Assistant, confidence {}", percent(turn.confidence)),
            at: turn.at,
            text: turn.answer,
            citations,
        });
    }
    // Every reply the person was sent in this conversation, also on its earlier tickets: the person
    // saw them all, and the agent answering now should too.
    for reply in app
        .store
        .replies_to_conversation(&ticket.conversation_id, 0)
        .await?
    {
        replied = replied.max(reply.id);
        entries.push(Entry {
            who: "agent",
            label: if reply.ticket_id == id {
                format!("Support ({})", reply.author)
            } else {
                format!("Support ({}), on ticket {}", reply.author, reply.ticket_id)
            },
            at: reply.at,
            text: reply.body,
            citations: Vec::new(),
        });
    }
    // Timestamps share one format (UTC, milliseconds), so text order is time order; stable, so a
    // question stays before its answer.
    entries.sort_by(|a, b| a.at.cmp(&b.at));
    for entry in &mut entries {
        entry.at = local_time(&entry.at, &ticket.timezone);
    }
    let assigned = ticket.assigned_to.clone().unwrap_or_default();
    let notes = app
        .store
        .ticket_notes(ticket.id)
        .await?
        .into_iter()
        .map(|n| crate::ticket_notes::TicketNote {
            at: local_time(&n.at, &ticket.timezone),
            ..n
        })
        .collect();
    let move_to = app
        .store
        .queue_names()
        .await?
        .into_iter()
        .filter(|(queue, _)| *queue != ticket.queue_id)
        .collect();
    let body = TicketPage {
        person_listening: app.support.person_listening(&ticket.conversation_id),
        move_to,
        notes,
        note_message: note_message.to_string(),
        note_draft: note_draft.to_string(),
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        mine: assigned == me.username,
        assigned,
        created: local_time(&ticket.created_at, &ticket.timezone),
        confidence: percent(ticket.confidence),
        ticket,
        entries,
        message: message.to_string(),
        draft: draft.to_string(),
        seen,
        nonce: auth::random_token(16),
        replied,
        live_from,
    }
    .render()?;
    Ok(no_store((status, Html(body)).into_response()))
}

fn not_found(id: i64) -> Result<Response, AppError> {
    let body = crate::views::MessagePage {
        lang: "en".to_string(),
        heading: "No such ticket".to_string(),
        message: format!("There is no ticket {id}."),
        back: "/support".to_string(),
    }
    .render()?;
    Ok(no_store(
        (StatusCode::NOT_FOUND, Html(body)).into_response(),
    ))
}

/// What every form on a ticket checks first: an agent (or admin) is signed in, the form's CSRF
/// token is their session's, and the ticket exists in a queue they work. The agent and the ticket,
/// or the response refusing the form (sign-in, 403, 404).
pub(crate) async fn ticket_form(
    app: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    id: i64,
) -> Result<Result<(SignedIn, TicketRecord), Response>, AppError> {
    let me = match require_agent(app, headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(Err(refused)),
    };
    if !auth::tokens_match(&me.csrf, csrf) {
        return crate::account::forbidden("This form expired. Reload the page and try again.")
            .map(Err);
    }
    match visible_ticket(app, &me, id).await? {
        Some(ticket) => Ok(Ok((me, ticket))),
        None => not_found(id).map(Err),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ReplyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub body: String,
    /// The newest turn the agent's page showed (`TicketPage::seen`); absent: not checked.
    #[serde(default)]
    pub seen: Option<String>,
    /// The form's drawing (`TicketPage::nonce`); absent: repeats are not recognised.
    #[serde(default)]
    pub nonce: Option<String>,
}

/// A form's `seen` field: a turn id, or nothing to check against (absent, or not a number: the
/// form then acts as forms without the field did).
fn seen_turn(field: Option<&str>) -> Option<i64> {
    field.and_then(|v| v.trim().parse::<i64>().ok())
}

#[derive(Debug, Deserialize, Default)]
pub struct CloseForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub seen: Option<String>,
}

/// `POST /support/tickets/{id}/reply`: the reply is stored, shown in the person's chat at once, and
/// sent to the queue's webhook.
pub async fn reply(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<ReplyForm>,
) -> Result<Response, AppError> {
    let (me, ticket) = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok(found) => found,
        Err(refused) => return Ok(refused),
    };
    // Browsers send a textarea's line breaks as CRLF but count them as one character against
    // its maxlength: counted here as the agent saw them.
    let body = form.body.replace("\r\n", "\n");
    let body = body.trim();
    if body.is_empty() || body.chars().count() > MAX_REPLY_CHARS {
        let message = format!(
            "A reply is 1 to {MAX_REPLY_CHARS} characters; this one has {}.",
            body.chars().count()
        );
        return ticket_page(
            &app,
            &me,
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            &message,
            body,
        )
        .await;
    }
    if ticket.status == "closed" {
        return ticket_page(
            &app,
            &me,
            id,
            StatusCode::CONFLICT,
            "This ticket is closed; the person would not see a reply.",
            body,
        )
        .await;
    }
    let nonce = form
        .nonce
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 64);
    let (reply_id, person_wrote_meanwhile) = match app
        .store
        .add_ticket_reply(
            id,
            &me.username,
            body,
            seen_turn(form.seen.as_deref()),
            nonce,
        )
        .await?
    {
        ReplyOutcome::Stored {
            message,
            person_wrote_meanwhile,
        } => (message.id, person_wrote_meanwhile),
        // A double click or a resubmitted page: the reply was sent once, and that stands.
        ReplyOutcome::Repeated => {
            return Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response())
        }
        ReplyOutcome::Closed => {
            // Closed by someone else after this agent's page was drawn: nothing stored, draft kept.
            return ticket_page(
                &app,
                &me,
                id,
                StatusCode::CONFLICT,
                "This ticket was closed meanwhile; the person would not see a reply.",
                body,
            )
            .await;
        }
    };
    let taken_by_reply = ticket.assigned_to.is_none();
    let ticket = app.store.ticket(id).await?.unwrap_or(ticket);
    publish(
        &app,
        SupportEvent::of("ticket.reply", &ticket)
            .with_text(body)
            .with_reply(reply_id)
            .by(&me.username),
    )
    .await?;
    if taken_by_reply && ticket.assigned_to.as_deref() == Some(me.username.as_str()) {
        // The reply took a ticket nobody had: said as a take is, for whoever listens only to those.
        publish(
            &app,
            SupportEvent::of("ticket.assigned", &ticket).by(&me.username),
        )
        .await?;
    }
    if person_wrote_meanwhile {
        // Sent; but the person's newer message is unanswered, so the ticket still waits, and the
        // agent is shown what they have not read.
        return ticket_page(
            &app,
            &me,
            id,
            StatusCode::OK,
            "Sent. The person wrote meanwhile (below), so the ticket still waits for an answer.",
            "",
        )
        .await;
    }
    Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response())
}

/// `POST /support/tickets/{id}/close`.
pub async fn close(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<CloseForm>,
) -> Result<Response, AppError> {
    let me = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok((me, _)) => me,
        Err(refused) => return Ok(refused),
    };
    match app
        .store
        .close_ticket(id, &me.username, seen_turn(form.seen.as_deref()))
        .await?
    {
        CloseOutcome::Closed => {
            if let Some(ticket) = app.store.ticket(id).await? {
                publish(
                    &app,
                    SupportEvent::of("ticket.closed", &ticket).by(&me.username),
                )
                .await?;
            }
        }
        CloseOutcome::AlreadyClosed => {}
        CloseOutcome::PersonWroteMeanwhile => {
            return ticket_page(
                &app,
                &me,
                id,
                StatusCode::CONFLICT,
                "Not closed: the person wrote after this page was drawn (below). Read it, then close or answer.",
                "",
            )
            .await;
        }
    }
    Ok(Redirect::to("/support").into_response())
}

/// `POST /support/tickets/{id}/reopen`: a ticket closed too soon is open again, and the agent who
/// reopens it has it. Not while its conversation has a newer live ticket (409, naming it).
pub async fn reopen(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<crate::account::CsrfForm>,
) -> Result<Response, AppError> {
    let (me, ticket) = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok(found) => found,
        Err(refused) => return Ok(refused),
    };
    if app.store.reopen_ticket(id, &me.username).await? {
        if let Some(ticket) = app.store.ticket(id).await? {
            publish(
                &app,
                SupportEvent::of("ticket.reopened", &ticket).by(&me.username),
            )
            .await?;
        }
        return Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response());
    }
    let why = if ticket.status != "closed" {
        "This ticket is open already.".to_string()
    } else {
        match app.store.open_ticket(&ticket.conversation_id).await? {
            // A colleague reopened it a moment ago.
            Some(live) if live == id => "This ticket is open already.".to_string(),
            Some(live) => {
                format!("This conversation has a newer open ticket, #{live}: answer there.")
            }
            None => "The ticket could not be reopened; reload the page.".to_string(),
        }
    };
    ticket_page(&app, &me, id, StatusCode::CONFLICT, &why, "").await
}

#[derive(Debug, Deserialize, Default)]
pub struct TakeForm {
    #[serde(default)]
    pub csrf: String,
    /// Who had the ticket on the page the agent saw (empty: nobody).
    #[serde(default)]
    pub expected: String,
}

/// `POST /support/tickets/{id}/take`: the ticket becomes the agent's, from nobody or from the
/// colleague the agent's page showed. Had someone else taken it since, nothing changes and the
/// page says who has it now (409), with a form to take it over.
pub async fn take(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<TakeForm>,
) -> Result<Response, AppError> {
    let (me, ticket) = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok(found) => found,
        Err(refused) => return Ok(refused),
    };
    if ticket.assigned_to.as_deref() == Some(me.username.as_str()) && ticket.status != "closed" {
        return Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response());
    }
    let expected = Some(form.expected.trim()).filter(|e| !e.is_empty());
    if !app
        .store
        .assign_ticket(id, Some(&me.username), expected)
        .await?
    {
        return assignment_conflict(&app, &me, id).await;
    }
    announce_assignment(&app, id, &me.username).await?;
    Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response())
}

/// `POST /support/tickets/{id}/release`: the agent lets go of their ticket; nobody has it then.
/// Only the agent who has it can (a colleague takes it over instead).
pub async fn release(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<crate::account::CsrfForm>,
) -> Result<Response, AppError> {
    let me = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok((me, _)) => me,
        Err(refused) => return Ok(refused),
    };
    if !app
        .store
        .assign_ticket(id, None, Some(&me.username))
        .await?
    {
        return assignment_conflict(&app, &me, id).await;
    }
    announce_assignment(&app, id, &me.username).await?;
    Ok(Redirect::to("/support").into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct MoveForm {
    #[serde(default)]
    pub csrf: String,
    /// The queue the agent's page showed the ticket in.
    #[serde(default)]
    pub from: String,
    /// The queue to move it to.
    #[serde(default)]
    pub to: String,
}

/// `POST /support/tickets/{id}/move`: the ticket goes to another support queue (the right team for
/// it), with its conversation and notes; nobody has it until one of that queue's agents takes it,
/// and the person keeps their place (how long they have waited). A note says who moved it. An
/// agent may move a ticket to a queue they do not work; they then no longer see it.
pub async fn move_queue(
    State(app): State<AppState>,
    crate::http::NumericId(id): crate::http::NumericId,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<MoveForm>,
) -> Result<Response, AppError> {
    let (me, ticket) = match ticket_form(&app, &headers, &form.csrf, id).await? {
        Ok(found) => found,
        Err(refused) => return Ok(refused),
    };
    let (from, to) = (form.from.trim(), form.to.trim());
    if ticket.status == "closed" {
        let why = "This ticket is closed: reopen it first to move it to another queue.";
        return ticket_page(&app, &me, id, StatusCode::CONFLICT, why, "").await;
    }
    let queues = app.store.queue_names().await?;
    let Some((_, to_name)) = queues.iter().find(|(queue, _)| queue == to) else {
        let why = format!(
            "There is no support queue {to:?} to move this ticket to; choose one from the list."
        );
        return ticket_page(&app, &me, id, StatusCode::UNPROCESSABLE_ENTITY, &why, "").await;
    };
    if to == ticket.queue_id {
        return Ok(Redirect::to(&format!("/support/tickets/{id}")).into_response());
    }
    if !app.store.move_ticket(id, from, to).await? {
        let why = "This ticket was moved or closed since this page was drawn: see where it is now.";
        return ticket_page(&app, &me, id, StatusCode::CONFLICT, why, "").await;
    }
    app.store
        .add_ticket_note(
            id,
            &me.username,
            &format!("Moved this ticket from queue {from} to {to} ({to_name})."),
        )
        .await?;
    if let Some(moved) = app.store.ticket(id).await? {
        publish(
            &app,
            SupportEvent::of("ticket.moved", &moved)
                .by(me.username.as_str())
                .moved_from(from),
        )
        .await?;
    }
    let still_mine = visible_ticket(&app, &me, id).await?.is_some();
    Ok(Redirect::to(&if still_mine {
        format!("/support/tickets/{id}")
    } else {
        "/support".to_string()
    })
    .into_response())
}

/// The ticket page, 409, saying why taking or letting go of the ticket changed nothing.
async fn assignment_conflict(app: &AppState, me: &SignedIn, id: i64) -> Result<Response, AppError> {
    let Some(ticket) = visible_ticket(app, me, id).await? else {
        return not_found(id);
    };
    let message = match (ticket.status.as_str(), ticket.assigned_to.as_deref()) {
        ("closed", _) => "This ticket is closed; nobody can take it.".to_string(),
        (_, Some(who)) if who == me.username => "You have this ticket.".to_string(),
        (_, Some(who)) => format!(
            "{who} has this ticket now. Take it over below only if you should answer the person instead."
        ),
        (_, None) => "Nobody has this ticket now; you can take it below.".to_string(),
    };
    ticket_page(app, me, id, StatusCode::CONFLICT, &message, "").await
}

/// Tells consoles (and the queue's webhook) who has the ticket now.
async fn announce_assignment(app: &AppState, id: i64, by: &str) -> Result<(), AppError> {
    if let Some(ticket) = app.store.ticket(id).await? {
        publish(app, SupportEvent::of("ticket.assigned", &ticket).by(by)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod waited_tests {
    use super::waited_for;

    #[test]
    fn a_wait_reads_in_minutes_hours_or_days() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let cases = [
            ("2026-12-07T11:59:30.000Z", "under a minute"),
            ("2026-12-07T11:48:00.000Z", "12 min"),
            ("2026-12-07T09:55:00.000Z", "2 h 5 min"),
            ("2026-12-04T12:00:00.000Z", "3 days"),
            // A clock a little ahead elsewhere is not a negative wait.
            ("2026-12-07T12:00:05.000Z", "under a minute"),
            ("not a time", ""),
        ];
        for (since, want) in cases {
            assert_eq!(waited_for(since, now), want, "{since}");
        }
    }
}
