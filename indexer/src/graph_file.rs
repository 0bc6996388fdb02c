//! The HNSW graph kept on disk beside a generation's vectors, so opening a large generation loads its
//! graph instead of rebuilding it (README, "Vector index cost curve": 132 s at 100k vectors, about
//! 22 minutes at 1M, paid at every server start and twice per build before this).
//!
//! The files are hnsw_rs's own dump (`vectors.hnsw.graph`, `vectors.hnsw.data`) plus a sha256
//! manifest of ours. hnsw_rs asserts (panics) on some malformed files and would read others without
//! noticing, so the files are checked against the manifest before hnsw_rs reads them, a load that
//! still panics is caught, and the caller builds the graph instead.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::Hnsw;
use scanaid_models::fetch::sha256_file;

use crate::error::{io_err, IndexError, Result};
use crate::vector::InnerProduct;

const BASENAME: &str = "vectors";
const FILES: [&str; 2] = ["vectors.hnsw.graph", "vectors.hnsw.data"];
const MANIFEST: &str = "vectors.hnsw.sha256";

pub type Graph = Hnsw<'static, f32, InnerProduct>;

/// Writes `graph` into `dir`, the manifest last: a directory without the manifest has no graph.
pub fn save(graph: &Graph, dir: &Path) -> Result<()> {
    let failed = |message: String| IndexError::Meta {
        path: dir.join(FILES[0]),
        message,
    };
    // hnsw_rs panics when it cannot create its files.
    let dumped = catch_unwind(AssertUnwindSafe(|| graph.file_dump(dir, BASENAME)))
        .map_err(|_| failed("hnsw_rs could not create the graph files".to_string()))?
        .map_err(|e| failed(format!("writing the graph: {e}")))?;
    if dumped != BASENAME {
        // hnsw_rs picks another name when the files exist and it may not overwrite them.
        return Err(failed(format!("the graph was written as {dumped:?}")));
    }
    let mut manifest = String::new();
    for name in FILES {
        let sum = sha256_file(&dir.join(name)).map_err(IndexError::from)?;
        manifest.push_str(&format!("{sum}  {name}\n"));
    }
    let path = dir.join(MANIFEST);
    let mut file = std::fs::File::create(&path).map_err(io_err(&path))?;
    file.write_all(manifest.as_bytes()).map_err(io_err(&path))?;
    file.sync_all().map_err(io_err(&path))?;
    Ok(())
}

/// Loads the graph saved in `dir` for `rows` vectors of `dim` values. `Ok(None)` when the directory
/// has none (a small collection, or a generation written before graphs were kept); `Err` says why a
/// saved graph cannot be used.
pub fn load(dir: &Path, rows: usize, dim: usize) -> std::result::Result<Option<Graph>, String> {
    let manifest = match std::fs::read_to_string(dir.join(MANIFEST)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {MANIFEST}: {e}")),
    };
    for name in FILES {
        let expected = manifest
            .lines()
            .find_map(|line| line.strip_suffix(name)?.strip_suffix("  "))
            .ok_or_else(|| format!("{MANIFEST} has no checksum for {name}"))?;
        let actual = sha256_file(&dir.join(name)).map_err(|e| e.to_string())?;
        if actual != expected {
            return Err(format!("{name} does not match its checksum"));
        }
    }
    // hnsw_rs ties the loaded graph's lifetime to its loader. Without memory mapping the loader
    // holds only a path and options, so it is leaked (a few hundred bytes per generation opened)
    // and the graph owns everything it uses.
    let graph: Graph = catch_unwind(AssertUnwindSafe(|| {
        let loader: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
        loader.load_hnsw::<f32, InnerProduct>()
    }))
    .map_err(|_| "hnsw_rs could not read the graph files".to_string())?
    .map_err(|e| format!("reading the graph: {e}"))?;
    let graph_dim = graph.get_point_indexation().get_data_dimension();
    if graph.get_nb_point() != rows || graph_dim != dim {
        return Err(format!(
            "the graph holds {} vectors of {graph_dim} values, the generation {rows} of {dim}",
            graph.get_nb_point(),
        ));
    }
    Ok(Some(graph))
}
