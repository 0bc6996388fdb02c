//! Publishing manuals: the store side (every published text with the one it replaced, re-index jobs,
//! the content audit trail) and the jobs themselves. A publish writes the file, records it, and
//! builds a new generation in the background while the previous one keeps serving; its progress is a
//! `watch` channel per job that the job page streams (SSE). A rollback undoes the latest publish:
//! the previous generation is served again at once and the file gets its previous text back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::watch;

use crate::{AppError, AppState, Result};

/// One re-index job as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub manual_id: Option<String>,
    pub revision_id: Option<i64>,
    pub status: String,
    pub previous_generation: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub generation: Option<String>,
    pub report: String,
    /// The publish this job undoes (a rollback published as a job of its own).
    pub undoes: Option<i64>,
    /// What the job is, for people: `kind` is "publish" for every change to the folder, this tells
    /// a deletion, a rollback, a new manual and a text published past the quality gate apart.
    pub what: String,
}

/// One line of the content audit trail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub manual_id: Option<String>,
    pub revision: Option<String>,
    pub detail: String,
}

/// A job's state as its page shows it and its event stream sends it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Progress {
    /// Chunks embedded so far and in all (0 of 0 before embedding starts, or when nothing changed).
    pub done: usize,
    pub total: usize,
    /// `running`, `promoted`, `blocked` (by the quality gate), `failed` or `rolled back`.
    pub status: String,
    pub report: String,
    pub generation: String,
}

impl Progress {
    pub fn of(job: &Job) -> Self {
        Self {
            done: 0,
            total: 0,
            status: job.status.clone(),
            report: job.report.clone(),
            generation: job.generation.clone().unwrap_or_default(),
        }
    }

    pub fn finished(&self) -> bool {
        self.status != "running"
    }
}

/// A job's state: live when it runs in this process, else as the store has it.
pub fn progress_of(app: &AppState, job: &Job) -> Progress {
    app.jobs
        .watch(job.id)
        .map(|rx| rx.borrow().clone())
        .unwrap_or_else(|| Progress::of(job))
}

/// Progress of the jobs running in this process.
#[derive(Default)]
pub struct LiveJobs {
    running: Mutex<HashMap<i64, watch::Sender<Progress>>>,
}

impl LiveJobs {
    /// A receiver for job `id`'s progress, if it runs in this process (else read the store).
    pub fn watch(&self, id: i64) -> Option<watch::Receiver<Progress>> {
        self.running
            .lock()
            .expect("jobs lock")
            .get(&id)
            .map(|tx| tx.subscribe())
    }

    fn start(&self, id: i64, first: Progress) -> watch::Sender<Progress> {
        let (tx, _) = watch::channel(first);
        self.running
            .lock()
            .expect("jobs lock")
            .insert(id, tx.clone());
        tx
    }

