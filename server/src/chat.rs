//! `POST /api/chat`: a question about the scanned asset, answered from its manuals with citations and a
//! confidence; a ticket for a person when the assistant is unsure or the person asks for one.
//! Inference runs off the async runtime, at most `CHAT_SLOTS` at a time; a request that cannot get a
//! slot in `BUSY_WAIT` gets a clear "busy" answer instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use scanaid_assistant::confidence::ShippedModel;
use scanaid_indexer::{Filters, Mode, OwnerScope, SearchRequest};

use crate::auth::AttemptLimiter;
use crate::registry::is_well_formed_code;
use crate::store::{AssetRecord, QueueRecord};
use crate::{AppError, AppState};

/// Longest question accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;
/// Earlier turns (questions and answers) a follow-up retrieves with.
const HISTORY_TURNS: usize = 3;
/// Answers computed at once; the machine has two cores and one answer uses both.
pub const CHAT_SLOTS: usize = 2;
/// How long a request waits for a slot before it is told the assistant is busy.
pub(crate) const BUSY_WAIT: Duration = Duration::from_secs(5);

/// The window the message limits count in.
pub const RATE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Inference slots, the confidence model and the message limits, shared by every chat request.
pub struct ChatEngine {
    pub slots: Arc<tokio::sync::Semaphore>,
    pub model: Arc<ShippedModel>,
    per_conversation: AttemptLimiter,
    per_client: AttemptLimiter,
    /// Requests for a person let past the per-address limit, per address: generous, but a bound
    /// (each one opens a ticket that every agent sees).
    person_requests_per_client: AttemptLimiter,
}

/// Requests for a person an address over its question limit may still send in `RATE_WINDOW`.
const PERSON_REQUESTS_PER_CLIENT: u32 = 10;

impl ChatEngine {
    /// Messages per conversation and per client address prefix allowed in `RATE_WINDOW`; the
    /// confidence model fitted for the embedding model `model_id`.
    pub fn new(per_conversation: u32, per_client: u32, model_id: &str) -> Self {
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(CHAT_SLOTS)),
            model: Arc::new({
                let (model, fitted) = ShippedModel::for_model(model_id);
                if !fitted {
                    tracing::warn!(model_id, "no confidence model was fitted for this embedding model; using the tuned MiniLM's, so escalation thresholds are not calibrated for it");
                }
                model
            }),
            per_conversation: AttemptLimiter::new(per_conversation, RATE_WINDOW, RATE_WINDOW),
            per_client: AttemptLimiter::new(per_client, RATE_WINDOW, RATE_WINDOW),
            person_requests_per_client: AttemptLimiter::new(
                PERSON_REQUESTS_PER_CLIENT,
                RATE_WINDOW,
                RATE_WINDOW,
            ),
        }
    }

    /// Whether `client` is over its question limit now (nothing is counted).
    fn client_over_limit(&self, client: Option<&str>) -> bool {
        client.is_some_and(|c| self.per_client.locked_for(&format!("client:{c}")).is_some())
    }

    /// Counts a request for a person from `client` past its question limit; `Some(wait)` when
    /// even those are over their own limit.
    fn over_person_request_limit(&self, client: Option<&str>) -> Option<Duration> {
        let key = format!("client:{}", client?);
        let locked = self.person_requests_per_client.locked_for(&key);
        if locked.is_none() {
            self.person_requests_per_client.record_failure(&key);
        }
        locked
    }

    /// Counts a message against its conversation and client; `Some(wait)` when either is over its
    /// limit (the message is then not answered).
    pub(crate) fn over_limit(
        &self,
        conversation: Option<&str>,
        client: Option<&str>,
    ) -> Option<Duration> {
        let conversation = conversation.map(|c| format!("conversation:{c}"));
        let client = client.map(|c| format!("client:{c}"));
        let locked = conversation
            .as_deref()
            .and_then(|k| self.per_conversation.locked_for(k))
            .or_else(|| {
                client
                    .as_deref()
                    .and_then(|k| self.per_client.locked_for(k))
            });
        if locked.is_none() {
            if let Some(k) = &conversation {
                self.per_conversation.record_failure(k);
            }
            if let Some(k) = &client {
                self.per_client.record_failure(k);
            }
        }
        locked
    }

    /// Counts the message that opened `conversation` (it had no id to be counted under before).
    pub(crate) fn count_opening_message(&self, conversation: &str) {
        self.per_conversation
            .record_failure(&format!("conversation:{conversation}"));
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub asset: Option<String>,
    pub message: String,
    #[serde(default)]
    pub conversation: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
    /// How support may reach the person (phone or email), only if they choose to leave it; kept
    /// with the ticket, never in analytics.
    #[serde(default)]
    pub contact: Option<String>,
    /// A random id the chat gives each message and sends again when it retries one whose answer it
    /// never received: a repeat is answered with what was stored, and nothing happens twice.
    #[serde(default)]
    pub request: Option<String>,
}

/// True for a message's request id: 16 to 64 letters, digits, `-` or `_`.
fn is_request_id(id: &str) -> bool {
    (16..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Longest contact accepted, in characters.
pub const MAX_CONTACT_CHARS: usize = 200;

#[derive(Debug, Serialize, Deserialize)]
pub struct CitationView {
    pub n: usize,
    pub manual: String,
    pub manual_title: String,
    pub revision: String,
    pub section: String,
    pub url: String,
    pub snippet: String,
}

impl CitationView {
    /// A citation as the person sees it, linking to `url` (the manual section, or for a patient's
    /// own document, their packet's page).
    pub fn of(c: &scanaid_assistant::Citation, url: String) -> Self {
        Self {
            n: c.n,
            manual: c.manual_id.clone(),
            manual_title: c.manual_title.clone(),
            revision: c.revision.clone(),
            section: c.section.clone(),
            url,
            snippet: c.snippet.clone(),
        }
    }

    /// The public page of a cited manual section.
    pub fn section_url(c: &scanaid_assistant::Citation) -> String {
        format!("/m/{}#{}", c.manual_id, c.anchor)
    }
}

/// An extract's sentences and citations as the chat returns them, each citation linked by `url`.
pub fn views_of(
    extract: &scanaid_assistant::Extract,
    url: impl Fn(&scanaid_assistant::Citation) -> String,
) -> (Vec<SentenceView>, Vec<CitationView>) {
    let citations = extract
        .citations
        .iter()
        .map(|c| CitationView::of(c, url(c)))
        .collect();
    let sentences = extract
        .sentences
        .iter()
        .map(|s| SentenceView {
            // A piece the manual wraps over lines is shown as the one line markdown renders.
            text: scanaid_assistant::answer::one_line(&s.text).into_owned(),
            citation: s.citation,
        })
        .collect();
    (sentences, citations)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SentenceView {
    pub text: String,
    pub citation: usize,
}

#[derive(Debug, Serialize)]
pub struct TicketView {
    pub id: i64,
    pub queue: String,
    pub hours: String,
    pub next: String,
}

#[derive(Debug, Serialize)]
pub struct ChatReply {
    pub conversation: String,
    /// This turn's number, for thumbs up/down (`POST /api/chat/feedback`).
    pub turn: i64,
    /// The answer as text, each sentence followed by its citation `[n]`.
    pub answer: String,
    pub sentences: Vec<SentenceView>,
    pub citations: Vec<CitationView>,
    pub confidence: f64,
    /// The assistant is below its confidence threshold: the answer is shown as "not sure".
    pub unsure: bool,
    /// No manual is for this machine yet: nothing was looked up (the person is told so).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_manuals: bool,
    pub escalated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketView>,
}

#[derive(Debug, Serialize)]
struct ChatError {
    error: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    busy: bool,
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ChatError {
            error: message.into(),
            busy: status == StatusCode::SERVICE_UNAVAILABLE,
        }),
    )
        .into_response()
}

/// The JSON body, or a JSON error saying why it is not `what` (malformed, unknown fields, wrong type).
// The error is the finished response handlers return as it is, made only for a bad request.
#[allow(clippy::result_large_err)]
pub(crate) fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    what: &str,
) -> Result<T, Response> {
    body.map(|Json(value)| value).map_err(|rejection| {
        error(
            rejection.status(),
            format!("the request is not {what}: {}", rejection.body_text()),
        )
    })
}

