//! The dense leg: unit vectors of the chunks, searched by inner product. Small collections are
//! searched exactly (faster than a graph below a few tens of thousands of vectors, and never wrong);
//! larger ones through an HNSW graph (hnsw_rs). Filters are an allow-mask consulted during the search.
//! A chunk may own several vectors (one per embedding window); its score is the best of them.

use std::io::{Read, Write};
use std::path::Path;

use hnsw_rs::prelude::{Distance, Hnsw};

use crate::error::{io_err, IndexError, Result};
use crate::graph_file;

/// Up to this many vectors, exact search (see the scale benchmark in the README for the crossover).
pub const EXACT_MAX: usize = 20_000;
/// From this many vectors an exact scan is split between two threads (below it, waking the second
/// thread costs more than half the scan).
const PARALLEL_EXACT_ROWS: usize = 4096;
/// Below this share of allowed vectors a filtered query scans the allowed ones exactly: a graph walk
/// that must skip most nodes loses recall.
const SELECTIVE_FILTER: f64 = 0.05;

/// HNSW construction and search settings.
#[derive(Debug, Clone, Copy)]
pub struct HnswParams {
    pub max_connections: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            max_connections: 16,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

impl HnswParams {
    /// The settings for a collection of `rows` vectors: the search breadth grows with the
    /// collection. Measured on clustered synthetic vectors (README, "Vector index cost curve"):
    /// ef_search 128 finds the exact top 10 at 10k and 100k vectors (recall 1.000) but 0.670 of it
    /// at 1M, where 1,024 gives 0.934 at 5.7 ms (the exact scan: 59 ms). So at least 128, and one
    /// per thousand vectors beyond.
    pub fn for_rows(rows: usize) -> Self {
        Self {
            ef_search: 128.max(rows / 1000),
            ..Self::default()
        }
    }
}

pub struct VectorIndex {
    dim: usize,
    data: Vec<f32>,
    graph: Option<Hnsw<'static, f32, InnerProduct>>,
    params: HnswParams,
    /// When items own several rows: item i owns rows `starts[i]..starts[i + 1]`, and `item_of[row]`.
    groups: Option<Groups>,
}

struct Groups {
    starts: Vec<u32>,
    item_of: Vec<u32>,
}

impl VectorIndex {
    /// Wraps row-major vectors (`n * dim` values). Builds a graph only above `exact_max` vectors.
    pub fn new(dim: usize, data: Vec<f32>, exact_max: usize, params: HnswParams) -> Self {
        Self::with_graph(dim, data, exact_max, params, None)
    }

    /// Like `new`, but takes the graph saved in `dir` (`save_graph`) when there is a sound one, so a
    /// large generation opens without rebuilding it. A graph that cannot be used is rebuilt, with a
    /// warning saying why.
    pub fn open(
        dim: usize,
        data: Vec<f32>,
        exact_max: usize,
        params: HnswParams,
        dir: &Path,
    ) -> Self {
        let rows = data.len() / dim.max(1);
        let saved = if rows > exact_max {
            graph_file::load(dir, rows, dim).unwrap_or_else(|reason| {
                tracing::warn!(
                    dir = %dir.display(),
                    %reason,
                    "the saved vector graph cannot be used; building it again"
                );
                None
            })
        } else {
            None
        };
        Self::with_graph(dim, data, exact_max, params, saved)
    }

    /// The index over `data`, with `saved` as its graph or, above `exact_max` rows without one, a
    /// graph built now.
    fn with_graph(
        dim: usize,
        data: Vec<f32>,
        exact_max: usize,
        params: HnswParams,
        saved: Option<graph_file::Graph>,
    ) -> Self {
        assert!(
            dim > 0 && data.len().is_multiple_of(dim),
            "vector data must be a whole number of rows"
        );
        let n = data.len() / dim;
        let graph = saved.or_else(|| (n > exact_max).then(|| build_graph(dim, &data, params)));
        Self {
            dim,
            data,
            graph,
            params,
            groups: None,
        }
    }

    /// Saves the graph (if this index has one) into `dir` for `open`. Returns whether it did.
    pub fn save_graph(&self, dir: &Path) -> Result<bool> {
        match &self.graph {
            Some(graph) => graph_file::save(graph, dir).map(|()| true),
            None => Ok(false),
        }
    }

