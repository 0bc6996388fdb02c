//! Patients' own documents in retrieval, and their chat. Packet documents are indexed with the packet
//! as `owner`; a patient's question searches only the documents of their own packet (the care team's
//! note and the leaflets copied into it), never the public leaflets: those are for other conditions
//! (a heart-failure patient asking about showering must not get the knee-surgery wound advice), and a
//! leaflet in their packet is there already. Every other route searches `OwnerScope::Public` and
//! never sees an owned chunk.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use scanaid_indexer::manual::{Manual, ManualMeta};
use scanaid_indexer::{Filters, Mode, OwnerScope, SearchRequest};

use crate::chat::{CitationView, Refusal, SentenceView, MAX_MESSAGE_CHARS};
use crate::patients::PATIENT_COOKIE;
use crate::{http, AppError, AppState};

/// The index id of a packet document: unique, and nothing about the patient.
pub fn document_id(packet: &str, document: i64) -> String {
    format!(
        "{}{packet}-{document}",
        scanaid_indexer::manual::PACKET_ID_PREFIX
    )
}

/// Every packet document as a manual owned by its packet.
pub async fn packet_manuals(app: &AppState) -> Result<Vec<Manual>, AppError> {
    let rows: Vec<(String, String, String, i64, String, String)> = sqlx::query_as(
        "SELECT k.id, k.language, k.created_at, d.id, d.title, d.markdown
         FROM packet_documents d JOIN packets k ON k.id = d.packet_id ORDER BY d.id",
    )
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    Ok(rows
        .into_iter()
        .map(
            |(packet, language, created_at, id, title, markdown)| Manual {
                meta: ManualMeta {
                    id: document_id(&packet, id),
                    title,
                    models: Vec::new(),
                    audience: vec!["patient".to_string()],
                    language,
                    revision: created_at.chars().take(10).collect(),
                    owner: Some(packet.clone()),
                    checks: Vec::new(),
                    check_tolerance: 0,
                },
                body: markdown,
                body_line: 1,
                path: PathBuf::from(format!("packet {packet}")),
            },
        )
        .collect())
}

/// Makes the served index hold exactly the packet documents the store has: if it does not, builds a
/// new generation from the manuals folder plus those documents (only new chunks are embedded) and
/// swaps it in. Needs `config.demo_manuals` and `config.index_dir`; does nothing without them.
pub async fn ensure_packets_indexed(app: &AppState) -> Result<bool, AppError> {
    if app.config.demo_manuals.is_none() || app.config.index_dir.is_none() {
        return Ok(false);
    }
    let _building = app.reindex.lock().await;
    let documents = packet_manuals(app).await?;
    let wanted: BTreeSet<&str> = documents.iter().map(|d| d.meta.id.as_str()).collect();
    let index = app.index();
    let indexed: BTreeSet<&str> = index
        .chunks()
        .iter()
        .filter(|c| c.owner.is_some())
        .map(|c| c.manual_id.as_str())
        .collect();
    if wanted == indexed {
        return Ok(false);
    }
    let removed = indexed.difference(&wanted).next().is_some();
    drop(index);
    crate::reindex::rebuild_locked(app, Box::new(|_, _| {}), None).await?;
    if removed {
        forget_older_generations(app).await?;
    }
    Ok(true)
}

/// Deletes every index generation but the one served, and the cached embeddings it does not use.
/// Older generations are kept for rollback, but they hold the text of documents deleted since (a
/// patient's, deleted on request), and the cache their vectors: neither may stay on disk until
/// later builds happen to push them out.
async fn forget_older_generations(app: &AppState) -> Result<(), AppError> {
    let Some(index_dir) = app.config.index_dir.clone() else {
        return Ok(());
    };
    let forgotten = tokio::task::spawn_blocking(move || {
        scanaid_indexer::build::forget_all_but_current(&index_dir)
    })
    .await?
    .map_err(crate::ServerError::from)?;
    tracing::info!(
        ?forgotten,
        "older index generations and unused embeddings deleted after a packet's deletion"
    );
    Ok(())
}