/// Runs the assistant on one of the `CHAT_SLOTS`, off the async runtime; a refusal when no slot frees
/// up within `BUSY_WAIT` or the request is unusable.
pub async fn run_assistant(
    app: &AppState,
    search: SearchRequest,
    preferred_language: Option<String>,
) -> Result<Result<scanaid_assistant::Reply, Refusal>, AppError> {
    let Ok(permit) = tokio::time::timeout(BUSY_WAIT, app.chat.slots.clone().acquire_owned()).await
    else {
        return Ok(Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the assistant is busy; try again in a moment, or call the number on the label",
        )
        .retry_after(BUSY_WAIT)));
    };
    let permit = permit.expect("the chat semaphore is never closed");
    let index = app.index();
    let embedder = app.embedder.clone();
    let model = app.chat.model.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        reply_preferring(
            &index,
            embedder.as_ref(),
            &model,
            search,
            preferred_language,
        )
    })
    .await?;
    match answered {
        Ok(reply) => Ok(Ok(reply)),
        Err(scanaid_indexer::IndexError::BadRequest(reason)) => {
            Ok(Err(Refusal::new(StatusCode::UNPROCESSABLE_ENTITY, reason)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Answers from the manuals in the person's language when they answer it; otherwise from every
/// language the asset's manuals are in (technical content often exists in one language only), when
/// that answer is confident and more so than the first.
fn reply_preferring(
    index: &scanaid_indexer::SearchIndex,
    embedder: &dyn scanaid_models::Embedder,
    model: &ShippedModel,
    search: SearchRequest,
    language: Option<String>,
) -> Result<scanaid_assistant::Reply, scanaid_indexer::IndexError> {
    let Some(language) = language else {
        return scanaid_assistant::reply(index, embedder, model, search);
    };
    // Both passes search with the same question: embed it once.
    let embedder = RememberedQueries {
        inner: embedder,
        last: std::sync::Mutex::new(None),
    };
    let mut in_language = search.clone();
    in_language.filters.languages = vec![language];
    let first = scanaid_assistant::reply(index, &embedder, model, in_language)?;
    if !first.unsure && !first.extract.sentences.is_empty() {
        return Ok(first);
    }
    let any = scanaid_assistant::reply(index, &embedder, model, search)?;
    // Another language's answer when it is confident, or clearly likelier to answer than the first.
    // An unsure answer in a language the person did not ask in, no better than theirs (a greeting
    // "answered" by a Spanish section: 0.005 against 0.004), helps nobody; their own language's
    // unsure reply offers them a person. An English leaflet for a Spanish question about salt that
    // the patient's Spanish papers do not cover (0.18 against 0.08) is worth showing.
    let clearly_better = any.confidence - first.confidence >= LANGUAGE_SWITCH_MARGIN;
    // Nothing at all in their language (an English-only dishwasher, a Spanish question): the closest
    // sections in another language, marked unsure, beat an empty answer.
    let nothing_in_language = first.extract.sentences.is_empty();
    Ok(
        if nothing_in_language && !any.extract.sentences.is_empty()
            || any.confidence > first.confidence && (!any.unsure || clearly_better)
        {
            any
        } else {
            first
        },
    )
}

/// How much likelier to be answerable (the confidence scale) another language's unsure answer must be
/// than the answer in the person's language to be shown instead.
const LANGUAGE_SWITCH_MARGIN: f64 = 0.05;

/// An embedder that remembers its last query embedding, so a second search with the same question
/// does not run the model again.
struct RememberedQueries<'a> {
    inner: &'a dyn scanaid_models::Embedder,
    last: std::sync::Mutex<Option<QueriesAndVectors>>,
}

type QueriesAndVectors = (Vec<String>, Vec<Vec<f32>>);

impl scanaid_models::Embedder for RememberedQueries<'_> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn embed_queries(&self, texts: &[&str]) -> scanaid_models::Result<Vec<Vec<f32>>> {
        let mut last = self.last.lock().expect("query memo lock");
        if let Some((seen, vectors)) = last.as_ref() {
            if seen.iter().map(String::as_str).eq(texts.iter().copied()) {
                return Ok(vectors.clone());
            }
        }
        let vectors = self.inner.embed_queries(texts)?;
        *last = Some((
            texts.iter().map(|t| t.to_string()).collect(),
            vectors.clone(),
        ));
        Ok(vectors)
    }
    fn embed_passages(&self, texts: &[&str]) -> scanaid_models::Result<Vec<Vec<f32>>> {
        self.inner.embed_passages(texts)
    }
}

/// "Talk to a person" in the words people use (English and Spanish).
pub fn asks_for_a_person(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "talk to a person",
        "speak to a person",
        "talk to someone",
        "speak to someone",
        "a human",
        "real person",
        "an agent",
        "live support",
        "call me",
        "hablar con una persona",
        "hablar con alguien",
        // Whole requests only: "una persona" or "un agente" alone are in ordinary questions ("¿puede
        // una persona sola mover la bomba?", "un agente desinfectante").
        "hablar con un agente",
        "con una persona real",
        "quiero una persona",
        "atención en vivo",
        "llámenme",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// True when a message that asks for a person also says something to look up ("the pump keeps
/// alarming, can I talk to someone"), false for the request alone ("please, a real person").
pub fn asks_more_than_a_person(message: &str) -> bool {
    const FILLER: &[&str] = &[
        "a",
        "an",
        "the",
        "i",
        "me",
        "my",
        "can",
        "could",
        "please",
        "want",
        "would",
        "like",
        "to",
        "need",
        "with",
        "speak",
        "talk",
        "someone",
        "person",
        "human",
        "real",
        "agent",
        "live",
        "support",
        "now",
        "just",
        "let",
        "hi",
        "hello",
        "ok",
        "okay",
        "call",
        "yes",
        "some",
        "one",
        "quiero",
        "necesito",
        "por",
        "favor",
        "hablar",
        "con",
        "una",
        "un",
        "persona",
        "alguien",
        "agente",
        "puedo",
        "hola",
        "ahora",
        "llámenme",
        "llamenme",
    ];
    message
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !FILLER.contains(w))
        .count()
        >= 2
}

pub async fn chat(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Json<ChatRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let request = match json_body(body, "a chat message") {
        Ok(request) => request,
        Err(refused) => return Ok(refused),
    };
    let role = crate::site::role_of(&app, &headers).await?;
    let streamed =
        crate::http::header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
    Ok(
        match answer_turn(&app, role, client_of(&extensions), request).await? {
            Ok(reply) if streamed => stream(reply),
            Ok(reply) => Json(reply).into_response(),
            Err(refusal) => refusal.into_json(),
        },
    )
}

/// The reply as server-sent events: `citations` first (the sources can show at once), then `answer`
/// (sentences, confidence), then `done` with the whole reply (conversation, turn, escalation, ticket).
/// The answer is computed whole before the first event: extraction takes well under a millisecond
/// after retrieval, so there is nothing to gain from streaming it piecewise.
fn stream(reply: ChatReply) -> Response {
    use axum::response::sse::{Event, Sse};
    let event = |name: &str, data: &serde_json::Value| {
        Event::default()
            .event(name)
            .json_data(data)
            .expect("JSON values serialise")
    };
    let citations = serde_json::json!({ "citations": &reply.citations });
    let answer = serde_json::json!({
        "answer": &reply.answer,
        "sentences": &reply.sentences,
        "confidence": reply.confidence,
        "unsure": reply.unsure,
        "no_manuals": reply.no_manuals,
    });
    let done = serde_json::to_value(&reply).expect("the reply serialises");
    let events = vec![
        event("citations", &citations),
        event("answer", &answer),
        event("done", &done),
    ];
    Sse::new(futures_util::stream::iter(
        events.into_iter().map(Ok::<_, std::convert::Infallible>),
    ))
    .into_response()
}

/// A turn that could not be answered because of the request: the status, what to tell the person and,
/// when waiting will help (a limit, a busy assistant), how long (sent as `Retry-After`).
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(self, wait: Duration) -> Self {
        Refusal {
            retry_after: Some(wait),
            ..self
        }
    }

    /// The refusal as the JSON API answers it: `{"error", "busy"}` with its status.
    pub fn into_json(self) -> Response {
        crate::http::with_retry_after(error(self.status, self.message), self.retry_after)
    }
}

