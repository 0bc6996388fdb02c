//! `scanaid bench chat`: question to first streamed event and to the whole answer, over real HTTP
//! on loopback against the real server (bundled manuals, real model, a fresh SQLite store), one
//! question at a time. The same questions answered in-process by the assistant are the baseline,
//! so the report says what the web layer adds. Run on a release build.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use scanaid_evals::metrics::percentile;
use scanaid_indexer::{Filters, Mode, OwnerScope, SearchRequest};
use scanaid_server::roles::Role;
use scanaid_server::ServerConfig;

use crate::cli::ModelOpts;
use crate::serve::DataOpts;

#[derive(Args)]
pub struct ChatBench {
    /// Questions (JSON lines with `question` and `manual`).
    #[arg(long, default_value = "evals/data/manual-questions.jsonl")]
    pub questions: PathBuf,
    /// Times each question is asked (after one warm-up pass).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataOpts,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Debug, Serialize)]
pub struct Distribution {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
}

impl Distribution {
    fn of(values: &[f64]) -> Self {
        Self {
            p50_ms: percentile(values, 50.0),
            p95_ms: percentile(values, 95.0),
            max_ms: values.iter().cloned().fold(0.0, f64::max),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChatBenchReport {
    pub questions: usize,
    pub asked: usize,
    pub chunks: usize,
    /// The assistant alone, in-process (retrieval, confidence, extraction): the baseline.
    pub in_process: Distribution,
    /// Over HTTP with `Accept: text/event-stream`: until the first event (the citations) is read.
    pub sse_first_event: Distribution,
    /// Over HTTP, until the final `done` event is read.
    pub sse_full_answer: Distribution,
    /// Over HTTP as one JSON body.
    pub json_full_answer: Distribution,
    /// p50 of the SSE full answer over p50 in-process: what the web layer and the store cost.
    pub http_over_in_process_p50: f64,
    pub target_first_event_ms: f64,
    pub target_full_answer_ms: f64,
}

/// A question with the asset it is asked about (the first asset whose manuals include its manual).
struct Asked {
    question: String,
    asset: String,
    manuals: Vec<String>,
}

pub fn run(cmd: ChatBench) -> Result<()> {
    let registry = cmd.data.registry()?;
    let questions = scanaid_evals::manual_questions::load_questions(&cmd.questions)
        .with_context(|| format!("reading {}", cmd.questions.display()))?;
    let asked: Vec<Asked> = questions
        .iter()
        .filter_map(|q| {
            registry
                .assets
                .iter()
                .find(|a| a.manuals.contains(&q.manual))
                .map(|a| Asked {
                    question: q.question.clone(),
                    asset: a.id.clone(),
                    manuals: a.manuals.clone(),
                })
        })
        .collect();
    anyhow::ensure!(
        !asked.is_empty(),
        "no question is about a manual of a registered asset"
    );
    let embedder = cmd.model.embedder_for(&cmd.data.manuals)?;
    let index = crate::serve::open_or_build_index(&cmd.data, embedder.as_ref())?;
    let chunks = index.chunks().len();

    // Baseline: the assistant in-process, as the server calls it (all audiences, like the agent
    // the HTTP requests sign in as).
    let (model, _) = scanaid_assistant::confidence::ShippedModel::for_model(embedder.model_id());
    let audiences: Vec<String> = Role::Agent
        .audiences()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let request = |a: &Asked| SearchRequest {
        query: a.question.clone(),
        history: Vec::new(),
        filters: Filters {
            manuals: a.manuals.clone(),
            audiences: audiences.clone(),
            owner: OwnerScope::Public,
            ..Filters::default()
        },
        limit: 20,
        mode: Mode::Hybrid,
        language: None,
    };
    for a in asked.iter().take(5) {
        scanaid_assistant::reply(&index, embedder.as_ref(), &model, request(a))?;
    }
    let mut in_process = Vec::new();
    for _ in 0..cmd.rounds {
        for a in &asked {
            let started = Instant::now();
            scanaid_assistant::reply(&index, embedder.as_ref(), &model, request(a))?;
            in_process.push(ms(started.elapsed()));
        }
    }

    // The real server on loopback, with a store of its own.
    let store_dir = tempfile::tempdir().context("a temporary store")?;
    let runtime = crate::serve::runtime()?;
    let config = ServerConfig {
        // Every question is a new conversation from one address: lift the per-client limit.
        chat_per_client: u32::MAX,
        ..ServerConfig::default()
    };
    let rules = cmd.data.rules()?;
    let (addr, cookie, shutdown, server) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (running, _) = scanaid_server::open(
            store_dir.path().to_path_buf(),
            Some(&registry),
            rules,
            index,
            embedder,
            config,
        )
        .await?;
        let store = running.state.store.clone();
        let password = scanaid_server::auth::random_token(12);
        scanaid_server::auth::create_user(&store, "bench-agent", &password, Role::Agent).await?;
        let token = scanaid_server::auth::sign_in(&store, "bench-agent", &password)
            .await?
            .context("signing the bench's agent in")?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(scanaid_server::serve(listener, running, async {
            let _ = rx.await;
        }));
        anyhow::Ok((
            addr,
            format!("{}={token}", scanaid_server::auth::SESSION_COOKIE),
            tx,
            server,
        ))
    })?;

    for a in asked.iter().take(5) {
        ask_sse(addr, &cookie, a)?;
    }
    let (mut first, mut full, mut json) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cmd.rounds {
        for a in &asked {
            let (f, d) = ask_sse(addr, &cookie, a)?;
            first.push(f);
            full.push(d);
            json.push(ask_json(addr, &cookie, a)?);
        }
    }
    let _ = shutdown.send(());
    runtime.block_on(server)??;

    let in_process = Distribution::of(&in_process);
    let sse_full_answer = Distribution::of(&full);
    let report = ChatBenchReport {
        questions: asked.len(),
        asked: first.len(),
        chunks,
        http_over_in_process_p50: sse_full_answer.p50_ms / in_process.p50_ms,
        in_process,
        sse_first_event: Distribution::of(&first),
        sse_full_answer,
        json_full_answer: Distribution::of(&json),
        target_first_event_ms: 100.0,
        target_full_answer_ms: 150.0,
    };
    print(&report);
    if let Some(path) = &cmd.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print(r: &ChatBenchReport) {
    println!(
        "{} questions x rounds = {} asks, {} chunks, one at a time",
        r.questions, r.asked, r.chunks
    );
    println!("{:<28} {:>9} {:>9} {:>9}", "", "p50 ms", "p95 ms", "max ms");
    for (name, d) in [
        ("in-process (baseline)", &r.in_process),
        ("SSE first event", &r.sse_first_event),
        ("SSE full answer", &r.sse_full_answer),
        ("JSON full answer", &r.json_full_answer),
    ] {
        println!(
            "{name:<28} {:>9.1} {:>9.1} {:>9.1}",
            d.p50_ms, d.p95_ms, d.max_ms
        );
    }
    println!(
        "SSE full / in-process (p50): {:.2}x; targets: first event < {} ms, full answer < {} ms",
        r.http_over_in_process_p50, r.target_first_event_ms, r.target_full_answer_ms
    );
}

fn request_bytes(a: &Asked, cookie: &str, accept: &str) -> Vec<u8> {
    let body = serde_json::json!({"asset": a.asset, "message": a.question}).to_string();
    format!(
        "POST /api/chat HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\naccept: {accept}\r\ncookie: {cookie}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Asks over SSE; returns (ms to the end of the first event, ms to the end of `done`).
fn ask_sse(addr: SocketAddr, cookie: &str, a: &Asked) -> Result<(f64, f64)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let started = Instant::now();
    stream.write_all(&request_bytes(a, cookie, "text/event-stream"))?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut first = None;
    loop {
        let n = stream.read(&mut buf)?;
        anyhow::ensure!(
            n > 0,
            "the server closed before the answer was done: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if first.is_none() && completed_event(&text, "citations") {
            first = Some(ms(started.elapsed()));
        }
        if completed_event(&text, "done") {
            let first = first.context("`done` came before `citations`")?;
            return Ok((first, ms(started.elapsed())));
        }
        anyhow::ensure!(
            text.starts_with("HTTP/1.1 200"),
            "the chat answered {}",
            text.lines().next().unwrap_or("")
        );
    }
}

/// True once `event: name` and the blank line ending it have arrived.
fn completed_event(text: &str, name: &str) -> bool {
    text.find(&format!("event: {name}\n"))
        .is_some_and(|at| text[at..].contains("\n\n"))
}

/// Asks for one JSON body; returns ms until all of it is read.
fn ask_json(addr: SocketAddr, cookie: &str, a: &Asked) -> Result<f64> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let started = Instant::now();
    stream.write_all(&request_bytes(a, cookie, "application/json"))?;
    let mut seen = Vec::new();
    stream.read_to_end(&mut seen)?;
    let elapsed = ms(started.elapsed());
    anyhow::ensure!(
        seen.starts_with(b"HTTP/1.1 200"),
        "the chat answered {}",
        String::from_utf8_lossy(&seen).lines().next().unwrap_or("")
    );
    Ok(elapsed)
}
