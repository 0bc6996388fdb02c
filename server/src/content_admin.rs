//! The content editors' pages: `/admin/manuals` lists the manuals with what the site serves of them;
//! the editor checks a text (every problem with its line, and the chunks it would make) and publishes
//! it; a publish's job page shows its progress live and offers the rollback.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use scanaid_indexer::chunking::estimate_tokens;
use scanaid_indexer::validate::{check_manual, Checked};

use crate::account::{require_role, CsrfForm};
use crate::auth::SignedIn;
use crate::content::{self, Progress};
use crate::roles::Role;
use crate::stream_session::StreamSession;
use crate::views::{ChunkRow, FindingRow, JobPage, ManualEditPage, ManualRow, ManualsPage};
use crate::{AppError, AppState};

/// Largest manual accepted (the file itself; the form may be larger by its encoding).
const MAX_MANUAL_BYTES: usize = 512 * 1024;

/// Who keeps the manuals (and may watch their jobs).
const EDITOR_ROLES: &[Role] = &[Role::Editor, Role::Admin];
const EDITOR_REFUSAL: &str = "The manuals are kept by content editors.";

pub(crate) async fn require_editor(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Result<SignedIn, Response>, AppError> {
    require_role(app, headers, EDITOR_ROLES, EDITOR_REFUSAL).await
}

pub(crate) async fn require_editor_posting(
    app: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Result<SignedIn, Response>, AppError> {
    crate::account::require_role_posting(app, headers, EDITOR_ROLES, EDITOR_REFUSAL, csrf).await
}

pub(crate) fn message(
    status: StatusCode,
    heading: &str,
    text: &str,
    back: &str,
) -> Result<Response, AppError> {
    let html = crate::views::MessagePage {
        lang: "en".to_string(),
        heading: heading.to_string(),
        message: text.to_string(),
        back: back.to_string(),
    }
    .render()?;
    Ok(page(status, html))
}

pub(crate) fn page(status: StatusCode, html: String) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The manuals folder's files by manual id: (path relative to the folder, revision, title, meta).
/// The folder's usable manuals, and its files that are not usable manuals as (why, the file
/// relative to the folder; empty when the folder itself could not be read).
pub(crate) fn manual_files(
    dir: &Path,
) -> (Vec<scanaid_indexer::manual::Manual>, Vec<(String, String)>) {
    match scanaid_indexer::manual::load_manuals(dir) {
        // Paths as editors know them: relative to the manuals folder.
        Ok((manuals, problems)) => (
            manuals,
            problems
                .iter()
                .map(|p| {
                    (
                        p.to_string()
                            .replace(&format!("{}/", dir.display()), "")
                            .replace(&dir.display().to_string(), "the manuals folder"),
                        relative(dir, &p.path).display().to_string(),
                    )
                })
                .collect(),
        ),
        Err(e) => (
            Vec::new(),
            vec![(
                format!("the manuals folder: {e}").replace(&dir.display().to_string(), ""),
                String::new(),
            )],
        ),
    }
}

/// The manuals folder and the manual with id `id` in it, or the page that says why there is none.
fn manual_named(
    app: &AppState,
    id: &str,
) -> Result<Result<(PathBuf, scanaid_indexer::manual::Manual), Response>, AppError> {
    let Some(dir) = app.config.demo_manuals.clone() else {
        return Ok(Err(crate::account::forbidden(
            "This server was started without a manuals folder.",
        )?));
    };
    let (manuals, _) = manual_files(&dir);
    match manuals.into_iter().find(|m| m.meta.id == id) {
        Some(manual) => Ok(Ok((dir, manual))),
        None => Ok(Err(message(
            StatusCode::NOT_FOUND,
            "No such manual",
            &format!("There is no manual {id:?}. The list shows every manual."),
            "/admin/manuals",
        )?)),
    }
}

pub(crate) fn relative(dir: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(dir).unwrap_or(path).to_path_buf()
}

/// `GET /admin/manuals`.
pub async fn list(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return crate::account::forbidden("This server was started without a manuals folder.");
    };
    let index = app.index();
    // (chunks, revision served) per manual.
    let mut served: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for c in index.chunks().iter().filter(|c| c.owner.is_none()) {
        let e = served.entry(&c.manual_id).or_insert((0, &c.revision));
        e.0 += 1;
    }
    let (manuals, broken) = manual_files(&dir);
    let rows = manuals
        .iter()
        .map(|m| {
            let (chunks, revision) = served.get(m.meta.id.as_str()).copied().unwrap_or((0, ""));
            ManualRow {
                id: m.meta.id.clone(),
                title: m.meta.title.clone(),
                file: relative(&dir, &m.path).display().to_string(),
                revision: m.meta.revision.clone(),
                language: m.meta.language.clone(),
                audiences: m.meta.audience.join(", "),
                models: m.meta.models.join(", "),
                chunks,
                status: if chunks == 0 {
                    "not indexed yet".to_string()
                } else if revision == m.meta.revision {
                    "served".to_string()
                } else {
                    format!(
                        "file is revision {}, site serves {revision}",
                        m.meta.revision
                    )
                },
            }
        })
        .collect();
    let html = ManualsPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        generation: index.generation.clone(),
        indexed_at: chrono::DateTime::from_timestamp(index.meta.created_unix as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        model: index.meta.model_id.clone(),
        manuals: rows,
        broken,
        jobs: app.store.recent_jobs(10).await?,
        audit: app.store.content_audit_trail(20).await?,
        deleted: crate::manual_history::deleted_manuals(&app, &dir, &manuals).await?,
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

/// What points at manual `id`, as an editor reads it: the other manuals that link to it
/// (`/m/{id}`, with or without an anchor) and the machines the registry lists it for. A deletion or
/// a rename of `id` leaves each pointing at nothing, so the editor is told before doing either.
async fn references_to(app: &AppState, id: &str) -> Result<Vec<String>, AppError> {
    let mut out = Vec::new();
    if let Some(dir) = app.config.demo_manuals.clone() {
        let id_owned = id.to_string();
        let linking = tokio::task::spawn_blocking(move || {
            let (manuals, _) = manual_files(&dir);
            let target = format!("/m/{id_owned}");
            manuals
                .iter()
                .filter(|m| m.meta.id != id_owned && links_to(&m.body, &target))
                .map(|m| {
                    format!(
                        "{} ({}) links to it",
                        m.meta.id,
                        relative(&dir, &m.path).display()
                    )
                })
                .collect::<Vec<_>>()
        })
        .await?;
        out.extend(linking);
    }
    let machines: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM assets
         WHERE dropped_at IS NULL AND EXISTS (SELECT 1 FROM json_each(assets.manuals) WHERE value = ?)
         ORDER BY name",
    )
    .bind(id)
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    if !machines.is_empty() {
        out.push(format!(
            "assets.toml lists it for {} machine(s): {}{}",
            machines.len(),
            machines
                .iter()
                .take(6)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if machines.len() > 6 { ", ..." } else { "" }
        ));
    }
    Ok(out)
}

/// Whether `text` has a link to `target` (`/m/ID`) itself, not to a longer id that starts the same.
fn links_to(text: &str, target: &str) -> bool {
    text.match_indices(target).any(|(at, _)| {
        text[at + target.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    })
}

/// Whether `file` (relative to `dir`) is one of the folder's files that are not usable manuals:
/// the only files the editor opens and writes by name.
fn is_unusable_file(dir: &Path, file: &str) -> bool {
    let (_, broken) = manual_files(dir);
    broken.iter().any(|(_, f)| !f.is_empty() && f == file)
}

/// `is_unusable_file`, off the async workers (it reads and parses the whole folder).
async fn unusable_file(dir: &Path, file: &str) -> Result<bool, AppError> {
    let (dir, file) = (dir.to_path_buf(), file.to_string());
    Ok(tokio::task::spawn_blocking(move || is_unusable_file(&dir, &file)).await?)
}

#[derive(Debug, Deserialize, Default)]
pub struct OpenFileQuery {
    #[serde(default)]
    pub path: String,
}

/// `GET /admin/files/open?path=FILE`: a file of the manuals folder that is not a usable manual
/// (its front matter does not parse, its id is another file's, it is not UTF-8: the manuals list
/// names each with why) in the editor, to be fixed and published back to the same file, through
/// the usual checks and gate. Only such files: any other path is not found.
pub async fn open_broken(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<OpenFileQuery>,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return crate::account::forbidden("This server was started without a manuals folder.");
    };
    let file = query.path.trim().to_string();
    if !unusable_file(&dir, &file).await? {
        return message(
            StatusCode::NOT_FOUND,
            "No such file to fix",
            &format!("{file:?} is not one of the files the manuals list names as not usable."),
            "/admin/manuals",
        );
    }
    let path = dir.join(&file);
    let bytes = std::fs::read(&path).map_err(|source| crate::ServerError::Io {
        path: path.clone(),
        source,
    })?;
    // Not UTF-8: shown with what could not be read as U+FFFD, which the checks point out by line.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let base = content::text_version(&text);
    editor(
        &app,
        &me,
        StatusCode::OK,
        "",
        &base,
        &text,
        None,
        format!("{file} is not a usable manual (the list says why). Fix it here and publish it: it is written back to {file}, through the usual checks."),
        &file,
    )
    .await
}

/// `GET /admin/manuals/new`: an empty manual to start from.
pub async fn new_manual(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let template = "+++\nid = \"new-manual\"\ntitle = \"New manual\"\nmodels = []\naudience = [\"operator\"]\nlanguage = \"en\"\nrevision = \"1\"\n+++\n# Overview\n\n";
    // A new manual starts from no file: if one appears under its name meanwhile, publishing says so.
    let base = content::text_version("");
    editor(
        &app,
        &me,
        StatusCode::OK,
        "",
        &base,
        template,
        None,
        String::new(),
        "",
    )
    .await
}

/// `GET /admin/manuals/{id}`: the manual's file in the editor.
pub async fn edit(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let (_, manual) = match manual_named(&app, &id)? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let text = std::fs::read_to_string(&manual.path).map_err(|source| crate::ServerError::Io {
        path: manual.path.clone(),
        source,
    })?;
    let base = content::text_version(&text);
    editor(
        &app,
        &me,
        StatusCode::OK,
        &id,
        &base,
        &text,
        None,
        String::new(),
        "",
    )
    .await
}

#[derive(Debug, Deserialize, Default)]
pub struct EditForm {
    #[serde(default)]
    pub csrf: String,
    /// The id the manual had when the editor opened it (empty for a new manual).
    #[serde(default)]
    pub original: String,
    #[serde(default)]
    pub markdown: String,
    /// `check` or `publish`.
    #[serde(default)]
    pub action: String,
    /// `content::text_version` of the file as the editor opened it (empty for a new manual).
    #[serde(default)]
    pub base: String,
    /// A file that was not a usable manual, being fixed (relative to the folder): the text goes
    /// back to it (`open_broken`).
    #[serde(default)]
    pub file: String,
}

/// `POST /admin/manuals`: checks the text; with `action=publish` and no problem, publishes it.
pub async fn save(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<EditForm>,
) -> Result<Response, AppError> {
    let me = match require_editor_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return crate::account::forbidden("This server was started without a manuals folder.");
    };
    // Browsers send CRLF from a textarea; files keep LF.
    let text = form.markdown.replace("\r\n", "\n");
    let original = form.original.trim().to_string();
    let fixing = form.file.trim().to_string();
    if !fixing.is_empty() && !unusable_file(&dir, &fixing).await? {
        return message(
            StatusCode::CONFLICT,
            "Not published",
            &format!("{fixing} is not a file to fix any more (someone fixed or removed it meanwhile, or it never was one). Nothing changed; the manuals list shows what needs fixing now."),
            "/admin/manuals",
        );
    }
    let (checked, mut findings, file) = check_against_corpus(&app, &dir, &original, &text).await?;
    // A fixed file keeps its place: the text goes back where it was.
    let file = if fixing.is_empty() {
        file
    } else {
        findings.retain(|f| !f.message.starts_with("the file "));
        file.map(|_| PathBuf::from(&fixing))
    };
    if form.action != "publish" {
        return editor(
            &app,
            &me,
            StatusCode::OK,
            &original,
            &form.base,
            &text,
            Some((&checked, findings)),
            String::new(),
            &fixing,
        )
        .await;
    }
    let Some(manual) = checked.manual.as_ref().filter(|_| findings.is_empty()) else {
        app.store
            .content_audit(
                &me.username,
                "publish.refused",
                checked.manual.as_ref().map(|m| m.meta.id.as_str()),
                None,
                &format!("{} problem(s)", findings.len()),
            )
            .await?;
        let message = "Not published: fix the problems listed below. Nothing changed for readers."
            .to_string();
        return editor(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            &original,
            &form.base,
            &text,
            Some((&checked, findings)),
            message,
            &fixing,
        )
        .await;
    };
    let file = file.expect("a clean manual has a file");
    match content::publish(
        &app,
        &manual.meta.id,
        &manual.meta.revision,
        &file,
        &text,
        &me.username,
        Some(&form.base),
    )
    .await?
    {
        Ok(job) => Ok(Redirect::to(&format!("/admin/jobs/{job}")).into_response()),
        Err(content::Refused(reason)) => {
            findings.clear();
            let conflict = changed_meanwhile(&app, &dir, &file, &form.base, &text).await?;
            editor_with(
                &app,
                &me,
                StatusCode::CONFLICT,
                (&original, &form.base, &text),
                Some((&checked, findings)),
                format!("Not published: {reason}."),
                &fixing,
                conflict,
            )
            .await
        }
    }
}

/// When the file changed since the editor opened it (its version is no longer `base`): what changed
/// meanwhile (from the text the editor started from, when a published revision still holds it) and
/// the editor's `text` against the file now, so the editor can bring their change into the new
/// text instead of retyping it. Empty when the file did not change (another reason refused it).
async fn changed_meanwhile(
    app: &AppState,
    dir: &Path,
    file: &Path,
    base: &str,
    text: &str,
) -> Result<Vec<(String, crate::text_diff::LineDiff, String)>, AppError> {
    let now = std::fs::read(dir.join(file))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    if base.is_empty() || content::text_version(&now) == base {
        return Ok(Vec::new());
    }
    // The text the editor started from, if the site published it (texts of the same file, newest first).
    let texts: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT markdown, previous_markdown FROM manual_revisions WHERE file = ? ORDER BY id DESC LIMIT 50",
    )
    .bind(file.to_string_lossy().as_ref())
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    let started_from = texts
        .into_iter()
        .flat_map(|(after, before)| [Some(after), before])
        .flatten()
        .find(|t| content::text_version(t) == base);
    let text = text.to_string();
    // Diffs of texts up to the manual size limit are CPU work: off the async workers.
    Ok(tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if let Some(started) = started_from {
            out.push((
                "What changed in the file since you opened it".to_string(),
                crate::text_diff::line_diff(&started, &now),
                "meanwhile-diff".to_string(),
            ));
        }
        out.push((
            "Your text against the file now".to_string(),
            crate::text_diff::line_diff(&now, &text),
            "yours-diff".to_string(),
        ));
        out
    })
    .await?)
}