/// `ensure_packets_indexed` on a task of its own, for a request that changed packets and must not
/// wait seconds for the build.
pub fn reindex_in_background(app: &AppState) {
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(error) = ensure_packets_indexed(&app).await {
            tracing::error!(error = ?error.0, "indexing the packets' documents");
        }
    });
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientQuestion {
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PatientAnswer {
    pub answer: String,
    pub sentences: Vec<SentenceView>,
    pub citations: Vec<CitationView>,
    pub confidence: f64,
    pub unsure: bool,
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /api/patient/chat {"message"}`: a question from a signed-in patient, answered from their
/// own documents and public patient education, in their packet's language first. The question is
/// not stored.
pub async fn ask(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Json<PatientQuestion>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Some(packet) = session_packet(&app, &headers).await? else {
        return Ok(refuse(
            StatusCode::UNAUTHORIZED,
            "open your instructions first: scan the code on your papers",
        ));
    };
    let question = match body {
        Ok(Json(q)) => q.message,
        Err(rejection) => {
            return Ok(refuse(
                rejection.status(),
                &format!("the request is not a question: {}", rejection.body_text()),
            ))
        }
    };
    let client = crate::chat::client_of(&extensions);
    Ok(
        match answer_patient(&app, &packet, &question, client.as_deref()).await? {
            Ok(answer) => crate::account::no_store(Json(answer).into_response()),
            Err(refusal) => crate::http::with_retry_after(
                refuse(refusal.status, &refusal.message),
                refusal.retry_after,
            ),
        },
    )
}

/// The packet of the request's live patient session.
pub async fn session_packet(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<crate::patients::PacketRecord>, AppError> {
    let packet = match http::cookie(headers, PATIENT_COOKIE) {
        Some(token) => app.store.patient_session(token).await?,
        None => None,
    };
    Ok(match packet {
        Some(id) => app
            .store
            .packet(&id)
            .await?
            .filter(|p| !crate::patient_pages::past_its_limit(app, p)),
        None => None,
    })
}

/// Answers one patient question about their packet: the core of the JSON API and the page's form.
pub async fn answer_patient(
    app: &AppState,
    packet: &crate::patients::PacketRecord,
    question: &str,
    client: Option<&str>,
) -> Result<Result<PatientAnswer, Refusal>, AppError> {
    // Refusals are told in the packet's language, as the rest of the patient's page is.
    let t = crate::i18n::strings(&packet.language);
    let question = question.trim().to_string();
    if question.is_empty() || question.chars().count() > MAX_MESSAGE_CHARS {
        return Ok(Err(Refusal::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            t.patient_question_length
                .replace("{max}", &MAX_MESSAGE_CHARS.to_string()),
        )));
    }
    // Per packet only: a signed-in patient shares the ward's address with everyone else's phones,
    // and anonymous traffic from it must not silence them.
    if let Some(wait) = app
        .chat
        .over_limit(Some(&format!("packet:{}", packet.id)), None)
    {
        return Ok(Err(Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            t.patient_too_many,
        )
        .retry_after(wait)));
    }
    let mut own_documents: Vec<String> = app
        .store
        .packet_documents(&packet.id)
        .await?
        .iter()
        .map(|d| document_id(&packet.id, d.id))
        .collect();
    if own_documents.is_empty() {
        // An empty list would mean "every manual": name one no document has (ids start at 1).
        own_documents.push(document_id(&packet.id, 0));
    }
    let search = SearchRequest {
        query: question,
        history: Vec::new(),
        filters: Filters {
            manuals: own_documents,
            audiences: vec!["patient".to_string()],
            owner: OwnerScope::PublicAnd(packet.id.clone()),
            ..Filters::default()
        },
        limit: 20,
        mode: Mode::Hybrid,
        language: Some(packet.language.clone()),
    };
    let started = std::time::Instant::now();
    let reply = match crate::chat::run_assistant(app, search, Some(packet.language.clone())).await?
    {
        Ok(reply) => reply,
        Err(refusal) if refusal.status == StatusCode::SERVICE_UNAVAILABLE => {
            return Ok(Err(Refusal {
                message: t.patient_busy.to_string(),
                ..refusal
            }))
        }
        Err(refusal) => return Ok(Err(refusal)),
    };
    let outcome = if reply.unsure { "unsure" } else { "answered" };
    app.metrics
        .chat_turn("patient", outcome, started.elapsed().as_secs_f64());
    // Their own documents are on the page the answer is shown on: a citation jumps to the document
    // there (reloading the page would lose the answer). Leaflets have public pages.
    let (sentences, citations) = crate::chat::views_of(&reply.extract, |c| {
        if c.manual_id.starts_with("packet-") {
            format!("#{}", c.manual_id)
        } else {
            CitationView::section_url(c)
        }
    });
    app.store
        .audit("patient", "chat.asked", Some(&packet.id), "", client)
        .await?;
    Ok(Ok(PatientAnswer {
        answer: sentences
            .iter()
            .map(|s| format!("{} [{}]", s.text, s.citation))
            .collect::<Vec<_>>()
            .join("\n"),
        sentences,
        citations,
        confidence: reply.confidence,
        unsure: reply.unsure,
    }))
}
