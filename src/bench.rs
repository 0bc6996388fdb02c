//! `scanaid bench`: embedding throughput against the candle matmul bound, and the vector index's
//! cost curve at 10k / 100k / 1M synthetic vectors. Run on a release build.

use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::cli::ModelOpts;

#[derive(Args)]
pub struct BenchCmd {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand)]
pub enum BenchWhat {
    /// Passages/s and tokens/s at ~128 and ~256 tokens, and the share of the matmul bound.
    Embed(EmbedBench),
    /// Exact versus HNSW search on synthetic 384-d vectors.
    Vectors(VectorBench),
    /// BM25 (tantivy, the product's schema and analyser) on a synthetic text corpus.
    Bm25(Bm25Bench),
    /// Question to first streamed event and to the whole answer, over HTTP on loopback.
    Chat(crate::chat_bench::ChatBench),
    /// Serves only `GET /c/{code}` -> 302, with the web stack and runtime `serve` uses and nothing
    /// else (no store, rules, events or middleware): the ceiling the framework itself allows, for
    /// `evals/scan_bench.sh` to measure beside nginx and the real server.
    HttpFloor(HttpFloorBench),
    /// Scan events written to a fresh SQLite store the way the event writer writes them
    /// (`EventWriter::insert`, one transaction per batch): events/s and CPU per event.
    Events(EventsBench),
}

#[derive(Args)]
pub struct EventsBench {
    /// Events written in all.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Events per batch (the writer gathers up to 12,800 within 2 ms).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
}

#[derive(Args)]
pub struct HttpFloorBench {
    #[arg(long, default_value = "127.0.0.1:18083")]
    pub addr: std::net::SocketAddr,
}

#[derive(Args)]
pub struct Bm25Bench {
    /// Corpus sizes (passages) to measure.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sizes: Vec<usize>,
    /// Queries per size.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    /// Words per passage.
    #[arg(long, default_value_t = 80)]
    pub words: usize,
}

