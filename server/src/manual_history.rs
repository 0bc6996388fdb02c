//! A manual's history, for its editors: every change published to it (edits, renames, deletions,
//! rollbacks, texts published past the quality gate), what each one changed as a line diff, and any
//! earlier text back in the editor. That is how a manual is restored, also one that was deleted:
//! through the same checks, conflict test and quality gate as every publish, never around them.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use crate::content_admin::{editor, manual_files, message, page, relative, require_editor};
use crate::text_diff::{line_diff, LineDiff};
use crate::{AppError, AppState};

/// Changes a history page lists (the newest first).
const HISTORY_ROWS: i64 = 200;

/// One published change, with what became of its job.
#[derive(Debug, Clone, sqlx::FromRow)]
struct RevisionRow {
    id: i64,
    manual_id: String,
    revision: String,
    /// Empty for a deletion.
    deleted: bool,
    /// No file before it: a new manual.
    created: bool,
    /// Changes were published under its id before it (a new file for an id the site had: a
    /// deleted manual restored).
    had_earlier: bool,
    file: String,
    published_by: String,
    published_at: String,
    /// The change's latest job (an override is a second job for the same text).
    job_id: Option<i64>,
    job_status: Option<String>,
    undoes: Option<i64>,
    /// Who published it past the quality gate, if someone did.
    overridden_by: Option<String>,
}

const REVISION_COLUMNS: &str = "r.id, r.manual_id, r.revision, r.markdown = '' AS deleted,
    r.previous_markdown IS NULL AS created,
    EXISTS (SELECT 1 FROM manual_revisions o WHERE o.manual_id = r.manual_id AND o.id < r.id) AS had_earlier,
    r.file, r.published_by, r.published_at,
    j.id AS job_id, j.status AS job_status, j.undoes,
    (SELECT o.started_by FROM index_jobs o
      WHERE o.revision_id = r.id AND o.id > (SELECT MIN(id) FROM index_jobs WHERE revision_id = r.id)
      ORDER BY o.id DESC LIMIT 1) AS overridden_by
  FROM manual_revisions r
  LEFT JOIN index_jobs j ON j.id = (SELECT MAX(id) FROM index_jobs WHERE revision_id = r.id)";

/// The changes that belong to manual `id`'s history: those published under the id, and those to
/// the same *life* of a file it was published to (so a rename's both sides show on both ids'
/// pages). A file's life begins with a change that created it (no text before) and runs to its
/// next creation: a manual deleted and its path later reused by an unrelated one are two lives, so
/// neither shows in the other's history.
const IN_HISTORY_OF: &str = "(r.manual_id = ?1 OR EXISTS (
      SELECT 1 FROM manual_revisions m
      WHERE m.manual_id = ?1 AND m.file = r.file
        AND COALESCE((SELECT MAX(c.id) FROM manual_revisions c
                      WHERE c.file = m.file AND c.previous_markdown IS NULL AND c.id <= m.id), 0)
          = COALESCE((SELECT MAX(c.id) FROM manual_revisions c
                      WHERE c.file = r.file AND c.previous_markdown IS NULL AND c.id <= r.id), 0)))";

/// One line of the history page.
pub struct HistoryRow {
    pub id: i64,
    pub manual_id: String,
    pub revision: String,
    pub what: String,
    pub file: String,
    pub by: String,
    pub at: String,
    pub job_id: Option<i64>,
    pub status: String,
}

#[derive(Template)]
#[template(path = "admin_manual_history.html")]
pub struct HistoryPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub manual_id: String,
    /// The manual's file now, if it has one (it may have been deleted).
    pub current_file: Option<String>,
    pub rows: Vec<HistoryRow>,
    pub more: bool,
    /// Rollbacks that served the generation before a publish again: (when, who, what).
    pub rollbacks: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "admin_manual_revision.html")]
pub struct RevisionPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub row: HistoryRow,
    /// What this change did: the text before it to its text.
    pub change: LineDiff,
    /// From this change's text to the manual's file now (`None`: no file now, or the same text).
    pub since: Option<LineDiff>,
    pub has_text: bool,
    pub has_text_before: bool,
    pub file_now_missing: bool,
}

/// What a change was, in words, from the row and the next older change to the same file.
fn what_it_was(row: &RevisionRow, older_same_file: Option<&RevisionRow>) -> String {
    let mut what = if let Some(job) = row.undoes {
        if row.deleted {
            format!("rollback of job {job} (removed the manual it had added)")
        } else {
            format!("rollback of job {job}")
        }
    } else if row.deleted {
        "deleted".to_string()
    } else if row.created && row.had_earlier {
        "restored (its file was gone)".to_string()
    } else if row.created {
        "new manual".to_string()
    } else {
        match older_same_file {
            Some(older) if older.manual_id != row.manual_id => {
                format!("renamed from {}", older.manual_id)
            }
            _ => "edit".to_string(),
        }
    };
    if let Some(admin) = &row.overridden_by {
        what.push_str(&format!(", published past the quality gate by {admin}"));
    }
    what
}