/// Answers one turn for a reader of `role`: the core both the JSON API and the page's form use.
pub async fn answer_turn(
    app: &AppState,
    role: crate::roles::Role,
    client: Option<String>,
    request: ChatRequest,
) -> Result<Result<ChatReply, Refusal>, AppError> {
    // Inside a turn, a refusal is a value the caller renders (JSON or a page).
    fn error(status: StatusCode, message: impl Into<String>) -> Result<ChatReply, Refusal> {
        Err(Refusal::new(status, message))
    }
    let lang = request
        .lang
        .clone()
        .filter(|l| l.len() <= 16 && l.chars().all(|c| c.is_ascii_alphabetic() || c == '-'))
        .unwrap_or_else(|| "en".to_string());
    // Refusals in the reader's language, as the page around them.
    let t = crate::i18n::strings(&lang);
    let message = request.message.trim().to_string();
    if message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Ok(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            t.chat_length
                .replace("{max}", &MAX_MESSAGE_CHARS.to_string()),
        ));
    }
    let contact = request
        .contact
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    if contact
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CONTACT_CHARS || c.chars().any(char::is_control))
    {
        return Ok(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            t.chat_contact
                .replace("{max}", &MAX_CONTACT_CHARS.to_string()),
        ));
    }

    let mut request_id = match request.request.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(id) if is_request_id(id) => Some(id.to_string()),
        Some(_) => {
            return Ok(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`request` is 16 to 64 letters, digits, - or _",
            ))
        }
    };
    // A message sent again (its answer never arrived) is answered as it was the first time:
    // before the limits, which the first sending counted against already.
    if let Some(id) = &request_id {
        if let Some(previous) = app.store.turn_of_request(id).await? {
            if is_repeat(app, role, &request, &previous).await? {
                return replayed(app, previous).await;
            }
            // Another message under a used id (a page without script, gone back to and asked
            // something else): a new message, not linked to it.
            request_id = None;
        }
    }

    // Only a well-formed conversation id is a key: any other string sent as one (up to the body
    // limit) would be remembered by the limiter for nothing; it is refused below.
    let conversation_key = request
        .conversation
        .as_deref()
        .filter(|c| crate::support::is_conversation_id(c));
    // The way to a person is not shut by other people's questions (a ward's Wi-Fi is one
    // address): over the per-address limit, a message on a conversation an agent has still reaches
    // the agent (without the assistant, which the limit protects), and a bare request for a person
    // still opens a ticket, up to a bound of its own. The per-conversation limit always holds.
    let bare_request = asks_for_a_person(&message) && !asks_more_than_a_person(&message);
    let agent_has_it = match conversation_key {
        Some(id) => app.store.open_ticket(id).await?.is_some(),
        None => false,
    };
    // An agent took the ticket or answered on it: the conversation is theirs now, and the assistant
    // stays out of it (its answers between an agent's would contradict or repeat them, and each
    // would hold the person's message back while it waits for a free model).
    let agent_engaged = match conversation_key {
        Some(id) if agent_has_it => app.store.agent_engaged(id).await?,
        _ => false,
    };
    let past_the_address_limit =
        (bare_request || agent_has_it) && app.chat.client_over_limit(client.as_deref());
    let over = if past_the_address_limit {
        app.chat.over_limit(conversation_key, None).or_else(|| {
            (bare_request && !agent_has_it)
                .then(|| app.chat.over_person_request_limit(client.as_deref()))
                .flatten()
        })
    } else {
        app.chat.over_limit(conversation_key, client.as_deref())
    };
    if let Some(wait) = over {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        return Ok(Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            t.chat_too_many.replace("{minutes}", &minutes.to_string()),
        )
        .retry_after(wait)));
    }

    // The asset: from the conversation, the code, or the asset id, in that order.
    let (asset, code, conversation, history) = match &request.conversation {
        Some(id) => match app.store.conversation(id).await? {
            // Held under another role (a technician's, continued by whoever picks up the shared
            // tablet after sign-out): as unknown to this caller as to anyone else.
            Some(_) if app.store.conversation_role(id).await?.as_deref() != Some(role.as_str()) => {
                return Ok(error(StatusCode::NOT_FOUND, t.chat_unknown_conversation))
            }
            Some((asset_id, code)) => {
                let Some(asset) = app.store.asset(&asset_id).await? else {
                    return Ok(error(StatusCode::GONE, t.chat_asset_gone));
                };
                let turns = app.store.chat_turns(id).await?;
                (asset, code, id.clone(), history_of(&turns))
            }
            None => return Ok(error(StatusCode::NOT_FOUND, t.chat_unknown_conversation)),
        },
        None => {
            let Some((asset, code)) = asset_of(app, &request).await? else {
                return Ok(error(StatusCode::NOT_FOUND, t.chat_unknown_asset));
            };
            let id = crate::auth::random_token(16);
            app.store
                .create_conversation(&id, &asset.id, code.as_deref(), role.as_str())
                .await?;
            app.chat.count_opening_message(&id);
            (asset, code, id, Vec::new())
        }
    };

    let manuals = crate::pages::asset_manuals(&asset.manual_ids(), &asset.model, &app.index());
    // A machine no manual is for yet: the assistant has nothing to answer from (an empty list
    // would search every manual, and answer about other machines with citations that look right).
    let no_manuals = manuals.is_empty();
    let filters = chat_filters(manuals, role);
    let search = SearchRequest {
        query: message.clone(),
        history,
        filters,
        limit: 20,
        mode: Mode::Hybrid,
        // Only a language the person chose; the "en" default says nothing about the question.
        language: request.lang.as_ref().map(|_| lang.clone()),
    };
    let asked = asks_for_a_person(&message);
    // Whether an agent has this conversation (read with the limits above): then a message is for
    // them even when the assistant is busy. Looked up again after the answer (a ticket may close
    // meanwhile).
    let has_agent = agent_has_it;
    let started = std::time::Instant::now();
    // "Talk to a person" and nothing more: there is nothing to look up, the ticket is the answer.
    // Set when the assistant was busy, or failed, and the message goes to a person without its
    // answer; which of the two is what the ticket's reason and the escalation metric say.
    let mut forwarded = false;
    let mut assistant_failed = false;
    let (extract, confidence, unsure) = if (asked && !asks_more_than_a_person(&message))
        || past_the_address_limit
        || agent_engaged
    {
        (scanaid_assistant::Extract::default(), 0.0, false)
    } else if no_manuals {
        // Nothing to answer from: a person is the answer (a ticket, as when the assistant is unsure).
        (scanaid_assistant::Extract::default(), 0.0, true)
    } else {
        // Only a language the person chose (the page's, or `lang` in JSON) is preferred.
        let preferred_language = request
            .lang
            .as_ref()
            .map(|_| lang.split('-').next().unwrap_or("en").to_ascii_lowercase());
        let assistant = match run_assistant(app, search, preferred_language).await {
            Ok(outcome) => outcome,
            // The assistant failed (the index or the model): a message for a person still reaches
            // them, as when it is busy; anything else is the error it is.
            Err(failure) if asked || has_agent => {
                tracing::error!(error = %failure.0, "the assistant failed; the message goes to a person without its answer");
                assistant_failed = true;
                Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, t.chat_busy))
            }
            Err(failure) => return Err(failure),
        };
        match assistant {
            Ok(reply) => (reply.extract, reply.confidence, reply.unsure),
            // Busy: a message for a person (one asking for them, or on a conversation an agent has)
            // still reaches them, without the assistant's answer, instead of being refused.
            Err(refusal)
                if refusal.status == StatusCode::SERVICE_UNAVAILABLE && (asked || has_agent) =>
            {
                forwarded = true;
                (scanaid_assistant::Extract::default(), 0.0, false)
            }
            Err(refusal) if refusal.status == StatusCode::SERVICE_UNAVAILABLE => {
                return Ok(Err(Refusal {
                    message: t.chat_busy.to_string(),
                    ..refusal
                }))
            }
            Err(refusal) => return Ok(Err(refusal)),
        }
    };

    let (sentences, citations) = views_of(&extract, CitationView::section_url);
    let answer = sentences
        .iter()
        .map(|s| format!("{} [{}]", s.text, s.citation))
        .collect::<Vec<_>>()
        .join("\n");
    // A forwarded message whose ticket closed meanwhile opens a new one: it must reach someone.
    let escalated = asked || unsure || forwarded;
    let outcome = if (asked || has_agent) && extract.sentences.is_empty() {
        "person"
    } else if unsure {
        "unsure"
    } else {
        "answered"
    };
    app.metrics
        .chat_turn("asset", outcome, started.elapsed().as_secs_f64());
    // What the turn was, for the unanswered-questions view (migration 0020): only questions put to
    // the assistant count there, not a bare request for a person or a message for an agent.
    let kind = if forwarded {
        "forwarded"
    } else if asked && !asks_more_than_a_person(&message) {
        "person"
    } else if has_agent {
        "to_agent"
    } else if unsure {
        "unsure"
    } else {
        "answered"
    };
    let citations_json = serde_json::to_string(&citations).expect("serialises");
    let shown_json = serde_json::to_string(&Shown {
        sentences: &sentences,
        unsure,
        no_manuals,
    })
    .expect("serialises");
    let Some(turn) = app
        .store
        .add_chat_turn(
            &conversation,
            &message,
            &answer,
            &citations_json,
            &shown_json,
            confidence,
            escalated,
            kind,
            request_id.as_deref(),
        )
        .await?
    else {
        // The same message, sent twice at once, was stored by the other sending: its answer.
        let id = request_id.as_deref().unwrap_or_default();
        return match app.store.turn_of_request(id).await? {
            Some(previous) if is_repeat(app, role, &request, &previous).await? => {
                replayed(app, previous).await
            }
            _ => Ok(Err(Refusal::new(
                StatusCode::CONFLICT,
                "this message's request id was used for another message",
            ))),
        };
    };
    let mut live_ticket = app.store.open_ticket(&conversation).await?;
    // A person writing on a conversation with a live ticket: the agents see it at once. Closed
    // between the lookup and now, it is not news on that ticket (an escalating message opens a
    // new one below).
    if let Some(id) = live_ticket {
        if app.store.touch_ticket(id).await? {
            if let Some(contact) = contact.as_deref() {
                app.store.set_ticket_contact(id, contact).await?;
            }
            if let Some(ticket) = app.store.ticket(id).await? {
                crate::support::publish(
                    app,
                    crate::support::SupportEvent::of("ticket.message", &ticket)
                        .with_text(&message)
                        .with_turn(turn)
                        .with_answer(&answer),
                )
                .await?;
            }
        } else {
            live_ticket = None;
        }
    }
    // The person wrote to an agent, and the ticket closed as they did (an agent closing it
    // before this message was stored): it must still reach someone, so it opens a new ticket.
    let closed_meanwhile = has_agent && live_ticket.is_none();
    let escalated = escalated || closed_meanwhile;
    let ticket = if escalated || live_ticket.is_some() {
        let id = match live_ticket {
            Some(id) => id,
            None => {
                let reason = if closed_meanwhile {
                    "wrote as the ticket closed"
                } else if asked {
                    "asked for a person"
                } else if assistant_failed {
                    "assistant failed"
                } else if forwarded {
                    "assistant busy"
                } else if no_manuals {
                    "no manuals for this machine"
                } else {
                    "assistant unsure"
                };
                let (id, opened) = app
                    .store
                    .create_ticket(
                        &conversation,
                        &asset.id,
                        code.as_deref(),
                        role.as_str(),
                        &lang,
                        confidence,
                        reason,
                    )
                    .await?;
                if let Some(contact) = contact.as_deref() {
                    app.store.set_ticket_contact(id, contact).await?;
                }
                if opened {
                    app.metrics.escalation(if closed_meanwhile {
                        "closed_meanwhile"
                    } else if asked {
                        "asked"
                    } else if assistant_failed {
                        "failed"
                    } else if forwarded {
                        "busy"
                    } else {
                        "unsure"
                    });
                }
                if let Some(ticket) = app.store.ticket(id).await? {
                    // Another message of the same conversation opened it a moment ago: this one
                    // is news on it.
                    let event = if opened {
                        "ticket.opened"
                    } else {
                        "ticket.message"
                    };
                    crate::support::publish(
                        app,
                        crate::support::SupportEvent::of(event, &ticket)
                            .with_text(&message)
                            .with_turn(turn)
                            .with_answer(&answer),
                    )
                    .await?;
                }
                id
            }
        };
        // The ticket's queue: an agent may have moved it to another team.
        let queue_id = match app.store.ticket(id).await? {
            Some(ticket) => ticket.queue_id,
            None => asset.queue_id.clone(),
        };
        let view = ticket_view_in(app, id, Some(&queue_id), &lang).await?;
        // Sent to the agent who has the conversation: say so, not "will see the ticket" again.
        Some(if agent_engaged && live_ticket == Some(id) {
            view.sent_to_agent(crate::i18n::strings(&lang))
        } else {
            view
        })
    } else {
        None
    };
    Ok(Ok(ChatReply {
        conversation,
        turn,
        answer,
        sentences,
        citations,
        confidence,
        unsure,
        no_manuals,
        escalated,
        ticket,
    }))
}

