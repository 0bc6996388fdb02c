//! Index generations on disk. A build writes `generations/.building-*`, verifies it, renames it to
//! `generations/gNNNNNN` and then points `CURRENT` at it with an atomic rename; readers resolve
//! `CURRENT` once and only ever open complete, immutable generations. Older generations are kept for
//! rollback (a bounded number).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{io_err, IndexError, Result};

/// 2: chunks own one vector per embedding window (`vector-items.u32`).
pub const FORMAT_VERSION: u32 = 2;
const CURRENT: &str = "CURRENT";
const GENERATIONS: &str = "generations";

/// What a generation says about itself (`meta.json`). Versioned: a reader refuses other versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationMeta {
    pub format_version: u32,
    pub generation: String,
    pub created_unix: u64,
    pub model_id: String,
    pub dim: usize,
    pub n_chunks: usize,
    pub n_embedded: usize,
    pub n_reused: usize,
    pub chunk_target_tokens: usize,
    pub chunk_max_tokens: usize,
    /// Body tokens per embedding window, and how many vectors the chunks own in all.
    pub embed_window_tokens: usize,
    pub n_vectors: usize,
    /// The BM25 analysis chain the text index was built with (`lexical::ANALYZER_VERSION`).
    #[serde(default)]
    pub analyzer: String,
    pub documents: Vec<DocumentSummary>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    pub revision: String,
    pub language: String,
    pub n_chunks: usize,
}

pub fn generations_dir(index_dir: &Path) -> PathBuf {
    index_dir.join(GENERATIONS)
}

pub fn generation_dir(index_dir: &Path, generation: &str) -> PathBuf {
    generations_dir(index_dir).join(generation)
}

/// The generation `CURRENT` names, if any.
pub fn current(index_dir: &Path) -> Result<Option<String>> {
    let path = index_dir.join(CURRENT);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Complete generations, oldest first.
pub fn list(index_dir: &Path) -> Result<Vec<String>> {
    let dir = generations_dir(index_dir);
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<String> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with('g') && n[1..].chars().all(|c| c.is_ascii_digit()))
        .collect();
    out.sort();
    Ok(out)
}

/// Holds the index directory's writer lock until dropped: one build, rollback or prune at a time,
/// across processes (the server's re-index, `scanaid index`, two test binaries). Readers never
/// take it. The lock is the OS's (`flock`), so a writer that dies releases it.
pub fn lock_writers(index_dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(index_dir).map_err(io_err(index_dir))?;
    let path = index_dir.join(".writer.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// A fresh, empty staging directory and the name the generation will get.
pub fn stage(index_dir: &Path) -> Result<(String, PathBuf)> {
    let dir = generations_dir(index_dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let next = list(index_dir)?
        .last()
        .and_then(|g| g[1..].parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let name = format!("g{next:06}");
    remove_stale_staging(index_dir)?;
    let staging = dir.join(format!(".building-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    Ok((name, staging))
}

/// Deletes what builds that died (killed, out of memory, power lost) left half-built: their text
/// and vectors would otherwise stay on disk for good, unseen by `list`, `prune` and rollback. The
/// caller holds `lock_writers`, so no build is running; returns how many went.
pub fn remove_stale_staging(index_dir: &Path) -> Result<usize> {
    let dir = generations_dir(index_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".building-")
        {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Moves a verified staging directory into place and points `CURRENT` at it.
pub fn promote(index_dir: &Path, staging: &Path, generation: &str) -> Result<()> {
    let target = generation_dir(index_dir, generation);
    std::fs::rename(staging, &target).map_err(io_err(&target))?;
    sync_dir(&generations_dir(index_dir));
    point_current(index_dir, generation)
}

/// Atomically replaces `CURRENT` (write a temp file, fsync, rename over).
pub fn point_current(index_dir: &Path, generation: &str) -> Result<()> {
    let tmp = index_dir.join(format!(".CURRENT.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        std::io::Write::write_all(&mut f, generation.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    let path = index_dir.join(CURRENT);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(index_dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable on filesystems that need it.
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Points `CURRENT` at the newest generation older than the current one; returns (from, to).
pub fn rollback(index_dir: &Path) -> Result<(String, String)> {
    if !index_dir.is_dir() {
        return Err(IndexError::NoIndex {
            dir: index_dir.to_path_buf(),
        });
    }
    let _writer = lock_writers(index_dir)?;
    let now = current(index_dir)?.ok_or_else(|| IndexError::NoIndex {
        dir: index_dir.to_path_buf(),
    })?;
    let older = list(index_dir)?
        .into_iter()
        .filter(|g| g.as_str() < now.as_str())
        .rfind(|g| read_meta(&generation_dir(index_dir, g)).is_ok())
        .ok_or_else(|| IndexError::NoRollback(format!("{now} is the oldest kept generation")))?;
    point_current(index_dir, &older)?;
    Ok((now, older))
}

/// Deletes all but the newest `keep` generations, never the current one.
pub fn prune(index_dir: &Path, keep: usize) -> Result<Vec<String>> {
    let now = current(index_dir)?;
    let all = list(index_dir)?;
    let n_drop = all.len().saturating_sub(keep);
    let mut dropped = Vec::new();
    for g in all.into_iter().take(n_drop) {
        if Some(&g) == now.as_ref() {
            continue;
        }
        let dir = generation_dir(index_dir, &g);
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        dropped.push(g);
    }
    Ok(dropped)
}

pub fn write_meta(dir: &Path, meta: &GenerationMeta) -> Result<()> {
    let path = dir.join("meta.json");
    let text = serde_json::to_string_pretty(meta).expect("meta serialises");
    write_synced(&path, text.as_bytes())
}

/// Writes a file of a generation and flushes it to disk: `CURRENT` may name the generation right
/// after, and a power loss must not leave it pointing at an empty file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// The largest embedding dimension a generation may declare (the models here have 384).
pub const MAX_DIM: usize = 65_536;

pub fn read_meta(dir: &Path) -> Result<GenerationMeta> {
    let path = dir.join("meta.json");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let meta: GenerationMeta = serde_json::from_str(&text).map_err(|e| IndexError::Meta {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(IndexError::Meta {
            path,
            message: format!(
                "index format {} but this scanaid reads format {FORMAT_VERSION}; rebuild with `scanaid index`",
                meta.format_version
            ),
        });
    }
    // Sizes read from a file are checked before anything is computed from them.
    if !(1..=MAX_DIM).contains(&meta.dim) {
        return Err(IndexError::Meta {
            path,
            message: format!(
                "vector dimension {} is outside 1 to {MAX_DIM}; the file is damaged, rebuild with `scanaid index`",
                meta.dim
            ),
        });
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_a_build_removes_what_killed_builds_left_and_numbers_on() {
        let index_dir = tempfile::tempdir().unwrap();
        let dir = generations_dir(index_dir.path());
        std::fs::create_dir_all(dir.join("g000003")).unwrap();
        let dead = dir.join(".building-g000004-4242");
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::write(dead.join("chunks.jsonl"), "a deleted manual's text").unwrap();

        let (name, staging) = stage(index_dir.path()).unwrap();
        assert_eq!(
            name, "g000004",
            "numbered after the last promoted generation"
        );
        assert!(!dead.exists(), "the dead build's folder is gone");
        assert!(staging.is_dir());
        assert_eq!(
            list(index_dir.path()).unwrap(),
            ["g000003"],
            "staging is not listed"
        );
    }
}
