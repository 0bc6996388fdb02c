//! The content API for pipelines (`/api/content`, `Authorization: Bearer TOKEN` from
//! `/admin/tokens`): list, check, publish, job status and rollback, the same operations and rules as
//! the editors' pages, answered in JSON. The README has a curl example of each.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::chat::{error, json_body};
use crate::content;
use crate::content_admin::{check_against_corpus, manual_files, relative};
use crate::{AppError, AppState};

/// The pipeline's name, or the 401 to answer with.
async fn authorise(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Result<String, Response>, AppError> {
    match crate::api_tokens::bearer_actor(app, headers).await? {
        Some(actor) => Ok(Ok(actor)),
        None => {
            let mut refused = error(
                StatusCode::UNAUTHORIZED,
                "a content API token is needed: Authorization: Bearer TOKEN (an administrator creates one at /admin/tokens)",
            );
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("valid header"),
            );
            Ok(Err(refused))
        }
    }
}

macro_rules! authorised {
    ($app:expr, $headers:expr) => {
        match authorise(&$app, &$headers).await? {
            Ok(actor) => actor,
            Err(refused) => return Ok(refused),
        }
    };
}

fn no_manuals() -> Response {
    error(
        StatusCode::CONFLICT,
        "this server was started without a manuals folder; nothing can be published",
    )
}

