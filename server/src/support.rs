//! Live support's moving parts: the hub that carries ticket events to whoever is watching (agents'
//! consoles, the person's chat) and to the queue's webhook, and the two event streams (SSE).
//! The store is the record; the hub only says "something changed", so a watcher that falls behind
//! or reconnects catches up from the store and misses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

use crate::agent_queues::QueueScope;
use crate::roles::Role;
use crate::store::Store;
use crate::stream_session::StreamSession;
use crate::tickets::{TicketMessage, TicketRecord};
use crate::{AppError, AppState};

/// Events a slow watcher may fall behind by before it is told to catch up from the store.
const HUB_CAPACITY: usize = 256;

/// What happened to a ticket, as the console, the person's chat and the webhook see it.
#[derive(Debug, Clone, Serialize)]
pub struct SupportEvent {
    /// `ticket.opened`, `ticket.message` (the person wrote), `ticket.reply` (an agent answered),
    /// `ticket.assigned` (an agent took or let go of it), `ticket.note` (an agent's note, consoles
    /// only: see `tell_consoles`), `ticket.moved` (to another queue: `queue`
    /// is the new one, `from_queue` the one it left), `ticket.closed` or `ticket.reopened`.
    pub event: &'static str,
    pub ticket: i64,
    pub status: String,
    pub queue: String,
    /// The queue a `ticket.moved` left: its agents' consoles and webhook hear that it went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_queue: Option<String>,
    /// Set by a console's stream for a ticket that moved out of the queues its agent works: the
    /// console drops it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub out_of_scope: bool,
    pub asset: String,
    pub asset_name: String,
    pub code: Option<String>,
    pub role: String,
    pub language: String,
    pub reason: String,
    pub confidence: f64,
    pub at: String,
    /// The asset's site time zone (IANA): consoles show times as the site lives them.
    pub timezone: String,
    /// When the ticket was opened, and since when the person has waited for an agent (RFC 3339).
    pub opened_at: String,
    pub waiting_since: String,
    /// The message (the person's question, or the agent's reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What the assistant answered the person's message, when it did (on a live ticket it still
    /// answers from the manuals): the agent sees what the person was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// The person's turn a `ticket.message` or `ticket.opened` carries (its id in the
    /// conversation): a console that shows it sends it back as `seen` when replying or closing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<i64>,
    /// The agent who replied, closed, or took or let go of the ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// How to reach the person, when they left a call-back number or address: for consoles only
    /// (the webhook payload carries `has_contact` instead; see `publish`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    pub has_contact: bool,
    /// The agent who has the ticket now (null: nobody). For consoles and webhooks; a person's
    /// stream never forwards it (the person never sees an agent's username).
    pub assigned_to: Option<String>,
    /// The note a `ticket.note` carries (its id): a console that shows it already skips it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<i64>,
    /// The agent's reply a `ticket.reply` carries (its id): a console that shows it already skips it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<i64>,
    /// Which conversation: the person's stream filters on it; it is never sent anywhere.
    #[serde(skip)]
    pub conversation: String,
    /// Its place in the hub's order (set when published): a console resumes after it.
    #[serde(skip)]
    pub seq: u64,
}