    /// Groups rows into items: item i owns rows `starts[i]..starts[i + 1]` (`starts[0] == 0`, the last
    /// equals the number of rows, every item owns at least one row). Searches then rank items.
    pub fn with_items(mut self, starts: Vec<u32>) -> std::result::Result<Self, String> {
        let n_rows = self.rows();
        if starts.first() != Some(&0) || starts.last().map(|&l| l as usize) != Some(n_rows) {
            return Err(format!("item offsets must run from 0 to {n_rows}"));
        }
        if starts.windows(2).any(|w| w[1] <= w[0]) {
            return Err("every item needs at least one vector, in order".to_string());
        }
        if starts.len() - 1 == n_rows {
            return Ok(self); // one row per item: nothing to group
        }
        let mut item_of = Vec::with_capacity(n_rows);
        for (item, w) in starts.windows(2).enumerate() {
            item_of.extend(std::iter::repeat_n(item as u32, (w[1] - w[0]) as usize));
        }
        self.groups = Some(Groups { starts, item_of });
        Ok(self)
    }

    /// Number of items (chunks) searched.
    pub fn len(&self) -> usize {
        match &self.groups {
            Some(g) => g.starts.len() - 1,
            None => self.rows(),
        }
    }

    /// Number of stored vectors.
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim
    }

    fn item_of(&self, row: usize) -> usize {
        match &self.groups {
            Some(g) => g.item_of[row] as usize,
            None => row,
        }
    }

    /// The item's score for a query: the best of its vectors.
    pub fn item_score(&self, query: &[f32], item: usize) -> f32 {
        let (from, to) = match &self.groups {
            Some(g) => (g.starts[item] as usize, g.starts[item + 1] as usize),
            None => (item, item + 1),
        };
        (from..to)
            .map(|r| dot(query, self.row(r)))
            .fold(f32::NEG_INFINITY, f32::max)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn uses_graph(&self) -> bool {
        self.graph.is_some()
    }

    pub fn row(&self, ord: usize) -> &[f32] {
        &self.data[ord * self.dim..(ord + 1) * self.dim]
    }

    /// Sets how many candidates a graph search keeps (recall against latency; the scale benchmark
    /// measures several on one graph).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.max(1);
    }

    /// Top `k` items by inner product as (item, cosine), best first. `allowed[item]` false hides an item.
    pub fn search(&self, query: &[f32], k: usize, allowed: Option<&[bool]>) -> Vec<(u32, f32)> {
        if k == 0 || self.is_empty() {
            return Vec::new();
        }
        let selective = allowed.is_some_and(|mask| {
            let n_allowed = mask.iter().filter(|&&a| a).count();
            (n_allowed as f64) < SELECTIVE_FILTER * mask.len() as f64
        });
        match (&self.graph, selective) {
            (Some(graph), false) => {
                // Enough rows to cover k items when items own several rows.
                let per_item = self.rows().div_ceil(self.len().max(1));
                let k_rows = k * per_item;
                let ef = self.params.ef_search.max(k_rows);
                let found = match allowed {
                    Some(mask) => {
                        let filter =
                            |id: &usize| mask.get(self.item_of(*id)).copied().unwrap_or(false);
                        graph.search_filter(query, k_rows, ef, Some(&filter))
                    }
                    None => graph.search(query, k_rows, ef),
                };
                // The graph's distance is 1 - dot; results come best first, so an item's first
                // row is its best.
                let mut seen = std::collections::HashSet::new();
                found
                    .into_iter()
                    .map(|n| (self.item_of(n.d_id) as u32, 1.0 - n.distance))
                    .filter(|(item, _)| seen.insert(*item))
                    .take(k)
                    .collect()
            }
            _ => self.exact(query, k, allowed),
        }
    }

    /// Exact top `k` items by scanning every (allowed) vector.
    pub fn exact(&self, query: &[f32], k: usize, allowed: Option<&[bool]>) -> Vec<(u32, f32)> {
        let items = match &self.groups {
            Some(g) => g.starts.len() - 1,
            None => self.data.len() / self.dim,
        };
        if self.data.len() / self.dim < PARALLEL_EXACT_ROWS || rayon::current_num_threads() < 2 {
            return self.exact_items(query, k, allowed, 0..items).into_sorted();
        }
        // Two halves on two cores: the scan reads every vector, so it is bound by memory
        // bandwidth one core cannot use alone.
        let middle = items / 2;
        let (mut first, second) = rayon::join(
            || self.exact_items(query, k, allowed, 0..middle),
            || self.exact_items(query, k, allowed, middle..items),
        );
        for (ord, score) in second.into_sorted() {
            first.push(ord, score);
        }
        first.into_sorted()
    }