/// What a turn showed the person, stored with it (`chat_turns.shown`).
#[derive(Debug, Serialize)]
struct Shown<'a> {
    sentences: &'a [SentenceView],
    unsure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_manuals: bool,
}

#[derive(Debug, Deserialize)]
struct StoredShown {
    sentences: Vec<SentenceView>,
    unsure: bool,
    #[serde(default)]
    no_manuals: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    pub conversation: String,
}

/// One turn as a reloaded chat shows it again.
#[derive(Debug, Serialize)]
pub struct HistoryTurn {
    pub turn: i64,
    pub at: String,
    pub question: String,
    pub sentences: Vec<SentenceView>,
    pub citations: Vec<CitationView>,
    pub unsure: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_manuals: bool,
}

#[derive(Debug, Serialize)]
pub struct HistoryReply {
    pub conversation: String,
    pub turns: Vec<HistoryTurn>,
    /// Agents' replies on any of the conversation's tickets, oldest first.
    pub replies: Vec<serde_json::Value>,
    /// The ticket still open, if any: the chat listens for replies again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketView>,
    /// The conversation's last ticket was closed (the chat says so, and offers a person again).
    pub closed: bool,
    /// That closed ticket's number: the chat goes on listening, and an agent may reopen it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_ticket: Option<i64>,
}

