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

/// Takes the build lock, then `rebuild_locked`.
pub async fn rebuild(app: &AppState, progress: Progress, gated: bool) -> Result<Rebuilt, AppError> {
    let _building = app.reindex.lock().await;
    rebuild_locked(app, progress, gated).await
}

/// Builds a generation from the manuals folder and the packets' documents and serves it. The caller
/// holds `app.reindex`. Needs `config.demo_manuals` and `config.index_dir`. `gated`: the manuals'
/// quality checks must hold against the generation served now (`scanaid_indexer::gate`), or
/// nothing changes and the error is `IndexError::Gate` with the report.
pub async fn rebuild_locked(
    app: &AppState,
    mut progress: Progress,
    gated: bool,
) -> Result<Rebuilt, AppError> {
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
        let manuals = if gated {
            scanaid_indexer::manual::load_manuals(&manuals_dir)
                .map_err(|e| scanaid_indexer::IndexError::Io {
                    path: manuals_dir.clone(),
                    source: e,
                })?
                .0
        } else {
            Vec::new()
        };
        let check = |new: &SearchIndex| -> Result<(), String> {
            let report = scanaid_indexer::gate::evaluate(
                &manuals,
                Some(served.as_ref()),
                new,
                embedder.as_ref(),
            )
            .map_err(|e| e.to_string())?;
            let lines = report.lines();
            *gate_lines.lock().expect("gate report") = lines.clone();
            if report.passed() {
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