impl SupportEvent {
    pub fn of(event: &'static str, ticket: &TicketRecord) -> Self {
        Self {
            event,
            ticket: ticket.id,
            status: ticket.status.clone(),
            queue: ticket.queue_id.clone(),
            from_queue: None,
            out_of_scope: false,
            asset: ticket.asset_id.clone(),
            asset_name: ticket.asset_name.clone(),
            code: ticket.code.clone(),
            role: ticket.role.clone(),
            language: ticket.language.clone(),
            reason: ticket.reason.clone(),
            confidence: ticket.confidence,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            timezone: ticket.timezone.clone(),
            opened_at: ticket.created_at.clone(),
            waiting_since: ticket.waiting_since.clone(),
            text: None,
            turn: None,
            answer: None,
            by: None,
            contact: ticket.contact.clone(),
            has_contact: ticket.contact.is_some(),
            assigned_to: ticket.assigned_to.clone(),
            conversation: ticket.conversation_id.clone(),
            reply: None,
            note: None,
            seq: 0,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn with_turn(mut self, turn: i64) -> Self {
        self.turn = Some(turn);
        self
    }

    /// The assistant's answer to the person's message; nothing for an empty one.
    pub fn with_answer(mut self, answer: &str) -> Self {
        self.answer = Some(answer.to_string()).filter(|a| !a.trim().is_empty());
        self
    }

    pub fn with_reply(mut self, reply: i64) -> Self {
        self.reply = Some(reply);
        self
    }

    pub fn by(mut self, who: impl Into<String>) -> Self {
        self.by = Some(who.into());
        self
    }

    pub fn with_note(mut self, note: i64) -> Self {
        self.note = Some(note);
        self
    }

    pub fn moved_from(mut self, queue: impl Into<String>) -> Self {
        self.from_queue = Some(queue.into());
        self
    }
}

/// Carries ticket events to watchers, and wakes the webhook deliverer.
pub struct Hub {
    sender: broadcast::Sender<SupportEvent>,
    /// Open person streams per conversation: each gets a copy of every event and reads the store
    /// when it falls behind, so one conversation may not open them without end.
    person_streams: Arc<std::sync::Mutex<PersonStreams>>,
    /// Set when the server shuts down: every open stream ends, so the shutdown is not held up by
    /// browsers that keep listening.
    closing: watch::Sender<bool>,
    pub webhook_wake: Arc<Notify>,
    /// The last `HUB_CAPACITY` events in order, for consoles that open after their page was drawn
    /// or reconnect: they resume from a position instead of missing what went by meanwhile.
    recent: std::sync::Mutex<Recent>,
    /// Random per start: a position from before a restart names events this hub never had.
    epoch: String,
}

#[derive(Default)]
struct Recent {
    /// The `seq` the next event gets.
    next: u64,
    events: VecDeque<SupportEvent>,
}

/// Where a console resumes, as it asked (`?from=` or `Last-Event-ID`).
enum Resume {
    /// The events after the position, in order.
    After(Vec<SupportEvent>),
    /// The position is older than the events kept, or from before a restart: reload from the store.
    Lost,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            recent: std::sync::Mutex::default(),
            epoch: crate::auth::random_token(4),
            sender: broadcast::channel(HUB_CAPACITY).0,
            person_streams: Arc::default(),
            closing: watch::channel(false).0,
            webhook_wake: Arc::new(Notify::new()),
        }
    }
}

impl Hub {
    /// Whether the person of `conversation` has their chat open now (a reply stream to this
    /// process): an agent's reply reaches them at once, or only when they come back.
    pub fn person_listening(&self, conversation: &str) -> bool {
        self.person_streams
            .lock()
            .expect("stream count lock")
            .open
            .get(conversation)
            .is_some_and(|open| !open.is_empty())
    }

    /// A receiver that turns `true` when the server shuts down (for other long-lived streams).
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every open stream.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn watch(&self) -> Watch {
        Watch {
            events: self.sender.subscribe(),
            closing: self.closing.subscribe(),
        }
    }

    /// Where the event stream is now: a page reads it before reading the store, and its console
    /// resumes from it, so an event between the two is not missed.
    pub fn position(&self) -> String {
        let recent = self.recent.lock().expect("hub lock");
        format!("{}.{}", self.epoch, recent.next)
    }

    /// Sends `event` to every watcher, in the hub's order, and keeps it for consoles resuming.
    fn send(&self, mut event: SupportEvent) {
        let mut recent = self.recent.lock().expect("hub lock");
        event.seq = recent.next;
        recent.next += 1;
        recent.events.push_back(event.clone());
        if recent.events.len() > HUB_CAPACITY {
            recent.events.pop_front();
        }
        // Under the lock, so a console subscribing in `watch_from` gets each event once: from
        // the kept ones or live. No watcher is not an error.
        let _ = self.sender.send(event);
    }