/// Whether `conversation` is one the caller may read back: a well-formed id of a conversation held
/// under the caller's role. On a shared tablet a technician signs out and a visitor opens the same
/// tab; the technician's answers (and agents' replies) are not the visitor's to read.
async fn held_by_caller(
    app: &AppState,
    headers: &HeaderMap,
    conversation: &str,
) -> Result<bool, AppError> {
    if !crate::support::is_conversation_id(conversation) {
        return Ok(false);
    }
    let role = crate::site::role_of(app, headers).await?;
    Ok(app.store.conversation_role(conversation).await?.as_deref() == Some(role.as_str()))
}

/// `POST /api/chat/history`: a conversation as the person's chat showed it (their questions, the
/// answers with citations, agents' replies, the open ticket), so a phone that reloaded the page or
/// dropped the tab picks it up again. The id travels in the body, not the URL; knowing it is what
/// allows it, as for the chat itself. The reader's language is the conversation's ticket's, else
/// `lang`.
/// Whether `request` repeats the message that stored `previous`: the same text, in the same
/// conversation (or none named yet: a first message retried), from the role that holds it.
async fn is_repeat(
    app: &AppState,
    role: crate::roles::Role,
    request: &ChatRequest,
    previous: &crate::store::RequestedTurn,
) -> Result<bool, AppError> {
    let same_conversation = request
        .conversation
        .as_deref()
        .is_none_or(|c| c == previous.conversation_id);
    Ok(same_conversation
        && previous.question == request.message.trim()
        && app
            .store
            .conversation_role(&previous.conversation_id)
            .await?
            .as_deref()
            == Some(role.as_str()))
}

/// The reply a repeated message gets (see `is_repeat`): its stored turn as first answered, with
/// the conversation's ticket as it is now.
async fn replayed(
    app: &AppState,
    previous: crate::store::RequestedTurn,
) -> Result<Result<ChatReply, Refusal>, AppError> {
    let Some((asset_id, _)) = app.store.conversation(&previous.conversation_id).await? else {
        return Ok(Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown conversation",
        )));
    };
    // Told again that the machine has no manual, not that the (absent) closest parts may not answer.
    let (sentences, unsure, no_manuals) = shown_of(&previous.answer, previous.shown.as_deref());
    let ticket = open_ticket_view(app, &previous.conversation_id, &asset_id).await?;
    Ok(Ok(ChatReply {
        conversation: previous.conversation_id,
        turn: previous.id,
        answer: previous.answer,
        sentences,
        citations: serde_json::from_str(&previous.citations).unwrap_or_default(),
        confidence: previous.confidence,
        unsure,
        no_manuals,
        escalated: previous.escalated,
        ticket,
    }))
}

