//! Embeddings keyed by the sha256 of (model, embedding text), kept beside the generations so a
//! rebuild re-embeds only chunks whose text changed. Append-only; a torn tail record (a crash during
//! a write) is cut off on open, so the next append starts on a record boundary.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{io_err, Result};

const MAGIC: &[u8; 8] = b"SAEMB01\n";

pub type Key = [u8; 32];

pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    entries: HashMap<Key, Vec<f32>>,
    pending: Vec<(Key, Vec<f32>)>,
}

pub fn key(model_id: &str, text: &str) -> Key {
    let mut h = Sha256::new();
    h.update(model_id.as_bytes());
    h.update([0u8]);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// The cache file of one model's vectors of one dimension.
pub fn file_name(model_id: &str, dim: usize) -> String {
    format!("{}.{dim}.bin", file_stem(model_id))
}

/// A model id as a file name: letters, digits, '-' and '.' kept, anything else '_'.
pub fn file_stem(model_id: &str) -> String {
    model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl EmbeddingCache {
    /// Opens (or starts) the cache file for `model_id` under `dir`.
    pub fn open(dir: &Path, model_id: &str, dim: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(file_name(model_id, dim));
        let mut entries = HashMap::new();
        if path.exists() {
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path))?;
            let record = 32 + 4 * dim;
            // A write cut short leaves a partial last record (or, before the first, no header):
            // cut the file back to what reads whole, or later appends would land misaligned and
            // never be read again (and `retain_only` would not see what it must delete).
            let whole = if bytes.starts_with(MAGIC) {
                MAGIC.len() + (bytes.len() - MAGIC.len()) / record * record
            } else {
                0
            };
            if whole != bytes.len() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(whole as u64).map_err(io_err(&path))?;
                if whole == 0 {
                    // Nothing readable: start the file again, header first.
                    std::fs::write(&path, MAGIC).map_err(io_err(&path))?;
                }
                bytes.truncate(whole);
            }
            if bytes.starts_with(MAGIC) {
                for rec in bytes[MAGIC.len()..].chunks_exact(record) {
                    let mut k = [0u8; 32];
                    k.copy_from_slice(&rec[..32]);
                    let v = rec[32..]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    entries.insert(k, v);
                }
            }
        }
        Ok(Self {
            path,
            dim,
            entries,
            pending: Vec::new(),
        })
    }

    pub fn get(&self, key: &Key) -> Option<&Vec<f32>> {
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: Key, vector: Vec<f32>) {
        debug_assert_eq!(vector.len(), self.dim);
        self.pending.push((key, vector.clone()));
        self.entries.insert(key, vector);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps only the entries `keep` names and rewrites the file without the others (through a
    /// temporary file renamed over it, so a crash leaves the old file or the new one); returns how
    /// many went. The vectors of deleted documents (a patient's) must not outlive them.
    pub fn retain_only(&mut self, keep: &HashSet<Key>) -> Result<usize> {
        let before = self.entries.len();
        self.entries.retain(|k, _| keep.contains(k));
        self.pending.clear();
        let removed = before - self.entries.len();
        if removed == 0 {
            return Ok(0);
        }
        let tmp = self.path.with_extension("bin.tmp");
        {
            let file = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
            let mut w = std::io::BufWriter::new(file);
            w.write_all(MAGIC).map_err(io_err(&tmp))?;
            for (k, v) in &self.entries {
                w.write_all(k).map_err(io_err(&tmp))?;
                for x in v {
                    w.write_all(&x.to_le_bytes()).map_err(io_err(&tmp))?;
                }
            }
            w.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        Ok(removed)
    }

    /// Appends the new entries to the file.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let fresh = std::fs::metadata(&self.path).map_or(true, |m| m.len() == 0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        let mut w = std::io::BufWriter::new(file);
        if fresh {
            w.write_all(MAGIC).map_err(io_err(&self.path))?;
        }
        for (k, v) in self.pending.drain(..) {
            w.write_all(&k).map_err(io_err(&self.path))?;
            for x in v {
                w.write_all(&x.to_le_bytes()).map_err(io_err(&self.path))?;
            }
        }
        w.flush().map_err(io_err(&self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(x: f32) -> Vec<f32> {
        vec![x; 4]
    }

    #[test]
    fn a_write_cut_short_is_cut_back_and_later_appends_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = key("m", "a");
        let b = key("m", "b");
        let mut cache = EmbeddingCache::open(dir.path(), "m", 4).unwrap();
        cache.insert(a, vector(1.0));
        cache.flush().unwrap();
        // A crash in the middle of the next record.
        let path = dir.path().join(file_name("m", 4));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[7u8; 10]).unwrap();
        drop(f);
        let mut cache = EmbeddingCache::open(dir.path(), "m", 4).unwrap();
        assert_eq!(cache.get(&a), Some(&vector(1.0)));
        cache.insert(b, vector(2.0));
        cache.flush().unwrap();
        let cache = EmbeddingCache::open(dir.path(), "m", 4).unwrap();
        assert_eq!(cache.get(&a), Some(&vector(1.0)));
        assert_eq!(
            cache.get(&b),
            Some(&vector(2.0)),
            "the append after the repair reads back"
        );
    }

    #[test]
    fn a_file_without_its_header_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name("m", 4));
        // Created, then the process died before the header was written; or a damaged header.
        for start in [&b""[..], &b"garbage-bytes"[..]] {
            std::fs::write(&path, start).unwrap();
            let mut cache = EmbeddingCache::open(dir.path(), "m", 4).unwrap();
            assert!(cache.is_empty());
            cache.insert(key("m", "b"), vector(2.0));
            cache.flush().unwrap();
            let cache = EmbeddingCache::open(dir.path(), "m", 4).unwrap();
            assert_eq!(cache.get(&key("m", "b")), Some(&vector(2.0)));
        }
    }
}
