//! Building and swapping in a new index generation while the site keeps serving the one it has: from
//! the manuals folder plus the packets' documents, only changed chunks embedded. One build at a time
//! (`Inner::reindex`, and the index directory's writer lock across processes). Readers keep the
//! `Arc` they took; the swap is one pointer.

use std::sync::Arc;

use scanaid_indexer::{BuildReport, SearchIndex};

use crate::{AppError, AppState, ServerError};

/// Progress of the embedding step: (done, total) chunks needing new embeddings.
pub type Progress = Box<dyn FnMut(usize, usize) + Send>;

/// A promoted generation, and the quality gate's report (empty when the build was not gated).
pub struct Rebuilt {
    pub report: BuildReport,
    pub gate: Vec<String>,
}

/// What a gated build must show before it is served: the manuals' quality checks hold against the
/// generation served now, and no manual served now leaves the site except those named here (the
/// one a deletion removes, or the old id of a renamed one).
#[derive(Debug, Default, Clone)]
pub struct Gate {
    pub may_leave: Vec<String>,
    /// The changed manual's served version (its id there, its removed checks), when it has one.
    pub served: Option<scanaid_indexer::gate::Served>,
}

/// Takes the build lock, then `rebuild_locked`.
pub async fn rebuild(
    app: &AppState,
    progress: Progress,
    gate: Option<Gate>,
) -> Result<Rebuilt, AppError> {
    let _building = app.reindex.lock().await;
    rebuild_locked(app, progress, gate).await
}

/// Builds a generation from the manuals folder and the packets' documents and serves it. The caller
/// holds `app.reindex`. Needs `config.demo_manuals` and `config.index_dir`. With a `gate`, the
/// manuals' quality checks must hold against the generation served now (`scanaid_indexer::gate`)
/// and no manual may leave the site but those it names, or nothing changes and the error is
/// `IndexError::Gate` with the report.
pub async fn rebuild_locked(
    app: &AppState,
    mut progress: Progress,
    gate: Option<Gate>,
) -> Result<Rebuilt, AppError> {
    let gated = gate.is_some();
    let Gate {
        may_leave,
        served: changed,
    } = gate.unwrap_or_default();
    let (Some(manuals_dir), Some(index_dir)) = (
        app.config.demo_manuals.clone(),
        app.config.index_dir.clone(),
    ) else {
        return Err(not_configured());
    };
    let documents = crate::patient_chat::packet_manuals(app).await?;
    let embedder = app.embedder.clone();
    let served = app.index();
    let started = std::time::Instant::now();
    let built = tokio::task::spawn_blocking(move || {
        let gate_lines = std::sync::Mutex::new(Vec::new());
        // The manuals' own questions, read only when they are asked (a gated publish).
        let (manuals, problems) = if gated {
            scanaid_indexer::manual::load_manuals(&manuals_dir).map_err(|e| {
                scanaid_indexer::IndexError::Io {
                    path: manuals_dir.clone(),
                    source: e,
                }
            })?
        } else {
            (Vec::new(), Vec::new())
        };
        let check = |new: &SearchIndex| -> Result<(), String> {
            let leaving = leaving_the_site(&served, new, &may_leave, &problems, &manuals_dir);
            let report = scanaid_indexer::gate::evaluate(
                &manuals,
                Some(served.as_ref()),
                new,
                embedder.as_ref(),
                changed.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            let mut lines = leaving.clone();
            lines.extend(report.lines());
            *gate_lines.lock().expect("gate report") = lines.clone();
            if report.passed() && leaving.is_empty() {
                Ok(())
            } else {
                Err(lines.join("\n"))
            }
        };
        let report = scanaid_indexer::index_corpus_gated(
            &manuals_dir,
            &documents,
            &index_dir,
            embedder.as_ref(),
            scanaid_indexer::ChunkingConfig::default(),
            &mut *progress,
            if gated { Some(&check) } else { None },
        )?;
        let index = SearchIndex::open_for(&index_dir, embedder.as_ref())?;
        let gate = gate_lines.into_inner().expect("gate report");
        Ok::<_, scanaid_indexer::IndexError>((Rebuilt { report, gate }, index))
    })
    .await?;
    app.metrics
        .index_build(built.is_ok(), started.elapsed().as_secs_f64());
    let (rebuilt, index) = built?;
    *app.index.write().expect("index lock") = Arc::new(index);
    Ok(rebuilt)
}

/// One line per manual the site serves now that `new` would no longer have, other than those in
/// `may_leave`: its file was removed or broken outside the editor (a hand edit, a sync), and a
/// publish of another manual would otherwise take it off every page without a word. `problems`
/// (the folder's unusable files) say why, with paths relative to `manuals_dir`.
fn leaving_the_site(
    served: &SearchIndex,
    new: &SearchIndex,
    may_leave: &[String],
    problems: &[scanaid_indexer::manual::ManualProblem],
    manuals_dir: &std::path::Path,
) -> Vec<String> {
    let manual_ids = |index: &SearchIndex| -> std::collections::BTreeSet<String> {
        index
            .chunks()
            .iter()
            .filter(|c| c.owner.is_none())
            .map(|c| c.manual_id.clone())
            .collect()
    };
    let kept = manual_ids(new);
    let why = if problems.is_empty() {
        "its file is no longer in the manuals folder".to_string()
    } else {
        format!(
            "its file is gone or cannot be read; unusable files: {}",
            problems
                .iter()
                .map(|p| format!(
                    "{}: {}",
                    p.path
                        .strip_prefix(manuals_dir)
                        .unwrap_or(&p.path)
                        .display(),
                    p.reason
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    manual_ids(served)
        .into_iter()
        .filter(|id| !kept.contains(id) && !may_leave.contains(id))
        .map(|id| {
            format!(
                "{id}: served now, but this build would take it off the site ({why}). Fix or restore that file, \
                 or an administrator can publish anyway"
            )
        })
        .collect()
}

/// Serves generation `generation` again (it must still be kept), under the build lock.
pub async fn serve_generation(app: &AppState, generation: &str) -> Result<(), AppError> {
    let _building = app.reindex.lock().await;
    let Some(index_dir) = app.config.index_dir.clone() else {
        return Err(not_configured());
    };
    let embedder = app.embedder.clone();
    let generation = generation.to_string();
    let index = tokio::task::spawn_blocking(move || {
        let _writer = scanaid_indexer::generation::lock_writers(&index_dir)?;
        let dir = scanaid_indexer::generation::generation_dir(&index_dir, &generation);
        let index = SearchIndex::open_generation_dir(&dir, &generation)?;
        if index.meta.model_id != embedder.model_id() {
            return Err(scanaid_indexer::IndexError::BadRequest(format!(
                "generation {generation} was built with {}",
                index.meta.model_id
            )));
        }
        scanaid_indexer::generation::point_current(&index_dir, &generation)?;
        Ok(index)
    })
    .await??;
    *app.index.write().expect("index lock") = Arc::new(index);
    Ok(())
}

fn not_configured() -> AppError {
    AppError::from(ServerError::Config(
        "this server has no manuals folder and index directory to rebuild from".to_string(),
    ))
}