    /// A watch, and what went by since `from` (a `position`, or a console event's id).
    fn watch_from(&self, from: Option<&str>) -> (Watch, Resume) {
        let recent = self.recent.lock().expect("hub lock");
        let watch = self.watch();
        let Some(from) = from else {
            return (watch, Resume::After(Vec::new()));
        };
        let oldest = recent.events.front().map_or(recent.next, |e| e.seq);
        let resume = match from.split_once('.') {
            Some((epoch, seq)) if epoch == self.epoch => match seq.parse::<u64>() {
                Ok(seq) if (oldest..=recent.next).contains(&seq) => Resume::After(
                    recent
                        .events
                        .iter()
                        .filter(|e| e.seq >= seq)
                        .cloned()
                        .collect(),
                ),
                _ => Resume::Lost,
            },
            _ => Resume::Lost,
        };
        (watch, resume)
    }
}

/// One watcher's view of the hub.
struct Watch {
    events: broadcast::Receiver<SupportEvent>,
    closing: watch::Receiver<bool>,
}

/// What a watcher gets next. Short-lived and one at a time, so the event is not boxed.
#[allow(clippy::large_enum_variant)]
enum Next {
    Event(SupportEvent),
    /// Events were dropped because the watcher fell behind: catch up from the store.
    Behind,
    Closed,
}

impl Watch {
    async fn next(&mut self) -> Next {
        if *self.closing.borrow() {
            return Next::Closed;
        }
        tokio::select! {
            received = self.events.recv() => match received {
                Ok(event) => Next::Event(event),
                Err(broadcast::error::RecvError::Lagged(_)) => Next::Behind,
                Err(broadcast::error::RecvError::Closed) => Next::Closed,
            },
            _ = self.closing.wait_for(|closing| *closing) => Next::Closed,
        }
    }
}

/// Tells the agents' consoles only (`ticket.note`: what agents write for each other): no webhook
/// delivery is stored, and a person's stream forwards nothing of it.
pub fn tell_consoles(app: &AppState, event: SupportEvent) {
    app.support.send(event);
}

/// Tells every watcher of a ticket event, then records it for the queue's webhook (when it has one).
/// What the event reports is stored already, so a failure to record the webhook delivery is logged,
/// not returned: the caller's change happened, and the watchers have seen it.
pub async fn publish(app: &AppState, event: SupportEvent) -> Result<(), AppError> {
    let mut payload = serde_json::to_value(&event).expect("events serialise");
    // A person's number stays in the console, which is behind sign-in and retention limits; the
    // receiver (a pager, a chat room) learns only that there is one.
    if let Some(fields) = payload.as_object_mut() {
        fields.remove("contact");
    }
    payload["console_url"] = serde_json::Value::String(format!(
        "{}/support/tickets/{}",
        app.config.public_url.trim_end_matches('/'),
        event.ticket
    ));
    let name = event.event;
    // A moved ticket is news to the queue it left too.
    let mut queues = vec![event.queue.clone()];
    queues.extend(event.from_queue.clone().filter(|q| *q != event.queue));
    app.support.send(event);
    for queue in queues {
        match app.store.enqueue_webhook(&queue, name, &payload).await {
            Ok(Some(_)) => app.support.webhook_wake.notify_one(),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, queue = %queue, event = name, "recording a webhook delivery failed")
            }
        }
    }
    Ok(())
}

/// Who may watch the console's stream.
const CONSOLE_ROLES: &[Role] = &[Role::Agent, Role::Admin];