/// `GET /api/content/manuals`.
pub async fn list(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    authorised!(app, headers);
    let Some(dir) = app.config.demo_manuals.clone() else {
        return Ok(no_manuals());
    };
    let index = app.index();
    let (manuals, broken) = manual_files(&dir);
    let rows: Vec<_> = manuals
        .iter()
        .map(|m| {
            let served: Vec<&str> = index
                .chunks()
                .iter()
                .filter(|c| c.owner.is_none() && c.manual_id == m.meta.id)
                .map(|c| c.revision.as_str())
                .collect();
            json!({
                "id": m.meta.id,
                "title": m.meta.title,
                "file": relative(&dir, &m.path),
                "revision": m.meta.revision,
                "language": m.meta.language,
                "audiences": m.meta.audience,
                "models": m.meta.models,
                "chunks": served.len(),
                "served_revision": served.first(),
                "version": std::fs::read_to_string(&m.path).map(|t| content::text_version(&t)).ok(),
            })
        })
        .collect();
    Ok(Json(json!({
        "generation": index.generation,
        "manuals": rows,
        "broken": broken.iter().map(|(why, _)| why).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualBody {
    pub markdown: String,
    /// The manual's `version` (from `GET /api/content/manuals`) the text was made from: given, a
    /// publish over a newer text is refused (409) instead of undoing it.
    #[serde(default)]
    pub base: Option<String>,
    /// Replace an existing manual without naming the version replaced (audited as such): a
    /// pipeline that owns the text outright. Without it, a `PUT` over an existing manual needs
    /// `base`, so a sync never silently undoes an editor's change.
    #[serde(default)]
    pub force: bool,
}

/// `POST /api/content/manuals/{id}/check`: every problem with its line, and the chunks.
pub async fn check(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
    body: Result<Json<ManualBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Submitted {
        checked, findings, ..
    } = match submitted(&app, &headers, &id, body).await? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    Ok(Json(json!({
        "clean": checked.manual.is_some() && findings.is_empty(),
        "findings": findings.iter().map(|f| json!({"line": f.line, "message": f.message})).collect::<Vec<_>>(),
        "chunks": checked.chunks.iter().map(|c| json!({
            "section": c.heading_path.join(" › "),
            "anchor": c.anchor,
            "line": c.line,
            "audiences": c.audiences,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// A manual sent to the API, checked.
struct Submitted {
    actor: String,
    text: String,
    base: Option<String>,
    checked: scanaid_indexer::validate::Checked,
    findings: Vec<scanaid_indexer::validate::Finding>,
    file: Option<std::path::PathBuf>,
    /// The text would replace a manual's file (not make a new one).
    replaces: bool,
    force: bool,
}

/// Authorises the call, reads the body and checks the manual as `id`; or the response to send.
async fn submitted(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    body: Result<Json<ManualBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Result<Submitted, Response>, AppError> {
    let actor = match authorise(app, headers).await? {
        Ok(actor) => actor,
        Err(refused) => return Ok(Err(refused)),
    };
    let body = match json_body(body, "{\"markdown\": \"...\"}") {
        Ok(b) => b,
        Err(r) => return Ok(Err(r)),
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return Ok(Err(no_manuals()));
    };
    let text = body.markdown.replace("\r\n", "\n");
    let (checked, findings, file) = check_against_corpus(app, &dir, id, &text).await?;
    let findings = with_id_check(&checked, findings, id);
    let replaces = file.as_ref().is_some_and(|f| dir.join(f).exists());
    Ok(Ok(Submitted {
        actor,
        text,
        replaces,
        force: body.force,
        base: body.base,
        checked,
        findings,
        file,
    }))
}

/// The manual's id must be the one in the URL.
fn with_id_check(
    checked: &scanaid_indexer::validate::Checked,
    mut findings: Vec<scanaid_indexer::validate::Finding>,
    id: &str,
) -> Vec<scanaid_indexer::validate::Finding> {
    if let Some(manual) = &checked.manual {
        if manual.meta.id != id {
            findings.insert(
                0,
                scanaid_indexer::validate::Finding {
                    line: 2,
                    message: format!(
                        "the front matter's id is {:?} but the URL names {id:?}",
                        manual.meta.id
                    ),
                },
            );
        }
    }
    findings
}

/// `PUT /api/content/manuals/{id}`: checks, then publishes (202 with the job) or answers 422 with
/// every problem; nothing changes on a 4xx.
pub async fn publish(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
    body: Result<Json<ManualBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let Submitted {
        actor,
        text,
        base,
        checked,
        findings,
        file,
        replaces,
        force,
    } = match submitted(&app, &headers, &id, body).await? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let (Some(manual), Some(file), true) = (checked.manual.as_ref(), file, findings.is_empty())
    else {
        app.store
            .content_audit(
                &actor,
                "publish.refused",
                Some(&id),
                None,
                &format!("{} problem(s)", findings.len()),
            )
            .await?;
        return Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "not published: the manual has problems; nothing changed",
                "findings": findings.iter().map(|f| json!({"line": f.line, "message": f.message})).collect::<Vec<_>>(),
            })),
        )
            .into_response());
    };
    let base = base.filter(|b| !b.is_empty());
    let forced = replaces && base.is_none();
    // A new manual is made over no file: if one appears meanwhile (another publish made it), the
    // publish is refused as stale instead of replacing it.
    let base = match base {
        None if !replaces => Some(content::text_version("")),
        base => base,
    };
    if forced && !force {
        return Ok(error(
            StatusCode::PRECONDITION_REQUIRED,
            "say which text this replaces: send \"base\" (the manual's \"version\" from GET /api/content/manuals), or \"force\": true to replace whatever is there now; nothing changed",
        ));
    }
    let started = content::publish(
        &app,
        &manual.meta.id,
        &manual.meta.revision,
        &file,
        &text,
        &actor,
        base.as_deref(),
    )
    .await?;
    if let (true, Ok(job)) = (forced, &started) {
        app.store
            .content_audit(
                &actor,
                "publish.forced",
                Some(&id),
                Some(&manual.meta.revision),
                &format!("job {job}: replaced the text without naming the version it replaces"),
            )
            .await?;
    }
    Ok(job_started(started))
}

/// 202 with the job a publish or deletion started, or 409 saying why it could not start.
fn job_started(started: std::result::Result<i64, content::Refused>) -> Response {
    match started {
        Ok(job) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/api/content/jobs/{job}"))],
            Json(
                json!({"job": job, "status": "running", "url": format!("/api/content/jobs/{job}")}),
            ),
        )
            .into_response(),
        Err(refused) => refusal(refused),
    }
}

/// 409 for a change that cannot start, with a `code` a pipeline acts on without reading the text:
/// `job_running` (retry after `Retry-After` seconds), `stale_base` (the manual changed since the
/// `base` it named: fetch it again, never just retry), else `refused`.
fn refusal(content::Refused(reason): content::Refused) -> Response {
    let code = if reason == content::JOB_RUNNING {
        "job_running"
    } else if reason.starts_with(content::CHANGED_SINCE) {
        "stale_base"
    } else {
        "refused"
    };
    let body = Json(json!({"error": reason, "code": code}));
    if code == "job_running" {
        (
            StatusCode::CONFLICT,
            [(header::RETRY_AFTER, JOB_RETRY_AFTER_S.to_string())],
            body,
        )
            .into_response()
    } else {
        (StatusCode::CONFLICT, body).into_response()
    }
}

/// What a pipeline told "another job is running" waits before trying again: most publishes of the
/// bundled manuals take a few seconds.
const JOB_RETRY_AFTER_S: u64 = 5;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    /// The manual's `version` the caller decided on: given, a deletion of a text changed since is
    /// refused (409) instead of deleting what the caller never saw.
    #[serde(default)]
    pub base: Option<String>,
}

/// `DELETE /api/content/manuals/{id}[?base=VERSION]`: removes the manual and starts the gated
/// re-index (202 with the job, which can be rolled back like a publish); 404 for an unknown manual.
pub async fn delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
    query: Result<axum::extract::Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let actor = authorised!(app, headers);
    // Read strictly: a query that cannot be read (`?base=a&base=b`) or an empty base must not
    // delete without the check it asked for.
    let base = match query {
        Ok(axum::extract::Query(DeleteQuery { base: Some(b) })) if b.trim().is_empty() => {
            return Ok(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "base is empty: give the manual's version from GET /api/content/manuals, or no base",
            ))
        }
        Ok(axum::extract::Query(q)) => q.base,
        Err(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "the query is ?base=VERSION once, or nothing",
            ))
        }
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return Ok(no_manuals());
    };
    let (manuals, _) = manual_files(&dir);
    let Some(manual) = manuals.iter().find(|m| m.meta.id == id) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            format!("there is no manual {id:?}"),
        ));
    };
    let file = relative(&dir, &manual.path);
    Ok(job_started(
        content::delete_manual(&app, &id, &file, &actor, base.as_deref()).await?,
    ))
}