fn history_row(row: &RevisionRow, older_same_file: Option<&RevisionRow>) -> HistoryRow {
    HistoryRow {
        id: row.id,
        manual_id: row.manual_id.clone(),
        revision: row.revision.clone(),
        what: what_it_was(row, older_same_file),
        file: row.file.clone(),
        by: row.published_by.clone(),
        at: row.published_at.clone(),
        job_id: row.job_id,
        status: row
            .job_status
            .clone()
            .unwrap_or_else(|| "no job".to_string()),
    }
}

/// The next older change to the same file as `row` (what a rename is told by).
async fn older_change_to_file(
    app: &AppState,
    row: &RevisionRow,
) -> Result<Option<RevisionRow>, AppError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REVISION_COLUMNS} WHERE r.file = ?1 AND r.id < ?2 ORDER BY r.id DESC LIMIT 1"
    ))
    .bind(&row.file)
    .bind(row.id)
    .fetch_optional(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?)
}

/// The manuals folder's file for manual `id` now, relative to the folder, if there is one.
fn current_file_of(app: &AppState, id: &str) -> Option<String> {
    let dir = app.config.demo_manuals.clone()?;
    let (manuals, _) = manual_files(&dir);
    manuals
        .iter()
        .find(|m| m.meta.id == id)
        .map(|m| relative(&dir, &m.path).display().to_string())
}

/// `GET /admin/manuals/{id}/history`: every change published to the manual, the newest first.
pub async fn history(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(id): crate::http::PathSegment,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let rows: Vec<RevisionRow> = sqlx::query_as(&format!(
        "SELECT {REVISION_COLUMNS} WHERE {IN_HISTORY_OF} ORDER BY r.id DESC LIMIT ?2"
    ))
    .bind(&id)
    .bind(HISTORY_ROWS + 1)
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    let current_file = current_file_of(&app, &id);
    let rollbacks = swapped_rollbacks(&app, &id).await?;
    if rows.is_empty() && current_file.is_none() && rollbacks.is_empty() {
        return message(
            StatusCode::NOT_FOUND,
            "No such manual",
            &format!("There is no manual {id:?}, and none was ever published under that id."),
            "/admin/manuals",
        );
    }
    let more = rows.len() as i64 > HISTORY_ROWS;
    let shown = &rows[..rows.len().min(HISTORY_ROWS as usize)];
    let mut out = Vec::with_capacity(shown.len());
    for (i, row) in shown.iter().enumerate() {
        // The next older change to the same file, from the rows at hand when it is among them.
        let older = match rows[i + 1..].iter().find(|r| r.file == row.file) {
            Some(older) => Some(older.clone()),
            None => older_change_to_file(&app, row).await?,
        };
        out.push(history_row(row, older.as_ref()));
    }
    let html = HistoryPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        manual_id: id,
        current_file,
        rows: out,
        more,
        rollbacks,
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

/// A change and its texts (before, after), or the page saying there is no such change.
async fn change_named(
    app: &AppState,
    id: i64,
) -> Result<Result<(RevisionRow, Option<String>, String), Response>, AppError> {
    let row: Option<RevisionRow> =
        sqlx::query_as(&format!("SELECT {REVISION_COLUMNS} WHERE r.id = ?1"))
            .bind(id)
            .fetch_optional(app.store.pool())
            .await
            .map_err(crate::ServerError::from)?;
    let Some(row) = row else {
        return Ok(Err(message(
            StatusCode::NOT_FOUND,
            "No such change",
            &format!("No change {id} was ever published. A manual's history lists its changes."),
            "/admin/manuals",
        )?));
    };
    let (before, after): (Option<String>, String) =
        sqlx::query_as("SELECT previous_markdown, markdown FROM manual_revisions WHERE id = ?")
            .bind(id)
            .fetch_one(app.store.pool())
            .await
            .map_err(crate::ServerError::from)?;
    Ok(Ok((row, before, after)))
}

/// The manuals folder's text at a change's file now, and the id of the manual it holds.
fn file_now(app: &AppState, file: &str) -> Option<(String, Option<String>)> {
    let dir = app.config.demo_manuals.clone()?;
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).ok()?;
    let (manuals, _) = manual_files(&dir);
    let id = manuals
        .iter()
        .find(|m| m.path == path)
        .map(|m| m.meta.id.clone());
    Some((text, id))
}