/// Checks `text` as the manual that was `original`: the manual's own problems plus those only the
/// corpus shows (an id another file has, an unknown model). Also the file it would be written to.
pub(crate) async fn check_against_corpus(
    app: &AppState,
    dir: &Path,
    original: &str,
    text: &str,
) -> Result<
    (
        Checked,
        Vec<scanaid_indexer::validate::Finding>,
        Option<PathBuf>,
    ),
    AppError,
> {
    let known_models: BTreeSet<String> = sqlx::query_scalar("SELECT DISTINCT model FROM assets")
        .fetch_all(app.store.pool())
        .await
        .map_err(crate::ServerError::from)?
        .into_iter()
        .collect();
    // Each id's last file, so a deleted manual published again goes back where it was.
    let last_files: BTreeMap<String, String> = sqlx::query_as(
        "SELECT r.manual_id, r.file FROM manual_revisions r
         WHERE r.id = (SELECT MAX(id) FROM manual_revisions WHERE manual_id = r.manual_id)",
    )
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?
    .into_iter()
    .collect();
    // Parsing, chunking and link checking a manual of up to MAX_MANUAL_BYTES is CPU work: off the
    // async workers, which serve scans.
    let (dir, original, text) = (dir.to_path_buf(), original.to_string(), text.to_string());
    Ok(tokio::task::spawn_blocking(move || {
        check_in_corpus(&dir, &original, &text, &known_models, &last_files)
    })
    .await?)
}