/// The sentences and "not sure" flag a turn showed, from its stored `shown` JSON.
fn shown_of(answer: &str, shown: Option<&str>) -> (Vec<SentenceView>, bool, bool) {
    match shown.and_then(|s| serde_json::from_str::<StoredShown>(s).ok()) {
        Some(shown) => (shown.sentences, shown.unsure, shown.no_manuals),
        // A turn from before `shown` was stored: its answer text as one paragraph.
        None if answer.is_empty() => (Vec::new(), false, false),
        None => (
            vec![SentenceView {
                text: answer.to_string(),
                citation: 0,
            }],
            false,
            false,
        ),
    }
}

/// The conversation's open ticket as the chat shows it (in the ticket's language), if it has one.
async fn open_ticket_view(
    app: &AppState,
    conversation: &str,
    asset_id: &str,
) -> Result<Option<TicketView>, AppError> {
    let Some(ticket_id) = app.store.open_ticket(conversation).await? else {
        return Ok(None);
    };
    let record = app.store.ticket(ticket_id).await?;
    let language = record.as_ref().map_or("en", |r| r.language.as_str());
    // The ticket's queue (an agent may have moved it), else its asset's.
    let queue_id = match &record {
        Some(ticket) => Some(ticket.queue_id.clone()),
        None => app.store.asset(asset_id).await?.map(|a| a.queue_id),
    };
    Ok(Some(
        ticket_view_in(app, ticket_id, queue_id.as_deref(), language).await?,
    ))
}

/// The chat's view of ticket `id` in support queue `queue_id` (its name and hours, in the time of
/// the queue's site), in `lang`.
async fn ticket_view_in(
    app: &AppState,
    id: i64,
    queue_id: Option<&str>,
    lang: &str,
) -> Result<TicketView, AppError> {
    let queue = match queue_id {
        Some(queue_id) => app.store.queue(queue_id).await?,
        None => None,
    };
    let timezone = match &queue {
        Some(q) => app.store.site(&q.site_id).await?.map(|s| s.timezone),
        None => None,
    };
    Ok(ticket_view(
        id,
        queue.as_ref(),
        timezone.as_deref(),
        crate::i18n::strings(lang),
        app.now(),
    ))
}

pub async fn history(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<HistoryRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let request = match json_body(body, "history") {
        Ok(request) => request,
        Err(refused) => return Ok(refused),
    };
    let id = request.conversation;
    if !crate::support::is_conversation_id(&id) {
        return Ok(error(StatusCode::NOT_FOUND, "unknown conversation"));
    }
    let Some((asset_id, _)) = app.store.conversation(&id).await? else {
        return Ok(error(StatusCode::NOT_FOUND, "unknown conversation"));
    };
    if !held_by_caller(&app, &headers, &id).await? {
        return Ok(error(StatusCode::NOT_FOUND, "unknown conversation"));
    }
    let turns = app
        .store
        .shown_turns(&id)
        .await?
        .into_iter()
        .map(|(turn, at, question, answer, citations, shown)| {
            let citations: Vec<CitationView> = serde_json::from_str(&citations).unwrap_or_default();
            let (sentences, unsure, no_manuals) = shown_of(&answer, shown.as_deref());
            HistoryTurn {
                turn,
                at,
                question,
                sentences,
                citations,
                unsure,
                no_manuals,
            }
        })
        .collect();
    let replies = app
        .store
        .replies_to_conversation(&id, 0)
        .await?
        .into_iter()
        // As the live stream sends them: never the agent's name.
        .map(|m| serde_json::json!({"id": m.id, "ticket": m.ticket_id, "text": m.body, "at": m.at}))
        .collect();
    let ticket = open_ticket_view(&app, &id, &asset_id).await?;
    let closed_ticket = match ticket {
        Some(_) => None,
        None => app
            .store
            .latest_ticket(&id)
            .await?
            .filter(|(_, status)| status == "closed")
            .map(|(ticket, _)| ticket),
    };
    Ok(crate::account::no_store(
        Json(HistoryReply {
            conversation: id,
            turns,
            replies,
            ticket,
            closed: closed_ticket.is_some(),
            closed_ticket,
        })
        .into_response(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub conversation: String,
    pub turn: i64,
    /// `up` or `down`.
    pub vote: String,
}

/// `POST /api/chat/feedback`: thumbs up or down on one answer, stored with its turn. Knowing the
/// conversation's random id is what allows it; a vote can be changed.
pub async fn feedback(
    State(app): State<AppState>,
    body: Result<Json<FeedbackRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let request = match json_body(body, "feedback") {
        Ok(request) => request,
        Err(refused) => return Ok(refused),
    };
    let vote = match request.vote.as_str() {
        "up" => 1,
        "down" => -1,
        _ => {
            return Ok(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "vote is up or down",
            ))
        }
    };
    if app
        .store
        .set_chat_feedback(&request.conversation, request.turn, vote)
        .await?
    {
        Ok(Json(serde_json::json!({"ok": true})).into_response())
    } else {
        Ok(error(
            StatusCode::NOT_FOUND,
            "no such turn in this conversation",
        ))
    }
}

/// The form that asks for support's replies without JavaScript.
#[derive(Debug, Deserialize, Default)]
pub struct RepliesForm {
    #[serde(default)]
    pub asset: String,
    #[serde(default)]
    pub conversation: String,
    #[serde(default)]
    pub lang: String,
}

/// `POST /chat/replies`: support's replies to a conversation as a page, for a chat without
/// JavaScript (which has no live stream): a person waiting on a ticket checks without sending a
/// message. As `POST /api/chat/history`, only to the role the conversation was held under.
pub async fn replies_form(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<RepliesForm>,
) -> Result<Response, AppError> {
    use askama::Template;
    let lang = crate::i18n::interface_language(&form.lang);
    let t = crate::i18n::strings(&lang);
    if !held_by_caller(&app, &headers, &form.conversation).await? {
        let page = crate::views::ChatRefusedPage {
            machine: crate::views::MachineLink::to(&app.store, &form.asset, &lang).await?,
            request: crate::auth::random_token(16),
            t,
            lang,
            heading: t.heading_check.to_string(),
            message: t.chat_unknown_conversation.to_string(),
            asset_id: form.asset,
            conversation: String::new(),
            question: String::new(),
            contact: String::new(),
        }
        .render()?;
        return Ok((StatusCode::NOT_FOUND, axum::response::Html(page)).into_response());
    }
    let replies = app
        .store
        .replies_to_conversation(&form.conversation, 0)
        .await?;
    // Closed by an agent (perhaps after phoning) or by retention: without a live stream, this is
    // where the person learns it, rather than "no reply yet" for ever.
    let closed = app
        .store
        .latest_ticket(&form.conversation)
        .await?
        .is_some_and(|(_, status)| status == "closed");
    let page = crate::views::ChatRepliesPage {
        machine: crate::views::MachineLink::to(&app.store, &form.asset, &lang).await?,
        closed,
        request: crate::auth::random_token(16),
        t,
        lang,
        asset_id: form.asset,
        conversation: form.conversation,
        replies,
    }
    .render()?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(page),
    )
        .into_response())
}