/// The job a path names, if it names one (a non-number names none: 404, not a bare 400).
async fn job_of(app: &AppState, id: &str) -> Result<Option<crate::content::Job>, AppError> {
    match id.parse::<i64>() {
        Ok(id) => Ok(app.store.job(id).await?),
        Err(_) => Ok(None),
    }
}

/// `GET /api/content/jobs/{id}`.
pub async fn job(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
) -> Result<Response, AppError> {
    authorised!(app, headers);
    let Some(job) = job_of(&app, &id).await? else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            format!("there is no job {id}"),
        ));
    };
    let progress = content::progress_of(&app, &job);
    Ok(Json(json!({
        "job": job.id,
        "kind": job.kind,
        "what": job.what,
        "manual": job.manual_id,
        "status": progress.status,
        "done": progress.done,
        "total": progress.total,
        "generation": progress.generation,
        "previous_generation": job.previous_generation,
        "report": progress.report,
        "started_by": job.started_by,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }))
    .into_response())
}

/// `POST /api/content/jobs/{id}/rollback`.
pub async fn rollback(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(raw): crate::http::PathSegment,
) -> Result<Response, AppError> {
    let actor = authorised!(app, headers);
    // Read by hand, as `job` does: a malformed id is an unknown job, in JSON.
    let Ok(id) = raw.parse::<i64>() else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            format!("there is no job {raw}"),
        ));
    };
    if app.store.job(id).await?.is_none() {
        return Ok(error(
            StatusCode::NOT_FOUND,
            format!("there is no job {id}"),
        ));
    }
    match content::rollback(&app, id, &actor).await? {
        Ok(content::RolledBack::Swapped) => Ok(Json(json!({
            "job": id,
            "status": "rolled back",
            "generation": app.index().generation,
        }))
        .into_response()),
        // The index was rebuilt since: a new job publishes the previous text; follow it.
        Ok(content::RolledBack::Republished(job)) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "job": id,
                "status": "republishing the previous text",
                "rollback_job": job,
            })),
        )
            .into_response()),
        Err(refused) => Ok(refusal(refused)),
    }
}