/// `GET /support/events`: every ticket event of the queues the agent works, for agents' consoles. A console that fell behind is
/// sent `resync` and reloads what it shows; one whose agent's queues an administrator changed is
/// sent `queues` (within [`crate::stream_session::RECHECK`], or with the next event), because the
/// rows it shows are the old queues'. The stream ends when its agent signs out, is removed,
/// loses the role or is signed out by a password change (see [`StreamSession`]), so what people
/// wrote stops reaching a browser the moment its session does.
pub async fn console_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<ConsoleStreamQuery>,
) -> Result<Response, AppError> {
    let refusal = "The support console is for support agents.";
    let session = match StreamSession::open(&app, &headers, CONSOLE_ROLES, refusal).await? {
        Ok(session) => session,
        Err(refused) => return Ok(refused),
    };
    // The queues the console's page was drawn with, near enough: read as its stream opens.
    let scope = match session.allowed_user().await {
        Some(user) => Some(app.store.queue_scope(&user).await?),
        None => None,
    };
    // A reconnecting browser names the last event it had; a console just opened, the position
    // its page was drawn at.
    let from = crate::http::header(&headers, "last-event-id")
        .map(str::to_string)
        .or(query.from);
    let (watch, resume) = app.support.watch_from(from.as_deref());
    let pending = match resume {
        Resume::After(events) => events.into_iter().map(Next::Event).collect(),
        Resume::Lost => VecDeque::from([Next::Behind]),
    };
    let console = ConsoleStream {
        watch,
        pending,
        epoch: app.support.epoch.clone(),
        session,
        store: app.store.clone(),
        scope,
    };
    let stream = futures_util::stream::unfold(console, |mut console| async move {
        let event = console.next().await?;
        Some((Ok::<_, Infallible>(event), console))
    });
    Ok(no_store(Sse::new(stream).keep_alive(KeepAlive::default())))
}

#[derive(Debug, Deserialize, Default)]
pub struct ConsoleStreamQuery {
    /// The hub's position when the console's page was drawn (`Hub::position`).
    #[serde(default)]
    pub from: Option<String>,
}

/// State of one agent's console stream.
struct ConsoleStream {
    watch: Watch,
    /// What went by before the stream opened (or `Behind`, when that is not known), sent first.
    pending: VecDeque<Next>,
    epoch: String,
    session: StreamSession,
    store: Store,
    /// The queues the agent worked when the stream opened, or when it last sent `queues`.
    scope: Option<QueueScope>,
}

impl ConsoleStream {
    /// The next event to send, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            let next = match self.pending.pop_front() {
                Some(missed) => Some(missed),
                None => tokio::select! {
                    next = self.watch.next() => Some(next),
                    _ = self.session.recheck_due() => None,
                },
            };
            if matches!(next, Some(Next::Closed)) {
                return None;
            }
            let user = self.session.allowed_user().await?;
            // The queues this agent works, read per event and per recheck: an administrator may
            // change them while the console is open. A store that cannot tell ends the stream
            // rather than send unchecked.
            let scope = match self.store.queue_scope(&user).await {
                Ok(scope) => scope,
                Err(error) => {
                    tracing::warn!(%error, "reading an agent's queues failed; ending the stream");
                    return None;
                }
            };
            if self.scope.as_ref() != Some(&scope) {
                // The rows the console shows are another scope's: it reloads them (or, with a
                // reply being typed, says to).
                self.scope = Some(scope);
                return Some(Event::default().event("queues").data("{}"));
            }
            match next {
                Some(Next::Event(mut e)) => {
                    let left = e.from_queue.as_deref().is_some_and(|q| scope.sees(q));
                    if !scope.sees(&e.queue) && !left {
                        continue;
                    }
                    e.out_of_scope = !scope.sees(&e.queue);
                    return Some(
                        Event::default()
                            .event("ticket")
                            // The position just after it: where a reconnect resumes.
                            .id(format!("{}.{}", self.epoch, e.seq + 1))
                            .json_data(&e)
                            .expect("events serialise"),
                    );
                }
                Some(Next::Behind) => return Some(Event::default().event("resync").data("{}")),
                Some(Next::Closed) | None => {}
            }
        }
    }
}

/// What the person's chat is sent.
#[derive(Debug, Serialize)]
struct PersonReply {
    id: i64,
    ticket: i64,
    text: String,
    at: String,
}