/// The page's ask form: the same turn without JavaScript.
#[derive(Debug, Deserialize, Default)]
pub struct ChatForm {
    #[serde(default)]
    pub asset: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub conversation: String,
    #[serde(default)]
    pub lang: String,
    #[serde(default)]
    pub contact: String,
    /// Random per drawing of the form: the same form sent again (a reload that resubmits it) is
    /// answered with what the first sending stored.
    #[serde(default)]
    pub request: String,
}

pub async fn chat_form(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    crate::http::LenientForm(form): crate::http::LenientForm<ChatForm>,
) -> Result<Response, AppError> {
    use askama::Template;
    let role = crate::site::role_of(&app, &headers).await?;
    let lang = crate::i18n::interface_language(&form.lang);
    let first = first_message_request(&headers, &form);
    let request = ChatRequest {
        code: None,
        asset: Some(form.asset.clone()).filter(|a| !a.is_empty()),
        message: form.message.clone(),
        conversation: Some(form.conversation.clone()).filter(|c| !c.is_empty()),
        lang: Some(lang.clone()),
        contact: Some(form.contact.clone()),
        request: Some(first.unwrap_or_else(|| form.request.clone())),
    };
    match answer_turn(&app, role, client_of(&extensions), request).await? {
        Ok(reply) => {
            let replies = app
                .store
                .replies_to_conversation(&reply.conversation, 0)
                .await?;
            let page = crate::views::ChatPage {
                machine: crate::views::MachineLink::to(&app.store, &form.asset, &lang).await?,
                request: crate::auth::random_token(16),
                replies,
                t: crate::i18n::strings(&lang),
                lang,
                asset_id: form.asset,
                question: form.message.trim().to_string(),
                reply,
            }
            .render()?;
            Ok((
                [(axum::http::header::CACHE_CONTROL, "no-store")],
                axum::response::Html(page),
            )
                .into_response())
        }
        Err(refusal) => {
            let t = crate::i18n::strings(&lang);
            let heading = match refusal.status {
                StatusCode::TOO_MANY_REQUESTS => t.heading_wait,
                StatusCode::SERVICE_UNAVAILABLE => t.heading_busy,
                _ => t.heading_check,
            };
            let conversation_unusable =
                matches!(refusal.status, StatusCode::NOT_FOUND | StatusCode::GONE);
            let page = crate::views::ChatRefusedPage {
                machine: crate::views::MachineLink::to(&app.store, &form.asset, &lang).await?,
                request: crate::auth::random_token(16),
                t: crate::i18n::strings(&lang),
                lang,
                heading: heading.to_string(),
                message: refusal.message,
                asset_id: form.asset,
                conversation: if conversation_unusable {
                    String::new()
                } else {
                    form.conversation
                },
                question: form.message,
                contact: form.contact,
            }
            .render()?;
            // It shows the question and contact back: not for a shared tablet's back button.
            Ok(crate::http::with_retry_after(
                (
                    refusal.status,
                    [(axum::http::header::CACHE_CONTROL, "no-store")],
                    axum::response::Html(page),
                )
                    .into_response(),
                refusal.retry_after,
            ))
        }
    }
}

/// For a first message from a machine's page (no conversation, no request id): the request id it
/// is sent under, made from the page view it was sent from (`scan::VIEW_COOKIE`, new at every
/// drawing of the page) and the form's fields. The page is the same for everyone and carries no
/// request id of its own; going back to an answer and sending its form again (which browsers
/// offer) is then the same request, answered with its stored turn and ticket, instead of a second
/// conversation and ticket whose replies the person never sees. Anyone who opens the page afresh
/// (the next person on a shared tablet) has another view, so another id: a conversation is never
/// handed to someone else. `None` without a view (the page was not drawn here, or long ago).
fn first_message_request(headers: &HeaderMap, form: &ChatForm) -> Option<String> {
    if !form.conversation.is_empty() || !form.request.trim().is_empty() {
        return None;
    }
    let view = crate::http::cookie(headers, crate::scan::VIEW_COOKIE)
        .filter(|v| (16..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit()))?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(
        format!(
            "{view}\n{}\n{}\n{}",
            form.asset,
            form.message.trim(),
            form.contact.trim()
        )
        .as_bytes(),
    );
    Some(hex::encode(&digest[..16]))
}

/// The client's address prefix (never the whole address), when the server knows the peer.
pub(crate) fn client_of(extensions: &axum::http::Extensions) -> Option<String> {
    crate::http::peer_of(extensions).map(crate::http::ip_prefix)
}

/// Earlier turns as the engine reads them: the user's questions and the assistant's answers.
fn history_of(turns: &[(String, String)]) -> Vec<String> {
    let from = turns.len().saturating_sub(HISTORY_TURNS);
    turns[from..]
        .iter()
        .flat_map(|(q, a)| [format!("user: {q}"), format!("agent: {a}")])
        .collect()
}

async fn asset_of(
    app: &AppState,
    request: &ChatRequest,
) -> Result<Option<(AssetRecord, Option<String>)>, AppError> {
    if let Some(code) = request.code.as_deref() {
        if !is_well_formed_code(code) {
            return Ok(None);
        }
        let resolved = app.store.resolve_code(code).await?;
        return Ok(resolved
            .filter(|r| r.code.retired_at.is_none())
            .and_then(|r| r.asset.clone())
            .map(|a| (a, Some(code.to_string()))));
    }
    match request.asset.as_deref() {
        Some(id) if id.len() <= 64 => Ok(app.store.listed_asset(id).await?.map(|a| (a, None))),
        _ => Ok(None),
    }
}