#[derive(Args)]
pub struct EmbedBench {
    /// Passages per length.
    #[arg(long, default_value_t = 128)]
    pub passages: usize,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct VectorBench {
    /// Collection sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub sizes: Vec<usize>,
    /// Queries per size.
    #[arg(long, default_value_t = 200)]
    pub queries: usize,
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Clusters the synthetic vectors are drawn around (0: uniform on the sphere, a worst case no
    /// embedding model produces; real embeddings are clustered by topic).
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// HNSW search breadths to measure on the same graph: recall against latency.
    #[arg(long, value_delimiter = ',', default_value = "128")]
    pub ef_search: Vec<usize>,
}

pub fn run(cmd: BenchCmd) -> Result<std::process::ExitCode> {
    match cmd.what {
        BenchWhat::Embed(b) => embed(b)?,
        BenchWhat::Vectors(b) => vectors(b)?,
        BenchWhat::Bm25(b) => bm25(b)?,
        BenchWhat::Chat(c) => crate::chat_bench::run(c)?,
        BenchWhat::HttpFloor(b) => http_floor(b)?,
        BenchWhat::Events(b) => events(b)?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn events(b: EventsBench) -> Result<()> {
    use scanaid_server::device::DeviceClass;
    use scanaid_server::events::ScanEvent;
    let dir = tempfile::tempdir()?;
    crate::serve::runtime()?.block_on(async {
        let store = scanaid_server::store::Store::open(dir.path()).await?;
        let event = |i: usize| ScanEvent {
            at: chrono::DateTime::from_timestamp_millis(1_795_600_000_000 + i as i64)
                .unwrap_or_default(),
            code: format!("tJ6bpU{:02}", i % 100),
            asset_id: Some(format!("asset-{}", i % 12)),
            site_id: Some("north-campus".to_string()),
            placement: Some("nameplate".to_string()),
            device: [DeviceClass::Ios, DeviceClass::Android, DeviceClass::Desktop][i % 3],
            language: "en".into(),
            role: "anonymous",
            returning: i.is_multiple_of(4),
            rule: "bench-redirect".into(),
            destination: "redirect:https://example.org/".into(),
            fallback: false,
            latency_us: 40 + (i % 50) as u64,
            ip_prefix: Some("127.0.0.0/24".to_string()),
        };
        let all: Vec<ScanEvent> = (0..b.events).map(event).collect();
        let cpu0 = process_cpu_s();
        let started = Instant::now();
        let mut writer = scanaid_server::events::EventWriter::open(store.path())?;
        for batch in all.chunks(b.batch.max(1)) {
            writer.insert(batch)?;
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu = process_cpu_s() - cpu0;
        let written = store.count_scan_events().await?;
        anyhow::ensure!(
            written as usize == b.events,
            "wrote {written} of {} events",
            b.events
        );
        println!(
            "{} events in batches of {}: {:.0} events/s, {:.2} us of CPU per event (all threads)",
            b.events,
            b.batch,
            b.events as f64 / wall,
            cpu * 1e6 / b.events as f64
        );
        anyhow::Ok(())
    })
}

/// CPU seconds this process has used, all threads (user + system).
fn process_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn http_floor(b: HttpFloorBench) -> Result<()> {
    use axum::http::{header, HeaderValue, StatusCode};
    async fn redirect() -> impl axum::response::IntoResponse {
        (
            StatusCode::FOUND,
            [
                (
                    header::LOCATION,
                    HeaderValue::from_static("https://example.org/"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
    }
    crate::serve::runtime()?.block_on(async {
        let app = axum::Router::new().route("/c/{code}", axum::routing::get(redirect));
        let listener = tokio::net::TcpListener::bind(b.addr).await?;
        eprintln!("listening on http://{}", b.addr);
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// A passage of roughly `words` words of manual-like English.
fn synthetic_passage(seed: usize, words: usize) -> String {
    const VOCAB: &[&str] = &[
        "pump",
        "pressure",
        "valve",
        "replace",
        "filter",
        "check",
        "the",
        "motor",
        "alarm",
        "code",
        "sensor",
        "line",
        "occlusion",
        "battery",
        "door",
        "seal",
        "torque",
        "screw",
        "panel",
        "clean",
        "inspect",
        "temperature",
        "fan",
        "belt",
        "compressor",
        "oil",
        "drain",
        "water",
        "rinse",
        "cycle",
        "error",
        "reset",
        "power",
        "supply",
        "housing",
        "gasket",
        "interval",
        "monthly",
        "annual",
        "technician",
    ];
    let mut state = seed as u64 * 2654435761 + 1;
    (0..words)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            VOCAB[(state % VOCAB.len() as u64) as usize]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn embed(b: EmbedBench) -> Result<()> {
    let embedder = b.model.embedder()?;
    // FLOPs of one BERT-MiniLM forward per token: 6 layers x (4 d^2 + 2 x 4 d^2) x 2, d = 384,
    // plus attention 4 x len x d per layer.
    let d = 384.0f64;
    let layers = 6.0;
    let matmul = scanaid_models::matmul_bench::matmul_gflops(1024, 5)?;
    let linear = scanaid_models::matmul_bench::linear_gflops(32 * 256, 384, 1536, 5)?;
    println!("candle f32 matmul 1024^3: {matmul:.1} GFLOP/s; BERT-shaped linear (8192x384 * 384x1536): {linear:.1} GFLOP/s");
    println!(
        "linear layers: {} (SCANAID_MATMUL_KERNEL=avx2|avx512|int16|int16-avx2 picks another to compare)",
        scanaid_models::bert::linear_arithmetic()
    );
    println!("| tokens/passage | passages/s | tokens/s | GFLOP/s | share of matmul bound |");
    println!("|---|---|---|---|---|");
    for (label, words) in [(128usize, 95usize), (256, 200)] {
        let passages: Vec<String> = (0..b.passages)
            .map(|i| synthetic_passage(i, words))
            .collect();
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        let _ = embedder.embed_passages(&refs[..8.min(refs.len())])?;
        let started = Instant::now();
        let _ = embedder.embed_passages(&refs)?;
        let secs = started.elapsed().as_secs_f64();
        let per_s = b.passages as f64 / secs;
        let tokens = label as f64;
        let flops = layers * (24.0 * d * d * tokens + 4.0 * tokens * tokens * d);
        let gflops = flops * per_s / 1e9;
        println!(
            "| ~{label} | {per_s:.1} | {:.0} | {gflops:.1} | {:.0}% |",
            per_s * tokens,
            100.0 * gflops / matmul
        );
    }
    // Queries of the lengths people and benchmarks ask: a short question, a scifact-like claim, a
    // follow-up with its history.
    for words in [8usize, 20, 40] {
        let query = synthetic_passage(10_000 + words, words);
        let q = [query.as_str()];
        let _ = embedder.embed_queries(&q)?;
        let mut times = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            let _ = embedder.embed_queries(&q)?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "one query embedding, {words} words: p50 {:.2} ms, p95 {:.2} ms",
            scanaid_evals::metrics::percentile(&times, 50.0),
            scanaid_evals::metrics::percentile(&times, 95.0)
        );
    }
    Ok(())
}

fn vectors(b: VectorBench) -> Result<()> {
    use scanaid_indexer::vector::{HnswParams, VectorIndex};
    println!(
        "| vectors | build s | graph save / load s | loaded graph's hits identical | memory MB | exact p50/p95 ms | ef_search | hnsw p50/p95 ms | hnsw recall@10 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let p = |v: &[f64], x| scanaid_evals::metrics::percentile(v, x);
    for &n in &b.sizes {
        let data = synthetic_vectors(n, b.dim, b.clusters, 42);
        let queries = synthetic_vectors(b.queries, b.dim, b.clusters, 7);
        let started = Instant::now();
        let mut index = VectorIndex::new(b.dim, data, 0, HnswParams::default());
        let build_s = started.elapsed().as_secs_f64();
        let rss = rss_mb();
        // What a generation pays instead of a rebuild when it is opened: the saved graph, loaded.
        let saved = tempfile::tempdir()?;
        let started = Instant::now();
        index.save_graph(saved.path())?;
        let save_s = started.elapsed().as_secs_f64();
        // The same rows again, drawn after the memory reading so it counts one copy, not two.
        let same_rows = synthetic_vectors(n, b.dim, b.clusters, 42);
        let started = Instant::now();
        let mut loaded =
            VectorIndex::open(b.dim, same_rows, 0, HnswParams::default(), saved.path());
        let load_s = started.elapsed().as_secs_f64();
        let mut exact_ms = Vec::new();
        let exact: Vec<Vec<u32>> = queries
            .chunks_exact(b.dim)
            .map(|q| {
                let t = Instant::now();
                let hits = index.exact(q, 10, None);
                exact_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                hits.into_iter().map(|h| h.0).collect()
            })
            .collect();
        for &ef in &b.ef_search {
            index.set_ef_search(ef);
            loaded.set_ef_search(ef);
            let (mut graph_ms, mut found, mut same) = (Vec::new(), 0usize, 0usize);
            for (q, truth) in queries.chunks_exact(b.dim).zip(&exact) {
                let t = Instant::now();
                let approx = index.search(q, 10, None);
                graph_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                found += approx.iter().filter(|h| truth.contains(&h.0)).count();
                same += usize::from(loaded.search(q, 10, None) == approx);
            }
            println!(
                "| {n} | {build_s:.1} | {save_s:.1} / {load_s:.1} | {same}/{} | {rss:.0} | {:.2} / {:.2} | {ef} | {:.2} / {:.2} | {:.3} |",
                b.queries,
                p(&exact_ms, 50.0),
                p(&exact_ms, 95.0),
                p(&graph_ms, 50.0),
                p(&graph_ms, 95.0),
                found as f64 / (10 * b.queries) as f64
            );
        }
    }
    Ok(())
}

/// Synthetic text with natural text's shape: a 100,000-word vocabulary drawn by Zipf's law (s = 1.07,
/// as in English), so a few words are in nearly every passage and most are rare. Words are made of
/// syllables so the stemmer and stop-word list see word-like tokens.
struct ZipfText {
    cumulative: Vec<f64>,
    state: u64,
}

impl ZipfText {
    const VOCABULARY: usize = 100_000;

    fn new(seed: u64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=Self::VOCABULARY)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(1.07);
                total
            })
            .collect::<Vec<_>>();
        let last = total;
        Self {
            cumulative: cumulative.into_iter().map(|c| c / last).collect(),
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    fn rank(&mut self) -> usize {
        let u = self.uniform();
        self.cumulative.partition_point(|&c| c < u)
    }

    fn word(rank: usize) -> String {
        const SYLLABLES: [&str; 20] = [
            "ka", "ro", "mi", "te", "su", "la", "ven", "dor", "pi", "ne", "tal", "gu", "ser", "bo",
            "lin", "ca", "fe", "mo", "ri", "xu",
        ];
        let mut n = rank;
        let mut word = String::new();
        loop {
            word.push_str(SYLLABLES[n % 20]);
            n /= 20;
            if n == 0 {
                break;
            }
        }
        word.push_str("on");
        word
    }

    fn passage(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| Self::word(self.rank()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A query: five words of middling frequency (ranks 100 to 20,000, log-uniform), as searchers
    /// type content words, not "the".
    fn query(&mut self) -> String {
        (0..5)
            .map(|_| {
                let rank = (100.0 * (200.0f64).powf(self.uniform())) as usize;
                Self::word(rank)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn bm25(b: Bm25Bench) -> Result<()> {
    use scanaid_indexer::lexical::{
        build_lexical_from, LexicalIndex, LexicalWeights, WeightedText,
    };
    use scanaid_indexer::{Chunk, Filters, OwnerScope};
    println!("| passages | words/passage | build s | passages/s | index MB | RSS MB after queries | query p50 / p95 ms |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &b.sizes {
        let dir = tempfile::tempdir()?;
        let mut text = ZipfText::new(42);
        let words = b.words;
        let chunks = (0..n).map(move |i| Chunk {
            chunk_id: format!("p{i}"),
            manual_id: format!("m{}", i / 50),
            manual_title: "Synthetic manual".to_string(),
            revision: "1".to_string(),
            language: "en".into(),
            models: Vec::new(),
            audiences: Vec::new(),
            owner: None,
            heading_path: vec![format!("Section {}", i % 50)],
            anchor: String::new(),
            line: 1,
            text: text.passage(words),
        });
        let started = Instant::now();
        build_lexical_from(dir.path(), chunks)?;
        let build_s = started.elapsed().as_secs_f64();
        let index = LexicalIndex::open(dir.path(), LexicalWeights::default())?;
        let filters = Filters {
            owner: OwnerScope::Everything,
            ..Filters::default()
        };
        let mut queries = ZipfText::new(7);
        let texts: Vec<String> = (0..b.queries + 10).map(|_| queries.query()).collect();
        let search = |q: &str| {
            index.search(
                &[WeightedText {
                    text: q,
                    weight: 1.0,
                }],
                &filters,
                100,
            )
        };
        for q in &texts[..10] {
            search(q)?;
        }
        let mut times = Vec::new();
        for q in &texts[10..] {
            let t = Instant::now();
            search(q)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let bytes: u64 = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        let p = |v: &[f64], x| scanaid_evals::metrics::percentile(v, x);
        println!(
            "| {n} | {words} | {build_s:.1} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} |",
            n as f64 / build_s,
            bytes as f64 / 1e6,
            rss_mb(),
            p(&times, 50.0),
            p(&times, 95.0)
        );
    }
    Ok(())
}

/// Unit vectors around `clusters` fixed centres (the same centres for every seed), or uniform when
/// `clusters` is 0.
fn synthetic_vectors(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<f32> {
    if clusters == 0 {
        return random_unit_vectors(n, dim, seed);
    }
    let centres = random_unit_vectors(clusters, dim, 1_000_003);
    let noise = random_unit_vectors(n, dim, seed);
    let mut data = Vec::with_capacity(n * dim);
    for (i, row) in noise.chunks_exact(dim).enumerate() {
        let centre = &centres[(i * 7919 % clusters) * dim..][..dim];
        let mut v: Vec<f32> = centre.iter().zip(row).map(|(c, r)| c + 0.6 * r).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        data.extend(v);
    }
    data
}

fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut data: Vec<f32> = (0..n * dim)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        })
        .collect();
    for row in data.chunks_exact_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    data
}

/// Resident set size of this process in MB (Linux).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