    fn end(&self, id: i64) {
        self.running.lock().expect("jobs lock").remove(&id);
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A content audit entry, on `conn` (a change's own transaction: the change and its entry are
/// stored together).
pub(crate) async fn content_audit_in(
    conn: &mut sqlx::SqliteConnection,
    actor: &str,
    action: &str,
    manual_id: Option<&str>,
    revision: Option<&str>,
    detail: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO content_audit (at, actor, action, manual_id, revision, detail) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(manual_id)
        .bind(revision)
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

const JOB_COLUMNS: &str = "id, kind, manual_id, revision_id, status, previous_generation, started_by, started_at, finished_at, generation, report, undoes,
    CASE
      WHEN undoes IS NOT NULL THEN 'rollback of job ' || undoes
      WHEN revision_id IS NULL THEN kind
      WHEN (SELECT length(r.markdown) = 0 FROM manual_revisions r WHERE r.id = index_jobs.revision_id) THEN 'deletion'
      WHEN EXISTS (SELECT 1 FROM index_jobs o WHERE o.revision_id = index_jobs.revision_id AND o.id < index_jobs.id)
        THEN 'publish past the quality gate'
      WHEN (SELECT r.previous_markdown IS NULL FROM manual_revisions r WHERE r.id = index_jobs.revision_id)
        THEN CASE WHEN EXISTS (SELECT 1 FROM manual_revisions o
                               WHERE o.manual_id = index_jobs.manual_id AND o.id < index_jobs.revision_id)
                  THEN 'restored manual' ELSE 'new manual' END
      ELSE kind
    END AS what";

impl crate::store::Store {
    pub async fn content_audit(
        &self,
        actor: &str,
        action: &str,
        manual_id: Option<&str>,
        revision: Option<&str>,
        detail: &str,
    ) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        content_audit_in(&mut conn, actor, action, manual_id, revision, detail).await
    }

    pub async fn content_audit_trail(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as(
            "SELECT at, actor, action, manual_id, revision, detail FROM content_audit ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Jobs a stopped server left running: they never promoted anything, and would block publishing.
    /// Marks them failed and puts back, in `manuals_dir`, the text each one had written there, so
    /// the folder holds what the site serves before anything builds from it again.
    pub async fn fail_interrupted_jobs(&self, manuals_dir: Option<&Path>) -> Result<()> {
        let revisions: Vec<Option<i64>> = sqlx::query_scalar("UPDATE index_jobs SET status = 'failed', finished_at = ?, report = 'interrupted: the server stopped before the job finished; nothing changed for readers, and the file has its previous text' WHERE status = 'running' RETURNING revision_id")
            .bind(now())
            .fetch_all(self.pool())
            .await?;
        if let Some(dir) = manuals_dir {
            for revision in revisions.into_iter().flatten() {
                restore_revision(self, dir, revision).await?;
            }
        }
        Ok(())
    }

    pub async fn job(&self, id: i64) -> Result<Option<Job>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM index_jobs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn recent_jobs(&self, limit: i64) -> Result<Vec<Job>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM index_jobs ORDER BY id DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    async fn finish_job(
        &self,
        id: i64,
        status: &str,
        generation: &str,
        report: &str,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE index_jobs SET status = ?, generation = ?, report = ?, finished_at = ? WHERE id = ?")
            .bind(status)
            .bind(generation)
            .bind(report)
            .bind(now())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if status == "promoted" {
            // A rollback published as a job of its own: the publish it undoes is undone now, and
            // one that publish had undone (a rollback rolled back) is served again.
            sqlx::query(
                "UPDATE index_jobs SET status = 'rolled back'
                 WHERE id = (SELECT undoes FROM index_jobs WHERE id = ?) AND status = 'promoted'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE index_jobs SET status = 'promoted'
                 WHERE id = (SELECT u.undoes FROM index_jobs j JOIN index_jobs u ON u.id = j.undoes WHERE j.id = ?)
                   AND status = 'rolled back'",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A publish a rollback had undone is served again (that rollback was rolled back).
    async fn mark_job_served_again(&self, id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE index_jobs SET status = 'promoted' WHERE id = ? AND status = 'rolled back'",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// (file, text before the publish) of a published revision.
    /// The file a revision changed, and what it held before: its text, and its exact bytes when
    /// they were not UTF-8.
    async fn revision_before(
        &self,
        revision_id: i64,
    ) -> Result<Option<(String, Option<String>, Option<Vec<u8>>)>> {
        Ok(sqlx::query_as(
            "SELECT file, previous_markdown, previous_bytes FROM manual_revisions WHERE id = ?",
        )
        .bind(revision_id)
        .fetch_optional(self.pool())
        .await?)
    }
}

/// A short tag of a manual file's text: an editor's form and the content API carry the one they
/// started from (`base`), so a publish over someone else's newer text is refused, not silent.
pub fn text_version(text: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..8])
}

/// Whether the file's text (`current`; `None`: no file) is no longer the one the editor started
/// from (`base`, a `text_version`; absent or empty: not checked). Asked under the folder lock, so
/// two editors who opened the same text cannot both change it: the second is told, and keeps
/// their text to merge.
async fn changed_since(
    app: &AppState,
    file: &Path,
    current: Option<&str>,
    base: Option<&str>,
) -> Result<Option<Refused>> {
    let Some(base) = base.filter(|b| !b.is_empty()) else {
        return Ok(None);
    };
    if text_version(current.unwrap_or_default()) == base {
        return Ok(None);
    }
    let last: Option<(String, String)> = sqlx::query_as(
        "SELECT published_by, published_at FROM manual_revisions WHERE file = ? ORDER BY id DESC LIMIT 1",
    )
    .bind(file.to_string_lossy().as_ref())
    .fetch_optional(app.store.pool())
    .await?;
    let by = match last {
        Some((who, at)) => format!(" (last published by {who} at {at} UTC)"),
        None => " (the file was changed on disk)".to_string(),
    };
    Ok(Some(Refused(format!(
        "{CHANGED_SINCE}{by}, and this would undo that change. \
         Your text is kept: open the manual again in another tab, bring your changes into its \
         current text, and publish that"
    ))))
}

/// Whether a revision holds a text (a deletion's is empty).
pub async fn revision_has_text(app: &AppState, revision: Option<i64>) -> Result<bool> {
    let Some(revision) = revision else {
        return Ok(false);
    };
    Ok(sqlx::query_scalar::<_, i64>(
        "SELECT 1 FROM manual_revisions WHERE id = ? AND markdown != ''",
    )
    .bind(revision)
    .fetch_optional(app.store.pool())
    .await?
    .is_some())
}

/// A publish that cannot start, for the editor.
#[derive(Debug)]
pub struct Refused(pub String);

/// Why a change cannot start while another job runs: waiting lifts it (the API says so, with
/// `Retry-After`).
pub const JOB_RUNNING: &str = "another publish or rollback is running; wait for it to finish";

/// How a refusal over a text changed since it was opened begins: waiting does not lift it (the text
/// must be brought into the new one).
pub const CHANGED_SINCE: &str = "this manual changed since you opened it";

/// Writes `markdown` as manual `manual_id` (to `file`, relative to the manuals folder), records it,
/// and starts the re-index job. The text has been checked by the caller. Returns the job id.
pub async fn publish(
    app: &AppState,
    manual_id: &str,
    revision: &str,
    file: &Path,
    markdown: &str,
    editor: &str,
    base: Option<&str>,
) -> std::result::Result<std::result::Result<i64, Refused>, AppError> {
    let _changing = app.folder_change.lock().await;
    let manuals_dir = match folder_to_change(app).await? {
        Ok(dir) => dir,
        Err(refused) => return Ok(Err(refused)),
    };
    let path = manuals_dir.join(file);
    // Read as text even when it is not UTF-8 (a broken file being fixed): its version is the one
    // the editor showed, and the revision keeps what could be read of it.
    let bytes = std::fs::read(&path).ok();
    let previous = bytes
        .as_deref()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    if let Some(refused) = changed_since(app, file, previous.as_deref(), base).await? {
        return Ok(Err(refused));
    }
    // Not UTF-8: the exact bytes are kept too, to be put back if the job does not promote.
    let previous_bytes = bytes.filter(|b| std::str::from_utf8(b).is_err());
    let change = Change {
        manual_id,
        revision,
        markdown,
        previous: previous.as_deref(),
        previous_bytes: previous_bytes.as_deref(),
        file,
        editor,
        undoes: None,
    };
    Ok(Ok(record_and_reindex(
        app,
        change,
        "publish",
        Some(revision),
        {
            let markdown = markdown.to_string();
            move || write_atomically(&path, markdown.as_bytes())
        },
    )
    .await?))
}

/// One change to the manuals folder, as `manual_revisions` keeps it.
struct Change<'a> {
    manual_id: &'a str,
    revision: &'a str,
    /// The new text; empty for a deletion.
    markdown: &'a str,
    previous: Option<&'a str>,
    /// The file's exact bytes before, when they were not UTF-8 (`previous` is then lossy).
    previous_bytes: Option<&'a [u8]>,
    file: &'a Path,
    editor: &'a str,
    /// The job this change undoes (a rollback published as a job of its own).
    undoes: Option<i64>,
}

/// Records a change (its revision, the audit entry and its running job, in one transaction), then
/// makes it to the folder with `apply`, then runs the gated re-index job; returns the job id.
///
/// Recorded first: a store that cannot record it (busy, full) refuses it with the folder
/// untouched, and a server stopped before the job ends finds it running at the next start and
/// puts the file's previous text back (`fail_interrupted_jobs`). A folder that cannot be written
/// fails the job, which says so.
async fn record_and_reindex(
    app: &AppState,
    change: Change<'_>,
    action: &str,
    audit_revision: Option<&str>,
    apply: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<i64> {
    let file = change.file.to_string_lossy();
    let mut tx = app.store.pool().begin().await?;
    let revision_id: i64 = sqlx::query_scalar(
        "INSERT INTO manual_revisions (manual_id, revision, markdown, previous_markdown, previous_bytes, file, published_by, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(change.manual_id)
    .bind(change.revision)
    .bind(change.markdown)
    .bind(change.previous)
    .bind(change.previous_bytes)
    .bind(file.as_ref())
    .bind(change.editor)
    .bind(now())
    .fetch_one(&mut *tx)
    .await?;
    content_audit_in(
        &mut tx,
        change.editor,
        action,
        Some(change.manual_id),
        audit_revision,
        &file,
    )
    .await?;
    let job = insert_job(
        app,
        &mut tx,
        Some(change.manual_id),
        Some(revision_id),
        change.editor,
        change.undoes,
    )
    .await?;
    tx.commit().await?;
    apply_then_run(
        app,
        job,
        Some(change.manual_id),
        Some(revision_id),
        change.editor,
        true,
        apply,
    )
    .await
}

/// Runs a recorded change's job, which makes the change to the folder (`apply`) and builds; a
/// change that cannot be made fails the job (the folder keeps what the site serves).
async fn apply_then_run(
    app: &AppState,
    job: i64,
    manual_id: Option<&str>,
    revision_id: Option<i64>,
    by: &str,
    gated: bool,
    apply: impl FnOnce() -> Result<()> + Send + 'static,
) -> Result<i64> {
    run_job(app, job, manual_id, revision_id, by, gated, Box::new(apply));
    Ok(job)
}

/// Deletes manual `manual_id` (its file, relative to the manuals folder): the file goes, the text is
/// kept as a revision whose new text is empty, and the re-index job starts, gated like a publish
/// (the other manuals' checks must still pass). Rolling the job back puts the file back.
pub async fn delete_manual(
    app: &AppState,
    manual_id: &str,
    file: &Path,
    editor: &str,
    base: Option<&str>,
) -> std::result::Result<std::result::Result<i64, Refused>, AppError> {
    let _changing = app.folder_change.lock().await;
    let manuals_dir = match folder_to_change(app).await? {
        Ok(dir) => dir,
        Err(refused) => return Ok(Err(refused)),
    };
    let path = manuals_dir.join(file);
    let previous = std::fs::read_to_string(&path).map_err(|source| crate::ServerError::Io {
        path: path.clone(),
        source,
    })?;
    if let Some(refused) = changed_since(app, file, Some(&previous), base).await? {
        return Ok(Err(refused));
    }
    let change = Change {
        manual_id,
        revision: "deleted",
        markdown: "",
        previous: Some(&previous),
        previous_bytes: None,
        file,
        editor,
        undoes: None,
    };
    Ok(Ok(record_and_reindex(
        app,
        change,
        "delete",
        None,
        move || {
            std::fs::remove_file(&path).map_err(|source| crate::ServerError::Io {
                path: path.clone(),
                source,
            })
        },
    )
    .await?))
}

/// Publishes a text the quality gate stopped, without the gate: for admins, logged.
pub async fn override_gate(
    app: &AppState,
    job_id: i64,
    admin: &str,
) -> std::result::Result<std::result::Result<i64, Refused>, AppError> {
    let _changing = app.folder_change.lock().await;
    let Some(job) = app.store.job(job_id).await? else {
        return Ok(Err(Refused(format!("there is no job {job_id}"))));
    };
    if job.status != "blocked" {
        return Ok(Err(Refused(format!(
            "job {job_id} was not stopped by the quality gate ({})",
            job.status
        ))));
    }
    let latest: i64 = sqlx::query_scalar("SELECT MAX(id) FROM index_jobs")
        .fetch_one(app.store.pool())
        .await
        .map_err(crate::ServerError::from)?;
    if latest != job_id {
        return Ok(Err(Refused(format!(
            "job {job_id} is not the latest job: publish the text again instead"
        ))));
    }
    let (Some(revision_id), Some(manuals_dir)) = (job.revision_id, app.config.demo_manuals.clone())
    else {
        return Ok(Err(Refused(format!("job {job_id} has no text to publish"))));
    };
    let (file, markdown, revision, made_over): (String, String, String, Option<String>) =
        sqlx::query_as(
            "SELECT file, markdown, revision, previous_markdown FROM manual_revisions WHERE id = ?",
        )
        .bind(revision_id)
        .fetch_one(app.store.pool())
        .await
        .map_err(crate::ServerError::from)?;
    // The file must still hold the text the stopped publish was made over: a rollback since (which
    // adds no job) or a change on disk would otherwise be undone without a word.
    let now_on_disk = std::fs::read_to_string(manuals_dir.join(&file)).ok();
    if now_on_disk.as_deref().unwrap_or("") != made_over.as_deref().unwrap_or("") {
        return Ok(Err(Refused(format!(
            "{file} changed since job {job_id} was stopped (a rollback or another change), and publishing its text now would undo that. Open its text in the editor again and publish it from there"
        ))));
    }
    let mut tx = app
        .store
        .pool()
        .begin()
        .await
        .map_err(crate::ServerError::from)?;
    content_audit_in(
        &mut tx,
        admin,
        "override",
        job.manual_id.as_deref(),
        Some(&revision),
        &format!("published job {job_id}'s text despite the quality gate"),
    )
    .await?;
    // Forcing a stopped rollback through still undoes what it was to undo.
    let new_job = insert_job(
        app,
        &mut tx,
        job.manual_id.as_deref(),
        Some(revision_id),
        admin,
        job.undoes,
    )
    .await?;
    tx.commit().await.map_err(crate::ServerError::from)?;
    let path = manuals_dir.join(&file);
    let new_job = apply_then_run(
        app,
        new_job,
        job.manual_id.as_deref(),
        Some(revision_id),
        admin,
        false,
        move || {
            if markdown.is_empty() {
                // A deletion the gate stopped: delete again.
                let _ = std::fs::remove_file(&path);
                Ok(())
            } else {
                write_atomically(&path, markdown.as_bytes())
            }
        },
    )
    .await?;
    Ok(Ok(new_job))
}

/// How a rollback went.
#[derive(Debug, PartialEq, Eq)]
pub enum RolledBack {
    /// The generation the publish replaced is served again, at once, and the file has its
    /// previous text.
    Swapped,
    /// The index was rebuilt since (a patient's packet was made or deleted), so the replaced
    /// generation lacks that: the previous text is published again by this new job.
    Republished(i64),
}

/// Undoes the latest publish: serves the generation it replaced and puts the file's previous text
/// back; or, when the index was rebuilt since for something else (a patient's packet), publishes
/// the previous text again as a new job. Refused when something was published after it, or the old
/// generation is gone.
pub async fn rollback(
    app: &AppState,
    job_id: i64,
    admin: &str,
) -> std::result::Result<std::result::Result<RolledBack, Refused>, AppError> {
    let _changing = app.folder_change.lock().await;
    // Not under a running job: it would promote a generation built from the folder as it was
    // before this rollback put the previous text back.
    let dir = match folder_to_change(app).await? {
        Ok(dir) => dir,
        Err(refused) => return Ok(Err(refused)),
    };
    let Some(job) = app.store.job(job_id).await? else {
        return Ok(Err(Refused(format!("there is no job {job_id}"))));
    };
    if job.kind != "publish" || job.status != "promoted" {
        return Ok(Err(Refused(format!(
            "job {job_id} is not a promoted publish ({}, {})",
            job.kind, job.status
        ))));
    }
    let served = app.index().generation.clone();
    if job.generation.as_deref() != Some(served.as_str()) {
        return republish_previous(app, &job, &dir, admin).await;
    }
    let (Some(previous), Some(revision_id)) = (job.previous_generation.clone(), job.revision_id)
    else {
        return Ok(Err(Refused(format!(
            "job {job_id} has nothing to return to"
        ))));
    };
    if !generation_kept(app, &previous) {
        return Ok(Err(Refused(format!(
            "generation {previous}, which job {job_id} replaced, is no longer kept (only the latest few are), so it cannot be served again"
        ))));
    }
    if let Err(e) = crate::reindex::serve_generation(app, &previous).await {
        tracing::error!(error = %e.0, job = job_id, "serving a generation again for a rollback");
        return Ok(Err(Refused(format!(
            "generation {previous} cannot be served again: {}",
            without_local_paths(app, &e.0.to_string())
        ))));
    }
    restore_previous(app, Some(revision_id)).await?;
    app.store
        .finish_job(job_id, "rolled back", &previous, &job.report)
        .await?;
    if let Some(undone) = job.undoes {
        // This job was itself a rollback: the publish it undid is served again.
        app.store.mark_job_served_again(undone).await?;
    }
    app.store
        .content_audit(
            admin,
            "rollback",
            job.manual_id.as_deref(),
            None,
            &format!("job {job_id}: {served} -> {previous}"),
        )
        .await?;
    Ok(Ok(RolledBack::Swapped))
}

/// Whether `job` can still be undone by publishing its previous text again: it is the latest
/// publish (nothing since built on its text) and its manual's file still holds that text.
pub async fn can_republish_previous(app: &AppState, job: &Job) -> Result<bool> {
    Ok(republishable(app, job).await?.is_ok())
}

/// The revision to undo (file, the job's text, the text before it), or why there is none.
async fn republishable(
    app: &AppState,
    job: &Job,
) -> Result<std::result::Result<(String, String, Option<String>), Refused>> {
    // Only a publish that reached readers builds on this one's text: a job the gate stopped or
    // that failed put its file back and changed nothing.
    let latest: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(id) FROM index_jobs WHERE kind = 'publish' AND status = 'promoted'",
    )
    .fetch_one(app.store.pool())
    .await?;
    if latest != Some(job.id) {
        return Ok(Err(Refused(format!(
            "job {} is not the latest publish (job {} came after it and built on its text): roll that one back first",
            job.id,
            latest.unwrap_or_default()
        ))));
    }
    let (Some(revision_id), Some(dir)) = (job.revision_id, app.config.demo_manuals.as_deref())
    else {
        return Ok(Err(Refused(format!(
            "job {} has nothing to return to",
            job.id
        ))));
    };
    let (file, markdown, previous): (String, String, Option<String>) = sqlx::query_as(
        "SELECT file, markdown, previous_markdown FROM manual_revisions WHERE id = ?",
    )
    .bind(revision_id)
    .fetch_one(app.store.pool())
    .await?;
    let current = std::fs::read_to_string(dir.join(&file)).ok();
    // A deletion's text is empty and its file gone.
    if current.as_deref().unwrap_or("") != markdown {
        return Ok(Err(Refused(format!(
            "{file} no longer holds the text job {} published, so publishing its previous text again would undo a later change",
            job.id
        ))));
    }
    Ok(Ok((file, markdown, previous)))
}

/// `rollback` once the replaced generation cannot simply be served again: the previous text (or,
/// for a new manual, no file) is published as a new, gated job, which rebuilds with everything
/// else the index gained since (a patient's packet).
async fn republish_previous(
    app: &AppState,
    job: &Job,
    dir: &Path,
    editor: &str,
) -> std::result::Result<std::result::Result<RolledBack, Refused>, AppError> {
    let (file, markdown, previous) = match republishable(app, job).await? {
        Ok(found) => found,
        Err(refused) => return Ok(Err(refused)),
    };
    let Some(manual_id) = job.manual_id.clone() else {
        return Ok(Err(Refused(format!(
            "job {} has nothing to return to",
            job.id
        ))));
    };
    let revision = format!("rollback of job {}", job.id);
    let path = dir.join(&file);
    let current = (!markdown.is_empty()).then_some(markdown.as_str());
    let change = Change {
        manual_id: &manual_id,
        revision: &revision,
        markdown: previous.as_deref().unwrap_or(""),
        previous: current,
        previous_bytes: None,
        file: Path::new(&file),
        editor,
        undoes: Some(job.id),
    };
    let restored = previous.clone();
    let new_job = record_and_reindex(app, change, "rollback", None, move || match &restored {
        Some(text) => write_atomically(&path, text.as_bytes()),
        // The job made this manual: rolling it back removes it.
        None => std::fs::remove_file(&path).map_err(|source| crate::ServerError::Io {
            path: path.clone(),
            source,
        }),
    })
    .await?;
    Ok(Ok(RolledBack::Republished(new_job)))
}

/// Whether `generation` is still on disk to be served again.
pub fn generation_kept(app: &AppState, generation: &str) -> bool {
    app.config.index_dir.as_ref().is_some_and(|dir| {
        scanaid_indexer::generation::generation_dir(dir, generation)
            .join("meta.json")
            .is_file()
    })
}

/// The manuals folder, when a change to it may start now: the server has one, and no other publish,
/// deletion or rollback is running (so each job knows the generation it replaces).
async fn folder_to_change(
    app: &AppState,
) -> std::result::Result<std::result::Result<PathBuf, Refused>, AppError> {
    let Some(dir) = app.config.demo_manuals.clone() else {
        return Ok(Err(Refused(
            "this server was started without a manuals folder; manuals cannot be changed".into(),
        )));
    };
    if has_running_job(app).await? {
        return Ok(Err(Refused(JOB_RUNNING.into())));
    }
    Ok(Ok(dir))
}

async fn has_running_job(app: &AppState) -> Result<bool> {
    let running: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM index_jobs WHERE status = 'running'")
            .fetch_one(app.store.pool())
            .await?;
    Ok(running > 0)
}

/// Records a running publish job on `conn` (the change's transaction); returns its id.
async fn insert_job(
    app: &AppState,
    conn: &mut sqlx::SqliteConnection,
    manual_id: Option<&str>,
    revision_id: Option<i64>,
    by: &str,
    undoes: Option<i64>,
) -> Result<i64> {
    let previous = app.index().generation.clone();
    Ok(sqlx::query_scalar(
        "INSERT INTO index_jobs (kind, manual_id, revision_id, status, previous_generation, started_by, started_at, undoes) VALUES ('publish', ?, ?, 'running', ?, ?, ?, ?) RETURNING id",
    )
    .bind(manual_id)
    .bind(revision_id)
    .bind(&previous)
    .bind(by)
    .bind(now())
    .bind(undoes)
    .fetch_one(conn)
    .await?)
}

/// Runs job `id` (recorded by `insert_job`) on a task of its own (`gated`: behind the manuals'
/// quality checks): takes the build lock, makes the change to the folder (`apply`), builds.
///
/// The lock is taken before the folder changes and held until the job has built (or put the file
/// back): another build (a patient packet's) that read the folder in between would serve the change
/// before its quality gate ran, and the gate would then compare it with itself. The job's rollback
/// point is the generation served once the lock is held, for the same reason. A job the gate stops puts the file's previous text back: the folder always
/// holds what the site serves, or what is being published.
fn run_job(
    app: &AppState,
    id: i64,
    manual_id: Option<&str>,
    revision_id: Option<i64>,
    by: &str,
    gated: bool,
    apply: Box<dyn FnOnce() -> Result<()> + Send>,
) {
    let tx = app.jobs.start(
        id,
        Progress {
            done: 0,
            total: 0,
            status: "running".to_string(),
            report: "building a new generation; the site serves the current one meanwhile"
                .to_string(),
            generation: String::new(),
        },
    );
    let app = app.clone();
    let by_owned = by.to_string();
    let manual_owned = manual_id.map(str::to_string);
    tokio::spawn(async move {
        let reporter = tx.clone();
        let progress = Box::new(move |done: usize, total: usize| {
            reporter.send_modify(|p| {
                p.done = done;
                p.total = total;
            });
        });
        let gate = if gated {
            Some(gate_for(&app, id, revision_id).await)
        } else {
            None
        };
        let building = app.reindex.lock().await;
        let served = app.index().generation.clone();
        let recorded = sqlx::query("UPDATE index_jobs SET previous_generation = ? WHERE id = ?")
            .bind(&served)
            .bind(id)
            .execute(app.store.pool())
            .await;
        // The write is synced to disk: off the async workers, which serve scans.
        let applied = match recorded {
            Ok(_) => tokio::task::spawn_blocking(apply)
                .await
                .unwrap_or_else(|e| Err(e.into())),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = applied {
            tracing::error!(error = ?e, job = id, "a publish could not change the manuals folder");
            drop(building);
            let report = format!(
                "the manuals folder could not be changed, so nothing changed for readers: {}",
                without_local_paths(&app, &e.to_string())
            );
            end_job(&app, &tx, id, ("failed", "", &report)).await;
            return;
        }
        let built = crate::reindex::rebuild_locked(&app, progress, gate).await;
        // Whatever stopped the job (the gate, a failed build), the folder goes back to what the
        // site serves, before any other build (a patient packet's) can read it.
        if built.is_err() {
            if let Err(e) = restore_previous(&app, revision_id).await {
                tracing::error!(error = ?e, job = id, "restoring the file of a job that did not promote");
            }
        }
        drop(building);
        let (status, generation, report) = match built {
            Ok(crate::reindex::Rebuilt { report: r, gate }) => (
                "promoted",
                r.generation.clone(),
                format!(
                    "generation {}: {} chunks, {} embedded, {} reused, {:.1} s{}{}",
                    r.generation,
                    r.n_chunks,
                    r.n_embedded,
                    r.n_reused,
                    r.elapsed_s,
                    if r.problems.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; {} file(s) skipped: {}",
                            r.problems.len(),
                            r.problems
                                .iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    },
                    if gate.is_empty() {
                        String::new()
                    } else {
                        format!("\nquality checks passed:\n{}", gate.join("\n"))
                    }
                ),
            ),
            Err(crate::AppError(crate::ServerError::Index(scanaid_indexer::IndexError::Gate(
                gate,
            )))) => {
                let _ = app
                    .store
                    .content_audit(
                        &by_owned,
                        "publish.blocked",
                        manual_owned.as_deref(),
                        None,
                        &format!("job {id}"),
                    )
                    .await;
                (
                    "blocked",
                    String::new(),
                    format!("the quality gate stopped this publish; nothing changed for readers and the file has its previous text.\n{gate}"),
                )
            }
            Err(e) => ("failed", String::new(), {
                tracing::error!(error = %e.0, job = id, "a publish job failed");
                format!(
                    "nothing changed for readers, and the file has its previous text: {}",
                    without_local_paths(&app, &e.0.to_string())
                )
            }),
        };
        end_job(&app, &tx, id, (status, &generation, &report)).await;
    });
}

/// Records how job `id` ended, (status, generation, report), and tells its watchers.
async fn end_job(
    app: &AppState,
    tx: &watch::Sender<Progress>,
    id: i64,
    (status, generation, report): (&str, &str, &str),
) {
    if let Err(e) = app.store.finish_job(id, status, generation, report).await {
        tracing::error!(error = ?e, job = id, "recording a finished job");
    }
    tx.send_modify(|p| {
        p.status = status.to_string();
        p.generation = generation.to_string();
        p.report = report.to_string();
    });
    app.jobs.end(id);
}

/// The gate of job `job`, whose change is revision `revision_id`: the manual its file held before
/// may leave the site when the change deletes it or gives it another id; no other may. The
/// served text's checks the new text removed are still asked, except by a rollback.
async fn gate_for(app: &AppState, job: i64, revision_id: Option<i64>) -> crate::reindex::Gate {
    let Some(revision_id) = revision_id else {
        return crate::reindex::Gate::default();
    };
    // A rollback goes back to a text that was served: the checks the undone publish added went
    // with what they guarded, and asking them would stop the undo.
    let is_rollback = matches!(app.store.job(job).await, Ok(Some(job)) if job.undoes.is_some());
    let row: std::result::Result<Option<(String, Option<String>, String)>, _> = sqlx::query_as(
        "SELECT markdown, previous_markdown, file FROM manual_revisions WHERE id = ?",
    )
    .bind(revision_id)
    .fetch_optional(app.store.pool())
    .await;
    let (markdown, previous, file) = match row {
        Ok(Some(row)) => row,
        Ok(None) => return crate::reindex::Gate::default(),
        Err(error) => {
            // Stricter, not looser: then no manual may leave, and a deletion is stopped and says so.
            tracing::error!(%error, revision_id, "reading a job's revision for its gate");
            return crate::reindex::Gate::default();
        }
    };
    let parse =
        |text: &str| scanaid_indexer::manual::parse_manual(Path::new(&file), text.as_bytes()).ok();
    let before = previous.as_deref().and_then(parse);
    let after = parse(&markdown);
    // A changed (not deleted) manual: its served checks are still asked of it, under the id the
    // served generation knows it by, so a rename or a removed question cannot let a regression by.
    let served = match (&before, &after) {
        (Some(before), Some(after)) => Some(scanaid_indexer::gate::Served {
            id: before.meta.id.clone(),
            new_id: after.meta.id.clone(),
            removed: before
                .meta
                .checks
                .iter()
                .filter(|c| !is_rollback && !after.meta.checks.contains(c))
                .cloned()
                .collect(),
        }),
        _ => None,
    };
    let (before, after) = (before.map(|m| m.meta.id), after.map(|m| m.meta.id));
    crate::reindex::Gate {
        may_leave: before
            .filter(|id| Some(id) != after.as_ref())
            .into_iter()
            .collect(),
        served,
    }
}

/// `message` with the server's own folders named as editors know them: a job's report and a
/// refusal reach editors and the content API, who need the reason, not where the server keeps its
/// files (the full message is in the log).
pub(crate) fn without_local_paths(app: &AppState, message: &str) -> String {
    let mut out = message.to_string();
    let folders = [
        (app.config.index_dir.as_deref(), "the index folder"),
        (app.config.demo_manuals.as_deref(), "the manuals folder"),
    ];
    for (dir, name) in folders {
        if let Some(dir) = dir {
            out = out.replace(&dir.display().to_string(), name);
        }
    }
    out
}

/// Puts back the text a publish replaced (removes the file of a new manual).
async fn restore_previous(app: &AppState, revision_id: Option<i64>) -> Result<()> {
    let (Some(revision_id), Some(dir)) = (revision_id, app.config.demo_manuals.clone()) else {
        return Ok(());
    };
    restore_revision(&app.store, &dir, revision_id).await
}

/// Puts back, in `dir`, the text revision `revision_id` replaced.
async fn restore_revision(store: &crate::store::Store, dir: &Path, revision_id: i64) -> Result<()> {
    if let Some((file, before, bytes)) = store.revision_before(revision_id).await? {
        let path = dir.join(file);
        // Off the async workers: the write is synced to disk.
        tokio::task::spawn_blocking(move || match (bytes, before) {
            (Some(bytes), _) => write_atomically(&path, &bytes),
            (None, Some(text)) => write_atomically(&path, text.as_bytes()),
            (None, None) => {
                let _ = std::fs::remove_file(&path);
                Ok(())
            }
        })
        .await??;
    }
    Ok(())
}

/// Writes `text` to `path` through a temporary file renamed over it, so a reader (or a crash) never
/// sees half a manual; durably (the file's data, then the folder's entry, reach the disk), since
/// the store records the change as made and a power cut must not leave an empty file behind it.
fn write_atomically(path: &Path, text: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| crate::ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp: PathBuf = path.with_extension(format!("md.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(text).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    // A folder opened read-only can be synced on Unix; elsewhere the rename stands as it is.
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}