/// Where a new manual `id` is written: back at the file it last had when the site once served it
/// (a deleted manual restored keeps its place in the folder's tree) and that path is free and
/// inside the folder; otherwise `{id}.md` at the folder's top.
fn file_for_new_manual(dir: &Path, id: &str, last_files: &BTreeMap<String, String>) -> PathBuf {
    let inside = |file: &Path| {
        file.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
            && file.extension().is_some_and(|e| e == "md")
    };
    match last_files.get(id).map(PathBuf::from) {
        Some(earlier) if inside(&earlier) && !dir.join(&earlier).exists() => earlier,
        _ => PathBuf::from(format!("{id}.md")),
    }
}

/// `check_against_corpus`'s work, given the equipment models the registry knows.
fn check_in_corpus(
    dir: &Path,
    original: &str,
    text: &str,
    known_models: &BTreeSet<String>,
    last_files: &BTreeMap<String, String>,
) -> (
    Checked,
    Vec<scanaid_indexer::validate::Finding>,
    Option<PathBuf>,
) {
    let mut checked = if text.len() > MAX_MANUAL_BYTES {
        let mut c = check_manual(Path::new("edited.md"), b"", known_models);
        c.manual = None;
        c.findings = vec![scanaid_indexer::validate::Finding {
            line: 0,
            message: format!(
                "the manual is {} KB; the limit is {} KB",
                text.len() / 1024,
                MAX_MANUAL_BYTES / 1024
            ),
        }];
        c
    } else {
        check_manual(Path::new("edited.md"), text.as_bytes(), known_models)
    };
    let mut findings = std::mem::take(&mut checked.findings);
    let mut file = None;
    if let Some(manual) = &checked.manual {
        let (manuals, _) = manual_files(dir);
        let id = &manual.meta.id;
        let holder = manuals.iter().find(|m| &m.meta.id == id);
        if original.is_empty() || original != id {
            if let Some(other) = holder {
                findings.insert(
                    0,
                    scanaid_indexer::validate::Finding {
                        line: 2,
                        message: format!(
                            "id {id:?} is already used by {}; choose another",
                            relative(dir, &other.path).display()
                        ),
                    },
                );
            }
        }
        if manual.meta.owner.is_some() {
            findings.insert(
                0,
                scanaid_indexer::validate::Finding {
                    line: 0,
                    message:
                        "`owner` is for patients' documents, which clinicians manage; remove it"
                            .to_string(),
                },
            );
        }
        // Each manual is chunked once however many links point into it.
        let known_anchors = std::cell::RefCell::new(BTreeMap::new());
        let has_anchor = |wanted: &str, anchor: &str| -> Option<bool> {
            let of = |m: &scanaid_indexer::manual::Manual| -> BTreeSet<String> {
                scanaid_indexer::chunking::chunk_manual(m, Default::default())
                    .sections
                    .into_iter()
                    .map(|s| s.anchor)
                    .collect()
            };
            known_anchors
                .borrow_mut()
                .entry(wanted.to_string())
                .or_insert_with(|| {
                    if wanted == id {
                        return Some(of(manual));
                    }
                    manuals.iter().find(|m| m.meta.id == wanted).map(of)
                })
                .as_ref()
                .map(|anchors| anchors.contains(anchor))
        };
        findings.extend(scanaid_indexer::validate::links_findings(
            &checked.manual_links,
            &has_anchor,
        ));
        findings.sort();
        file = Some(match manuals.iter().find(|m| m.meta.id == original) {
            // Renaming keeps the file; a new manual gets one named after its id.
            Some(existing) => relative(dir, &existing.path),
            None => {
                let new = file_for_new_manual(dir, id, last_files);
                // A renamed manual keeps its old file name, and a file that does not parse has
                // no id to clash with: writing there would silently replace either.
                if holder.is_none() && dir.join(&new).exists() {
                    findings.insert(
                        0,
                        scanaid_indexer::validate::Finding {
                            line: 2,
                            message: format!(
                                "the file {} already exists and holds another manual (or one that \
                                 is not usable: fix or remove it first); choose another id",
                                new.display()
                            ),
                        },
                    );
                }
                new
            }
        });
    }
    (checked, findings, file)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn editor(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    original: &str,
    base: &str,
    text: &str,
    checked: Option<(&Checked, Vec<scanaid_indexer::validate::Finding>)>,
    message: String,
    fixing: &str,
) -> Result<Response, AppError> {
    editor_with(
        app,
        me,
        status,
        (original, base, text),
        checked,
        message,
        fixing,
        Vec::new(),
    )
    .await
}

/// `editor`, showing also how the file changed under a refused publish (`conflict`).
#[allow(clippy::too_many_arguments)]
async fn editor_with(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    (original, base, text): (&str, &str, &str),
    checked: Option<(&Checked, Vec<scanaid_indexer::validate::Finding>)>,
    message: String,
    fixing: &str,
    conflict: Vec<(String, crate::text_diff::LineDiff, String)>,
) -> Result<Response, AppError> {
    let reach = match checked.as_ref().and_then(|(c, _)| c.manual.as_ref()) {
        Some(manual) => reach_of(app, &manual.meta.id, &manual.meta.models).await?,
        None => String::new(),
    };
    let references = if original.is_empty() {
        Vec::new()
    } else {
        references_to(app, original).await?
    };
    let renamed_to = checked
        .as_ref()
        .and_then(|(c, _)| c.manual.as_ref())
        .map(|m| m.meta.id.clone())
        .filter(|id| !original.is_empty() && id != original)
        .unwrap_or_default();
    // Rendered as the manual's page renders the served index: the same code, on these chunks.
    let preview = match checked.as_ref() {
        Some((c, _)) if c.manual.is_some() => crate::pages::sections_of(&c.chunks)
            .into_iter()
            .map(|s| crate::views::PreviewSection {
                title: s.heading_path.last().cloned().unwrap_or_default(),
                anchor: s.anchor,
                audiences: s.audiences.join(", "),
                html: s.html,
            })
            .collect(),
        _ => Vec::new(),
    };
    let (was_checked, clean, findings, chunks) = match checked {
        None => (false, false, Vec::new(), Vec::new()),
        Some((c, findings)) => (
            true,
            c.manual.is_some() && findings.is_empty(),
            findings
                .iter()
                .map(|f| FindingRow {
                    line: f.line,
                    message: f.message.clone(),
                })
                .collect(),
            c.chunks
                .iter()
                .map(|ch| ChunkRow {
                    section: ch.heading_path.join(" › "),
                    line: ch.line,
                    tokens: estimate_tokens(&ch.text),
                    audiences: ch.audiences.join(", "),
                    start: ch.text.chars().take(120).collect(),
                })
                .collect(),
        ),
    };
    let html = ManualEditPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        original: original.to_string(),
        fixing: fixing.to_string(),
        preview,
        conflict,
        references,
        renamed_to,
        base: base.to_string(),
        markdown: text.to_string(),
        was_checked,
        clean,
        findings,
        chunks,
        message,
        reach,
    }
    .render()?;
    Ok(page(status, html))
}