/// `GET /admin/revisions/{id}`: one change: what it did, how its text differs from the file now,
/// and its text (or the one before it) back in the editor.
pub async fn revision(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let (row, before, after) = match change_named(&app, id).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let older = older_change_to_file(&app, &row).await?;
    let now = file_now(&app, &row.file).map(|(text, _)| text);
    let has_text = !after.is_empty();
    let has_text_before = before.as_deref().is_some_and(|t| !t.is_empty());
    let file_now_missing = now.is_none();
    // Diffs of texts up to 512 KB each are CPU work: off the async workers, which serve scans.
    let (change, since) = tokio::task::spawn_blocking(move || {
        let change = line_diff(before.as_deref().unwrap_or_default(), &after);
        let since = now
            .filter(|text| *text != after && has_text)
            .map(|text| line_diff(&after, &text));
        (change, since)
    })
    .await?;
    let html = RevisionPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        row: history_row(&row, older.as_ref()),
        change,
        since,
        has_text,
        has_text_before,
        file_now_missing,
    }
    .render()?;
    Ok(page(StatusCode::OK, html))
}

#[derive(Debug, Deserialize, Default)]
pub struct OpenQuery {
    /// `before`: the text the change replaced; otherwise the change's own text.
    #[serde(default)]
    pub text: String,
}

/// `GET /admin/revisions/{id}/open[?text=before]`: that text in the editor, to be checked and
/// published again. It is edited as the manual the change's file holds now (or as a new manual
/// when the file is gone, as after a deletion), from the file's text now (its `base`): publishing
/// it replaces what is served, and a change someone makes meanwhile is not silently undone.
pub async fn open(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::NumericId(id): crate::http::NumericId,
    crate::http::LenientQuery(query): crate::http::LenientQuery<OpenQuery>,
) -> Result<Response, AppError> {
    let me = match require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let (row, before, after) = match change_named(&app, id).await? {
        Ok(found) => found,
        Err(response) => return Ok(response),
    };
    let wants_before = query.text == "before";
    let text = if wants_before {
        before.unwrap_or_default()
    } else {
        after
    };
    if text.is_empty() {
        return message(
            StatusCode::NOT_FOUND,
            "No such text",
            &if wants_before {
                format!("Change {id} made a new manual: there was no text before it.")
            } else {
                format!("Change {id} deleted the manual: it has no text of its own. Open the text before it instead.")
            },
            &format!("/admin/revisions/{id}"),
        );
    }
    let (original, base) = match file_now(&app, &row.file) {
        Some((now, held)) => (held.unwrap_or_default(), crate::content::text_version(&now)),
        None => (String::new(), crate::content::text_version("")),
    };
    let which = if wants_before {
        format!(
            "The text before change {id} ({} by {} at {})",
            row.manual_id, row.published_by, row.published_at
        )
    } else {
        format!(
            "Revision {} of {} as {} published it at {}",
            row.revision, row.manual_id, row.published_by, row.published_at
        )
    };
    editor(
        &app,
        &me,
        StatusCode::OK,
        &original,
        &base,
        &text,
        None,
        format!(
            "{which}, back in the editor: it is not published. Check it and publish it to serve it again; the quality checks apply as to any publish."
        ), "",
    )
    .await
}

/// Manuals the site once served that have no file now (deleted, or their creation rolled back),
/// with who last changed them and when: the list page offers their history, from which one is
/// restored. A renamed manual is not among them (its file holds it under its new id). `dir` and
/// `manuals` are the manuals folder and what the list page read of it.
pub async fn deleted_manuals(
    app: &AppState,
    dir: &std::path::Path,
    manuals: &[scanaid_indexer::manual::Manual],
) -> Result<Vec<(String, String, String)>, AppError> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT r.manual_id, r.published_by, r.published_at, r.file FROM manual_revisions r
         WHERE r.id = (SELECT MAX(id) FROM manual_revisions WHERE manual_id = r.manual_id)
           AND EXISTS (SELECT 1 FROM manual_revisions s JOIN index_jobs j ON j.revision_id = s.id
                       WHERE s.manual_id = r.manual_id AND j.status IN ('promoted', 'rolled back'))
         ORDER BY r.id DESC LIMIT 50",
    )
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?;
    Ok(rows
        .into_iter()
        .filter(|(id, _, _, file)| {
            !manuals.iter().any(|m| &m.meta.id == id) && !dir.join(file).exists()
        })
        .map(|(id, by, at, _)| (id, by, at))
        .collect())
}

/// Rollbacks that served an earlier generation again (they add no text of their own, so no row
/// of `manual_revisions`): (when, who, what), from the content audit trail. Their detail reads
/// "job N: generation -> generation"; a rollback published as a job of its own is a row already.
async fn swapped_rollbacks(
    app: &AppState,
    id: &str,
) -> Result<Vec<(String, String, String)>, AppError> {
    Ok(sqlx::query_as(
        "SELECT at, actor, detail FROM content_audit
         WHERE action = 'rollback' AND manual_id = ? AND detail LIKE 'job %'
         ORDER BY id DESC LIMIT 50",
    )
    .bind(id)
    .fetch_all(app.store.pool())
    .await
    .map_err(crate::ServerError::from)?)
}