/// State of one person's stream.
struct PersonStream {
    /// Counts this stream against its conversation's limit until it is dropped.
    slot: StreamSlot,
    watch: Watch,
    store: Store,
    conversation: String,
    /// The last reply sent; the browser echoes it as `Last-Event-ID` when it reconnects.
    last_sent: i64,
    pending: VecDeque<Event>,
    /// For a conversation held by a signed-in role, the session that opened the stream: replies
    /// stop when it ends (a technician signing out of a shared tablet). Anonymous conversations
    /// have none; their random id is the whole of their access.
    session: Option<StreamSession>,
}

impl PersonStream {
    /// Queues every reply the person has not been sent yet, from the store.
    async fn catch_up(&mut self) -> Result<(), crate::ServerError> {
        let replies = self
            .store
            .replies_to_conversation(&self.conversation, self.last_sent)
            .await?;
        for reply in replies {
            self.pending.push_back(person_reply(&reply));
            self.last_sent = reply.id;
        }
        Ok(())
    }
}

fn person_reply(message: &TicketMessage) -> Event {
    // The agent's name stays inside the console: the person hears from "support".
    Event::default()
        .event("reply")
        .id(message.id.to_string())
        .json_data(PersonReply {
            id: message.id,
            ticket: message.ticket_id,
            text: message.body.clone(),
            at: message.at.clone(),
        })
        .expect("replies serialise")
}

/// Live streams one conversation may hold open at once: a phone, a second tab, and a reconnect that
/// overlaps the connection it replaces.
pub const PERSON_STREAMS_PER_CONVERSATION: usize = 4;

/// The open person streams of each conversation, oldest first, each with the signal that ends it.
#[derive(Default)]
struct PersonStreams {
    next_id: u64,
    open: std::collections::HashMap<String, VecDeque<(u64, Arc<Notify>)>>,
}

/// One open person stream, counted while it lives. A conversation over its limit ends its oldest
/// stream rather than refusing the newest: the oldest is the likelier dead one (a phone that changed
/// networks leaves a connection the server learns of only minutes later), and a refused
/// EventSource gives up for good.
struct StreamSlot {
    streams: Arc<std::sync::Mutex<PersonStreams>>,
    conversation: String,
    id: u64,
    /// Notified when a newer stream of the conversation took this one's place.
    ended: Arc<Notify>,
}