/// Support hours as the registry writes them (`Mon-Fri 07:00-18:00`), with the English weekday
/// abbreviations in the person's language.
pub(crate) fn in_weekdays_of(hours: &str, t: &crate::i18n::Strings) -> String {
    const ENGLISH: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut out = String::with_capacity(hours.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match ENGLISH.iter().position(|d| *d == word.as_str()) {
            Some(i) => out.push_str(t.weekdays[i]),
            None => out.push_str(word),
        }
        word.clear();
    };
    for c in hours.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// What the person is told when a ticket opens: who will answer, and when, in the site's time.
fn ticket_view(
    id: i64,
    queue: Option<&QueueRecord>,
    timezone: Option<&str>,
    t: &crate::i18n::Strings,
    now: chrono::DateTime<chrono::Utc>,
) -> TicketView {
    let (name, hours) = queue.map_or((t.support_reply.to_string(), String::new()), |q| {
        (q.name.clone(), q.hours.clone())
    });
    let mut next = t
        .ticket_next
        .replace("{queue}", &name)
        .replace("{id}", &id.to_string());
    if !hours.is_empty() {
        let shown_hours = in_weekdays_of(&hours, t);
        let when = match timezone.and_then(|tz| tz.parse::<chrono_tz::Tz>().ok()) {
            Some(tz) => {
                use chrono::Datelike;
                let local = now.with_timezone(&tz);
                let day = t.weekdays[local.weekday().num_days_from_monday() as usize];
                t.ticket_hours_local
                    .replace("{hours}", &shown_hours)
                    .replace("{zone}", tz.name())
                    .replace("{now}", &format!("{day} {}", local.format("%H:%M")))
            }
            None => shown_hours,
        };
        next.push_str(&format!(" ({when})"));
    }
    next.push('.');
    TicketView {
        id,
        queue: name,
        hours,
        next,
    }
}

impl TicketView {
    /// The view of a message sent to the agent who has the ticket.
    fn sent_to_agent(self, t: &crate::i18n::Strings) -> Self {
        let next = t
            .ticket_sent
            .replace("{queue}", &self.queue)
            .replace("{id}", &self.id.to_string());
        Self { next, ..self }
    }
}

/// What a chat turn on an asset searches: the asset's manuals, the sections `role` may read, and
/// public material only. `scanaid eval answerability --as-served` asks its questions through this
/// too, so the eval and the chat cannot drift apart.
pub fn chat_filters(manuals: Vec<String>, role: crate::roles::Role) -> Filters {
    Filters {
        manuals,
        audiences: role.audiences().iter().map(|s| s.to_string()).collect(),
        owner: OwnerScope::Public,
        ..Filters::default()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_says_when_the_queue_works_in_the_sites_time() {
        let queue = QueueRecord {
            id: "biomed".into(),
            name: "Biomedical Engineering".into(),
            site_id: "s".into(),
            hours: "Mon-Fri 07:00-18:00".into(),
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let en = ticket_view(
            12,
            Some(&queue),
            Some("America/Chicago"),
            crate::i18n::strings("en"),
            now,
        );
        assert_eq!(
            en.next,
            "Biomedical Engineering will see ticket 12 with this conversation and answer here (Mon-Fri 07:00-18:00, America/Chicago time; it is Tue 21:00 there now)."
        );
        let es = ticket_view(
            12,
            Some(&queue),
            Some("America/Chicago"),
            crate::i18n::strings("es"),
            now,
        );
        assert!(
            es.next
                .starts_with("Biomedical Engineering verá la incidencia 12"),
            "{}",
            es.next
        );
        assert!(
            es.next.contains(
                "(lun-vie 07:00-18:00, hora de America/Chicago; allí es ahora mar 21:00)"
            ),
            "weekdays in Spanish too: {}",
            es.next
        );
        let no_queue = ticket_view(3, None, None, crate::i18n::strings("en"), now);
        assert_eq!(
            no_queue.next,
            "Support will see ticket 3 with this conversation and answer here."
        );
    }

    #[test]
    fn a_question_searched_twice_is_embedded_once() {
        use scanaid_models::Embedder;
        struct Counting(std::sync::atomic::AtomicUsize);
        impl Embedder for Counting {
            fn model_id(&self) -> &str {
                "counting"
            }
            fn dim(&self) -> usize {
                1
            }
            fn embed_queries(&self, texts: &[&str]) -> scanaid_models::Result<Vec<Vec<f32>>> {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
            }
            fn embed_passages(&self, texts: &[&str]) -> scanaid_models::Result<Vec<Vec<f32>>> {
                self.embed_queries(texts)
            }
        }
        let inner = Counting(std::sync::atomic::AtomicUsize::new(0));
        let remembered = RememberedQueries {
            inner: &inner,
            last: std::sync::Mutex::new(None),
        };
        let a = remembered.embed_queries(&["pump alarm"]).unwrap();
        assert_eq!(remembered.embed_queries(&["pump alarm"]).unwrap(), a);
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        remembered.embed_queries(&["other"]).unwrap();
        assert_eq!(inner.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn people_asking_for_a_person_are_heard() {
        assert!(asks_for_a_person("Can I talk to a person please"));
        assert!(asks_for_a_person("quiero hablar con una persona"));
        assert!(asks_for_a_person("Hablar con una persona"));
        assert!(asks_for_a_person("¿Puedo hablar con un agente?"));
        assert!(!asks_for_a_person("how do I prime the pump"));
        // Ordinary questions that only contain the words.
        assert!(!asks_for_a_person(
            "¿Puedo limpiarla con un agente desinfectante?"
        ));
        assert!(!asks_for_a_person(
            "¿Puede una persona sola mover la bomba?"
        ));
    }

    #[test]
    fn a_request_for_a_person_alone_has_nothing_to_look_up() {
        assert!(!asks_more_than_a_person("Talk to a person"));
        // The call-back form's own messages, in both languages, are bare requests: the
        // assistant does not run for them.
        for language in crate::i18n::UI_LANGUAGES {
            let message = crate::i18n::strings(language).call_back_message;
            assert!(
                asks_for_a_person(message) && !asks_more_than_a_person(message),
                "{language}: {message}"
            );
        }
        assert!(!asks_more_than_a_person(
            "please, I need to speak to a real person now"
        ));
        assert!(!asks_more_than_a_person(
            "Quiero hablar con una persona, por favor"
        ));
        assert!(asks_more_than_a_person(
            "the pump keeps alarming, can I talk to a person"
        ));
        assert!(asks_more_than_a_person(
            "E-204 on the display, talk to someone"
        ));
    }

    #[test]
    fn follow_ups_carry_the_last_turns_oldest_first() {
        let turns: Vec<(String, String)> =
            (0..5).map(|i| (format!("q{i}"), format!("a{i}"))).collect();
        let history = history_of(&turns);
        assert_eq!(history.first().unwrap(), "user: q2");
        assert_eq!(history.last().unwrap(), "agent: a4");
        assert_eq!(history.len(), 6);
    }
}