    /// The best `k` of the items in `range`.
    fn exact_items(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&[bool]>,
        range: std::ops::Range<usize>,
    ) -> TopK {
        let mut top = TopK::new(k);
        match &self.groups {
            None => {
                for ord in range {
                    if allowed.is_some_and(|mask| !mask[ord]) {
                        continue;
                    }
                    top.push(ord as u32, dot(query, self.row(ord)));
                }
            }
            Some(g) => {
                for item in range {
                    if allowed.is_some_and(|mask| !mask[item]) {
                        continue;
                    }
                    let best = (g.starts[item] as usize..g.starts[item + 1] as usize)
                        .map(|r| dot(query, self.row(r)))
                        .fold(f32::NEG_INFINITY, f32::max);
                    top.push(item as u32, best);
                }
            }
        }
        top
    }

    /// Writes item offsets as little-endian u32.
    pub fn write_starts(path: &Path, starts: &[u32]) -> Result<()> {
        let bytes: Vec<u8> = starts.iter().flat_map(|s| s.to_le_bytes()).collect();
        crate::generation::write_synced(path, &bytes)
    }

    pub fn read_starts(path: &Path) -> Result<Vec<u32>> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        if bytes.len() % 4 != 0 {
            return Err(IndexError::Meta {
                path: path.to_path_buf(),
                message: format!("{} bytes is not a whole number of u32 offsets", bytes.len()),
            });
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Writes the vectors as little-endian f32 rows.
    pub fn write_vectors(path: &Path, data: &[f32]) -> Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_err(path))?);
        for v in data {
            file.write_all(&v.to_le_bytes()).map_err(io_err(path))?;
        }
        let file = file
            .into_inner()
            .map_err(|e| io_err(path)(e.into_error()))?;
        file.sync_all().map_err(io_err(path))?;
        Ok(())
    }

    pub fn read_vectors(path: &Path, dim: usize) -> Result<Vec<f32>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err(path))?;
        if bytes.len() % (4 * dim) != 0 {
            return Err(IndexError::Meta {
                path: path.to_path_buf(),
                message: format!(
                    "{} bytes is not a whole number of {dim}-d f32 rows",
                    bytes.len()
                ),
            });
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

fn build_graph(dim: usize, data: &[f32], params: HnswParams) -> Hnsw<'static, f32, InnerProduct> {
    let n = data.len() / dim;
    // hnsw_rs's maximum (its dump format requires it); levels are drawn with scale 1 / ln(M), so a
    // graph of n points reaches about log_M(n) of them anyway.
    let max_layer = 16;
    let graph = Hnsw::new(
        params.max_connections,
        n,
        max_layer,
        params.ef_construction,
        InnerProduct,
    );
    let rows: Vec<(&[f32], usize)> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, r)| (r, i))
        .collect();
    graph.parallel_insert_slice(&rows);
    graph
}

/// 1 - inner product, clamped at 0. anndists' `DistDot` asserts `1 - dot >= 0`, which rounding breaks
/// for a unit vector against itself (dot = 1.0000001): a panic in a search path. This one cannot fail.
#[derive(Debug, Clone, Copy, Default)]
pub struct InnerProduct;

impl Distance<f32> for InnerProduct {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// Inner product with eight independent accumulators over exact 8-wide chunks (no bounds checks in
/// the loop), so the compiler emits packed FMAs.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A bounded min-heap keeping the `k` best (ord, score) pairs; ties broken by lower ord.
pub struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Scored>>,
}