impl StreamSlot {
    fn take(hub: &Hub, conversation: &str) -> Self {
        let mut streams = hub.person_streams.lock().expect("stream count lock");
        streams.next_id += 1;
        let id = streams.next_id;
        let ended = Arc::new(Notify::new());
        let open = streams.open.entry(conversation.to_string()).or_default();
        while open.len() >= PERSON_STREAMS_PER_CONVERSATION {
            if let Some((_, oldest)) = open.pop_front() {
                // A permit is kept if that stream is not waiting right now.
                oldest.notify_one();
            }
        }
        open.push_back((id, ended.clone()));
        Self {
            streams: hub.person_streams.clone(),
            conversation: conversation.to_string(),
            id,
            ended,
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().expect("stream count lock");
        if let Some(open) = streams.open.get_mut(&self.conversation) {
            open.retain(|(id, _)| *id != self.id);
            if open.is_empty() {
                streams.open.remove(&self.conversation);
            }
        }
    }
}

fn closed_event(ticket: i64) -> Event {
    ticket_event("closed", ticket)
}

/// `open`: the ticket is open, on connecting, or again after an agent reopened it (a chat that
/// had said it closed says it is open again and offers the call-back form).
fn open_event(ticket: i64) -> Event {
    ticket_event("open", ticket)
}

fn ticket_event(name: &str, ticket: i64) -> Event {
    Event::default()
        .event(name)
        .json_data(serde_json::json!({ "ticket": ticket }))
        .expect("serialises")
}

/// True for a conversation id as the chat makes them (32 hex digits), checked before any lookup.
pub fn is_conversation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a chat sends to listen for replies: the conversation, in the body, never the URL (which
/// proxies and access logs keep, and the id is all it takes to read the conversation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyStreamRequest {
    pub conversation: String,
}

/// `POST /api/chat/events`: agents' replies to this conversation as they are sent,
/// after any the person has not seen (`Last-Event-ID`); `closed` when the ticket is closed and
/// `open` when an agent reopens it; on connecting, one of the two for the conversation's last
/// ticket, so a chat that reconnects learns what it missed.
/// Knowing the conversation's random id is what allows it, as for the chat itself, under the role
/// that holds it: on a shared tablet, whoever comes after a signed-out technician is not sent the
/// replies the technician was.
pub async fn person_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<axum::Json<ReplyStreamRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let conversation = match crate::chat::json_body(body, "a reply stream request") {
        Ok(request) => request.conversation,
        Err(refused) => return Ok(refused),
    };
    // A signed-in caller's stream follows their session; anonymous callers have none to follow.
    let (session, caller) = match StreamSession::of_caller(&app, &headers).await? {
        Some((session, role)) => (Some(session), role),
        None => (None, Role::Anonymous),
    };
    if !is_conversation_id(&conversation)
        || app.store.conversation_role(&conversation).await?.as_deref() != Some(caller.as_str())
    {
        return Ok((
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "unknown conversation"})),
        )
            .into_response());
    }
    let slot = StreamSlot::take(&app.support, &conversation);
    let last_sent = crate::http::header(&headers, "last-event-id")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    // Watch first, then read the store: a reply sent in between is then both read and announced,
    // and the id check drops the repeat, instead of being missed.
    let mut state = PersonStream {
        slot,
        watch: app.support.watch(),
        store: app.store.clone(),
        conversation,
        last_sent,
        pending: VecDeque::new(),
        session,
    };
    state.catch_up().await?;
    // A ticket closed (or reopened) while this person was away: say so now, not never (the event
    // is gone). The chat shows a note only when this changes what it said last.
    if let Some((ticket, status)) = app.store.latest_ticket(&state.conversation).await? {
        state.pending.push_back(if status == "closed" {
            closed_event(ticket)
        } else {
            open_event(ticket)
        });
    }
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if !state.pending.is_empty() {
                if let Some(session) = &state.session {
                    if !session.still_allowed().await {
                        return None;
                    }
                }
                let event = state.pending.pop_front()?;
                return Some((Ok::<_, Infallible>(event), state));
            }
            let ended = state.slot.ended.clone();
            let recheck = async {
                match &mut state.session {
                    Some(session) => session.recheck_due().await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                next = state.watch.next() => next,
                _ = ended.notified() => return None,
                _ = recheck => continue,
            };
            match next {
                Next::Event(e) if e.conversation != state.conversation => {}
                Next::Event(e) if e.event == "ticket.closed" => {
                    state.pending.push_back(closed_event(e.ticket));
                }
                Next::Event(e) if e.event == "ticket.reopened" => {
                    state.pending.push_back(open_event(e.ticket));
                }
                Next::Event(_) => {
                    if let Err(error) = state.catch_up().await {
                        tracing::error!(%error, "reading replies for a chat stream");
                        return None;
                    }
                }
                // Events were missed: replies come from the store, and so does whether the ticket
                // is open or closed now (a missed close or reopen; the chat ignores repeats).
                Next::Behind => {
                    if let Err(error) = state.catch_up().await {
                        tracing::error!(%error, "reading replies for a chat stream");
                        return None;
                    }
                    match state.store.latest_ticket(&state.conversation).await {
                        Ok(Some((ticket, status))) => {
                            state.pending.push_back(if status == "closed" {
                                closed_event(ticket)
                            } else {
                                open_event(ticket)
                            })
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(%error, "reading a chat stream's ticket");
                            return None;
                        }
                    }
                }
                Next::Closed => return None,
            }
        }
    });
    Ok(no_store(Sse::new(stream).keep_alive(KeepAlive::default())))
}

fn no_store(response: impl IntoResponse) -> Response {
    crate::account::no_store(response.into_response())
}