/// Where readers will meet manual `id` (with equipment `models`): the machines whose page and chat
/// include it, because the registry lists it for them or they are of one of its models. Said when
/// it is none, so a manual nobody can reach from a label is not published unawares.
async fn reach_of(app: &AppState, id: &str, models: &[String]) -> Result<String, AppError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM assets
         WHERE EXISTS (SELECT 1 FROM json_each(assets.manuals) WHERE value = ?1)
            OR model IN (SELECT value FROM json_each(?2))
         ORDER BY name",
    )
    .bind(id)
    .bind(serde_json::to_string(models).expect("strings serialise"))
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    Ok(match names.len() {
        0 => format!(
            "No machine's page or chat will include this manual: no asset in the registry lists it, and none is of {}. Readers reach it only at /m/{id} and through search; name the equipment models it is for to put it on their machines' pages.",
            if models.is_empty() { "a model it names (it names none)".to_string() } else { format!("model {}", models.join(", ")) }
        ),
        n => format!(
            "Readers will find it on the page and in the chat of {n} machine(s): {}{}.",
            names.iter().take(6).cloned().collect::<Vec<_>>().join(", "),
            if n > 6 { format!(" and {} more", n - 6) } else { String::new() }
        ),
    })
}

/// `GET /admin/jobs/{id}`: a publish's progress (live with JavaScript; the page refreshes itself
/// while the job runs without it) and its outcome.
pub async fn job(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let Some(job) = app.store.job(id).await? else {
        return message(
            StatusCode::NOT_FOUND,
            "No such job",
            &format!("There is no job {id}."),
            "/admin/manuals",
        );
    };
    let progress = content::progress_of(&app, &job);
    let served = app.index().generation.clone();
    let html = JobPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        can_roll_back: job.kind == "publish"
            && progress.status == "promoted"
            && job.generation.as_deref() == Some(served.as_str())
            && job
                .previous_generation
                .as_deref()
                .is_some_and(|g| content::generation_kept(&app, g)),
        // The index was rebuilt since (a patient's packet): undone by publishing again.
        can_republish_previous: job.kind == "publish"
            && progress.status == "promoted"
            && job.generation.as_deref() != Some(served.as_str())
            && content::can_republish_previous(&app, &job).await?,
        can_override: me.role == Role::Admin && progress.status == "blocked",
        // Stopped, failed or rolled back: the text is not what readers see, but it was work.
        can_reopen_text: job.kind == "publish"
            && matches!(
                progress.status.as_str(),
                "blocked" | "failed" | "rolled back"
            )
            && content::revision_has_text(&app, job.revision_id).await?,
        running: !progress.finished(),
        progress,
        job,
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

/// `GET /admin/jobs/{id}/text`: the text a publish that was stopped (by the quality gate) or failed
/// tried to publish, back in the editor: the file has its previous text again, and the editor's
/// work must not be lost with it. The editor starts from the file as it is now (its `base`).
pub async fn job_text(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let revision = match app.store.job(id).await? {
        Some(job) if job.kind == "publish" => job.revision_id,
        _ => None,
    };
    // Deletions are recorded with an empty text: nothing to reopen.
    let row: Option<(String, Option<String>, String)> = match revision {
        Some(revision) => sqlx::query_as(
            "SELECT markdown, previous_markdown, file FROM manual_revisions WHERE id = ? AND markdown != ''",
        )
        .bind(revision)
        .fetch_optional(app.store.pool())
        .await
        .map_err(crate::ServerError::from)?,
        None => None,
    };
    let Some((markdown, previous, file)) = row else {
        return message(
            StatusCode::NOT_FOUND,
            "No such text",
            &format!("Job {id} published no text that can be opened again."),
            "/admin/manuals",
        );
    };
    let Some(dir) = app.config.demo_manuals.clone() else {
        return crate::account::forbidden("This server was started without a manuals folder.");
    };
    // Edited as the manual its file holds now (a stopped rename left the old id there), from the
    // text the stopped publish was made over: a publish since then is not silently undone.
    let path = dir.join(&file);
    let (manuals, _) = manual_files(&dir);
    let original = manuals
        .iter()
        .find(|m| m.path == path)
        .map(|m| m.meta.id.clone())
        .unwrap_or_default();
    let base = content::text_version(previous.as_deref().unwrap_or_default());
    editor(
        &app,
        &me,
        StatusCode::OK,
        &original,
        &base,
        &markdown,
        None,
        format!("The text job {id} tried to publish, back in the editor: it is not published. Fix it and publish again."), "",
    )
    .await
}

/// `GET /admin/jobs/{id}/events`: the job's progress now and at each change (`progress`), then one
/// `done` with its final state. The stream ends when its editor's session does (see
/// [`StreamSession`]): a job's findings name manuals and their lines, which are for editors.
pub async fn job_events(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
) -> Result<Response, AppError> {
    let session = match StreamSession::open(&app, &headers, EDITOR_ROLES, EDITOR_REFUSAL).await? {
        Ok(session) => session,
        Err(refused) => return Ok(refused),
    };
    let Some(job) = app.store.job(id).await? else {
        return Ok(StatusCode::NOT_FOUND.into_response());
    };
    let stream = JobStream {
        id,
        store: app.store.clone(),
        live: app.jobs.watch(id),
        stored: Some(Progress::of(&job)),
        closing: app.support.closing(),
        session,
        sent: false,
        ended: false,
    };
    let stream = futures_util::stream::unfold(stream, |mut stream| async move {
        let event = stream.next().await?;
        Some((Ok::<_, Infallible>(event), stream))
    });
    Ok(crate::account::no_store(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    ))
}

/// State of one job's progress stream.
struct JobStream {
    id: i64,
    store: crate::store::Store,
    /// The running job's progress, when it runs in this process.
    live: Option<tokio::sync::watch::Receiver<Progress>>,
    /// The job's stored state: what a job that does not run here is reported as.
    stored: Option<Progress>,
    closing: tokio::sync::watch::Receiver<bool>,
    session: StreamSession,
    /// Whether a `progress` event was sent (the next one waits for a change).
    sent: bool,
    ended: bool,
}

impl JobStream {
    /// The next event to send, or `None` when the stream ends.
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        let Some(live) = &mut self.live else {
            if !self.session.still_allowed().await {
                return None;
            }
            // Not running here (finished, or from before a restart): its stored state, once.
            self.ended = true;
            return Some(job_event("done", &self.stored.take()?));
        };
        if self.sent {
            loop {
                // Which wake-up came, decided first so that nothing borrowed by the select is
                // held across the awaits below.
                let woke = tokio::select! {
                    changed = live.changed() => Woke::Changed(changed.is_ok()),
                    _ = self.closing.wait_for(|c| *c) => Woke::Closing,
                    _ = self.session.recheck_due() => Woke::Recheck,
                };
                match woke {
                    Woke::Changed(true) => break,
                    // The job's task is gone. Normally its final state was sent first and is read
                    // below; if not, the store has the last word.
                    Woke::Changed(false) if live.borrow().finished() => break,
                    Woke::Changed(false) => {
                        self.live = None;
                        self.ended = true;
                        let stored = self.store.job(self.id).await.ok().flatten();
                        if !self.session.still_allowed().await {
                            return None;
                        }
                        return stored.map(|job| job_event("done", &Progress::of(&job)));
                    }
                    Woke::Closing => return None,
                    Woke::Recheck if !self.session.still_allowed().await => return None,
                    Woke::Recheck => {}
                }
            }
        }
        // Checked after the wait, right before sending: the session may have ended during it.
        if !self.session.still_allowed().await {
            return None;
        }
        self.sent = true;
        let current = live.borrow_and_update().clone();
        if current.finished() {
            self.ended = true;
            return Some(job_event("done", &current));
        }
        Some(job_event("progress", &current))
    }
}