#[derive(PartialEq)]
struct Scored(f32, u32);
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    pub fn push(&mut self, ord: u32, score: f32) {
        if self.k == 0 {
            return;
        }
        let item = std::cmp::Reverse(Scored(score, ord));
        if self.heap.len() < self.k {
            self.heap.push(item);
        } else if let Some(worst) = self.heap.peek() {
            if item < *worst {
                self.heap.pop();
                self.heap.push(item);
            }
        }
    }

    pub fn into_sorted(self) -> Vec<(u32, f32)> {
        let mut v: Vec<(u32, f32)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse(Scored(s, o))| (o, s))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut data: Vec<f32> = (0..n * dim).map(|_| next()).collect();
        for row in data.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        data
    }

    #[test]
    fn exact_search_finds_the_vector_itself_first_and_respects_the_mask() {
        let data = random_unit_vectors(500, 32, 7);
        let index = VectorIndex::new(32, data.clone(), EXACT_MAX, HnswParams::default());
        let hits = index.search(&data[32 * 42..32 * 43], 5, None);
        assert_eq!(hits[0].0, 42);
        assert!((hits[0].1 - 1.0).abs() < 1e-5);
        assert!(hits.windows(2).all(|w| w[0].1 >= w[1].1));
        let mut mask = vec![true; 500];
        mask[42] = false;
        let hits = index.search(&data[32 * 42..32 * 43], 5, Some(&mask));
        assert!(hits.iter().all(|h| h.0 != 42));
        assert_eq!(hits.len(), 5);
    }

    #[test]
    fn graph_search_agrees_with_exact_search() {
        let data = random_unit_vectors(3000, 16, 3);
        let graph = VectorIndex::new(16, data.clone(), 100, HnswParams::default());
        assert!(graph.uses_graph());
        let mut found = 0;
        for q in 0..50 {
            let query = &data[16 * q..16 * (q + 1)];
            let exact: Vec<u32> = graph.exact(query, 10, None).iter().map(|h| h.0).collect();
            let approx: Vec<u32> = graph.search(query, 10, None).iter().map(|h| h.0).collect();
            found += approx.iter().filter(|o| exact.contains(o)).count();
        }
        assert!(
            found as f64 / 500.0 > 0.9,
            "recall@10 {}",
            found as f64 / 500.0
        );
        // Filtered graph search returns only allowed ids.
        let mask: Vec<bool> = (0..3000).map(|i| i % 2 == 0).collect();
        let hits = graph.search(&data[..16], 10, Some(&mask));
        assert_eq!(hits.len(), 10);
        assert!(hits.iter().all(|h| h.0 % 2 == 0));
    }

    #[test]
    fn a_saved_graph_opens_without_a_rebuild_and_answers_exactly_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let data = random_unit_vectors(3000, 16, 5);
        let built = VectorIndex::new(16, data.clone(), 100, HnswParams::default());
        assert!(built.save_graph(dir.path()).unwrap());
        let loaded = graph_file::load(dir.path(), 3000, 16).unwrap();
        assert!(loaded.is_some(), "the saved graph was not found");
        let opened = VectorIndex::open(16, data.clone(), 100, HnswParams::default(), dir.path());
        assert!(opened.uses_graph());
        let mask: Vec<bool> = (0..3000).map(|i| i % 3 != 0).collect();
        for q in 0..40 {
            let query = &data[16 * q..16 * (q + 1)];
            // The same graph walks the same path: identical hits, filtered or not.
            assert_eq!(
                built.search(query, 10, None),
                opened.search(query, 10, None)
            );
            assert_eq!(
                built.search(query, 10, Some(&mask)),
                opened.search(query, 10, Some(&mask))
            );
        }
        // Wrong shape for this generation: refused, not used.
        assert!(graph_file::load(dir.path(), 2999, 16).is_err());
        // A small collection has no graph to save, and a directory without one opens as before.
        let small = VectorIndex::new(16, data[..16 * 50].to_vec(), 100, HnswParams::default());
        let empty = tempfile::tempdir().unwrap();
        assert!(!small.save_graph(empty.path()).unwrap());
        assert!(graph_file::load(empty.path(), 3000, 16).unwrap().is_none());
    }

    #[test]
    fn a_damaged_saved_graph_is_refused_and_rebuilt_without_a_panic() {
        let data = random_unit_vectors(2000, 16, 9);
        let built = VectorIndex::new(16, data.clone(), 100, HnswParams::default());
        let dir = tempfile::tempdir().unwrap();
        built.save_graph(dir.path()).unwrap();
        let graph_path = dir.path().join("vectors.hnsw.graph");
        let mut bytes = std::fs::read(&graph_path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&graph_path, &bytes).unwrap();
        let err = graph_file::load(dir.path(), 2000, 16).err().unwrap();
        assert!(err.contains("checksum"), "{err}");

        // Files hnsw_rs cannot parse, with a manifest that matches them (hnsw_rs asserts on a bad
        // magic number): the load reports it instead of panicking.
        let garbage = tempfile::tempdir().unwrap();
        let mut manifest = String::new();
        for name in ["vectors.hnsw.graph", "vectors.hnsw.data"] {
            let junk = vec![0xA5u8; 4096];
            std::fs::write(garbage.path().join(name), &junk).unwrap();
            let sum = {
                use sha2::{Digest, Sha256};
                format!("{:x}", Sha256::digest(&junk))
            };
            manifest.push_str(&format!("{sum}  {name}\n"));
        }
        std::fs::write(garbage.path().join("vectors.hnsw.sha256"), manifest).unwrap();
        assert!(graph_file::load(garbage.path(), 2000, 16).is_err());

        // Either way the index still opens, with a rebuilt graph that finds the rows.
        for bad in [dir.path(), garbage.path()] {
            let opened = VectorIndex::open(16, data.clone(), 100, HnswParams::default(), bad);
            assert!(opened.uses_graph());
            let hits = opened.search(&data[16 * 7..16 * 8], 5, None);
            assert_eq!(hits[0].0, 7);
        }
    }

    #[test]
    fn items_with_several_vectors_rank_by_their_best_one_in_both_search_paths() {
        // 600 items owning 1-3 rows each.
        let starts: Vec<u32> = std::iter::once(0)
            .chain((0..600u32).scan(0u32, |acc, i| {
                *acc += 1 + i % 3;
                Some(*acc)
            }))
            .collect();
        let rows = *starts.last().unwrap() as usize;
        let data = random_unit_vectors(rows, 16, 11);
        for exact_max in [EXACT_MAX, 100] {
            let index = VectorIndex::new(16, data.clone(), exact_max, HnswParams::default())
                .with_items(starts.clone())
                .unwrap();
            assert_eq!(index.len(), 600);
            assert_eq!(index.rows(), rows);
            // Item 200's last row as the query: item 200 comes first, with that row's score.
            let row = starts[201] as usize - 1;
            let query = &data[16 * row..16 * (row + 1)];
            let hits = index.search(query, 10, None);
            assert_eq!(hits[0].0, 200, "exact_max {exact_max}");
            assert!((hits[0].1 - 1.0).abs() < 1e-5);
            assert!((index.item_score(query, 200) - 1.0).abs() < 1e-5);
            let mut ids: Vec<u32> = hits.iter().map(|h| h.0).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), hits.len(), "an item appears once");
            let mut mask = vec![true; 600];
            mask[200] = false;
            let hits = index.search(query, 10, Some(&mask));
            assert!(hits.iter().all(|h| h.0 != 200));
        }
        let plain = VectorIndex::new(16, data.clone(), EXACT_MAX, HnswParams::default());
        assert!(
            plain.with_items(vec![0, 5]).is_err(),
            "offsets must cover every row"
        );
        let plain = VectorIndex::new(16, data, EXACT_MAX, HnswParams::default());
        let mut bad = starts.clone();
        bad[3] = bad[2];
        assert!(
            plain.with_items(bad).is_err(),
            "an item without a vector is refused"
        );
    }

    #[test]
    fn vectors_round_trip_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = random_unit_vectors(10, 8, 1);
        let path = dir.path().join("v.f32");
        VectorIndex::write_vectors(&path, &data).unwrap();
        assert_eq!(VectorIndex::read_vectors(&path, 8).unwrap(), data);
        std::fs::write(&path, [0u8; 5]).unwrap();
        assert!(VectorIndex::read_vectors(&path, 8).is_err());
    }

    #[test]
    fn search_breadth_grows_with_the_collection() {
        assert_eq!(HnswParams::for_rows(5_000).ef_search, 128);
        assert_eq!(HnswParams::for_rows(100_000).ef_search, 128);
        assert_eq!(HnswParams::for_rows(1_000_000).ef_search, 1_000);
        let params = HnswParams::for_rows(1_000_000);
        assert_eq!(
            params.max_connections,
            HnswParams::default().max_connections
        );
        assert_eq!(
            params.ef_construction,
            HnswParams::default().ef_construction
        );
    }
}