/// What ended a job stream's wait.
enum Woke {
    /// The progress changed (`true`), or its sender is gone (`false`).
    Changed(bool),
    Closing,
    Recheck,
}

fn job_event(name: &'static str, progress: &Progress) -> Event {
    Event::default()
        .event(name)
        .json_data(progress)
        .expect("progress serialises")
}

/// `POST /admin/jobs/{id}/rollback`: undoes that publish (the latest one).
pub async fn roll_back(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
    crate::http::LenientForm(form): crate::http::LenientForm<CsrfForm>,
) -> Result<Response, AppError> {
    let me = match require_editor_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    match content::rollback(&app, id, &me.username).await? {
        Ok(content::RolledBack::Swapped) => {
            Ok(Redirect::to(&format!("/admin/jobs/{id}")).into_response())
        }
        Ok(content::RolledBack::Republished(job)) => {
            Ok(Redirect::to(&format!("/admin/jobs/{job}")).into_response())
        }
        Err(content::Refused(reason)) => message(
            StatusCode::CONFLICT,
            "Not rolled back",
            &format!("{reason}. Nothing changed."),
            &format!("/admin/jobs/{id}"),
        ),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DeleteForm {
    #[serde(default)]
    pub csrf: String,
    /// The manual's id, typed, so a stray click deletes nothing.
    #[serde(default)]
    pub confirm: String,
    /// `content::text_version` of the text the page showed.
    #[serde(default)]
    pub base: String,
}

/// `POST /admin/manuals/{id}/delete`: removes a manual from the corpus and re-indexes (a job that
/// can be rolled back like a publish).
pub async fn delete(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
    crate::http::LenientForm(form): crate::http::LenientForm<DeleteForm>,
) -> Result<Response, AppError> {
    let me = match require_editor_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let (dir, manual) = match manual_named(&app, &id)? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    if form.confirm.trim() != id {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Not deleted",
            &format!("Type the manual's id, {id}, to delete it. Nothing changed."),
            &format!("/admin/manuals/{id}"),
        );
    }
    let file = relative(&dir, &manual.path);
    match content::delete_manual(&app, &id, &file, &me.username, Some(&form.base)).await? {
        Ok(job) => Ok(Redirect::to(&format!("/admin/jobs/{job}")).into_response()),
        Err(content::Refused(reason)) => message(
            StatusCode::CONFLICT,
            "Not deleted",
            &format!("{reason}. Nothing changed."),
            &format!("/admin/manuals/{id}"),
        ),
    }
}

/// `POST /admin/jobs/{id}/override`: publishes a text the quality gate stopped (admins only; logged).
pub async fn override_gate(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
    crate::http::LenientForm(form): crate::http::LenientForm<CsrfForm>,
) -> Result<Response, AppError> {
    let me = match crate::account::require_role_posting(
        &app,
        &headers,
        &[Role::Admin],
        "Only an administrator can publish past the quality gate.",
        &form.csrf,
    )
    .await?
    {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    match content::override_gate(&app, id, &me.username).await? {
        Ok(job) => Ok(Redirect::to(&format!("/admin/jobs/{job}")).into_response()),
        Err(content::Refused(reason)) => message(
            StatusCode::CONFLICT,
            "Not published",
            &format!("{reason}. Nothing changed."),
            &format!("/admin/jobs/{id}"),
        ),
    }
}

#[cfg(test)]
mod links_tests {
    #[test]
    fn a_link_to_a_manual_is_told_from_one_to_a_longer_id() {
        let target = "/m/vp300-service";
        for text in [
            "see [it](/m/vp300-service#alarms)",
            "see [it](/m/vp300-service)",
            "at /m/vp300-service",
            "(/m/vp300-service?lang=es)",
        ] {
            assert!(super::links_to(text, target), "{text}");
        }
        for text in [
            "see [it](/m/vp300-service-es#x)",
            "/m/vp300-service2",
            "no link",
        ] {
            assert!(!super::links_to(text, target), "{text}");
        }
    }
}
