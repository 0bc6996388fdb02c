//! Command-line definitions (one clap struct per command) and their glue.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use scanaid_indexer::{ChunkingConfig, Fusion, Mode, SearchIndex, SearchRequest, SearchSettings};
use scanaid_models::fetch::FetchOutcome;
use scanaid_models::{BertEmbedder, Embedder, MINILM_L6_V2};

use crate::progress;

#[derive(Parser)]
#[command(
    name = "scanaid",
    version,
    about = "QR codes that open the right manual page, with answers from the manuals"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Fetch and verify model weights.
    Models(ModelsCmd),
    /// Index a folder of manuals into a new generation (or roll back to the previous one).
    Index(IndexCmd),
    /// Search the index from the command line.
    Search(SearchCmd),
    /// Measure retrieval on evaluation data.
    Eval(EvalCmd),
    /// Run the server: scan pages, manuals, sign-in (fetches the model and builds the index on first start).
    Serve(crate::serve::ServeCmd),
    /// List the printed codes and their URLs.
    Codes(crate::serve::CodesCmd),
    /// Write a printable label (QR code, asset name, what scanning gives) as SVG or PNG.
    Qr(crate::serve::QrCmd),
    /// Check routing rules, or explain which rule fires for a scan.
    Rules(crate::rules_cmd::RulesCmd),
    /// Benchmarks (run on a release build).
    Bench(crate::bench::BenchCmd),
    /// Staff accounts: list them, or reset a password (also for a sole administrator locked out).
    Users(crate::users_cmd::UsersCmd),
}

#[derive(Args, Clone)]
pub struct ModelOpts {
    /// Model cache directory (default: the user's cache dir, scanaid/models).
    #[arg(long, env = "SCANAID_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
    /// Embedding model: `auto` (the default: chosen from the manuals' languages, see
    /// `choose_model`), `minilm` (all-MiniLM-L6-v2 with the bundled tuned encoder delta, English),
    /// `minilm-base` (all-MiniLM-L6-v2 as published) or `e5` (multilingual-e5-small, Q4_0: questions
    /// and manuals in different languages).
    #[arg(long = "embedding-model", env = "SCANAID_EMBEDDING_MODEL", global = true, default_value = "auto", value_parser = ["auto", "minilm", "minilm-base", "e5"])]
    pub embedding_model: String,
    /// An encoder delta to merge into MiniLM at load instead of the bundled one (research: written by
    /// evals/experiments/finetune_minilm.py --save-delta; see models/src/delta.rs).
    #[arg(
        long = "embedding-delta",
        env = "SCANAID_EMBEDDING_DELTA",
        global = true
    )]
    pub embedding_delta: Option<PathBuf>,
}

/// The model an explicit `--embedding-model` value names.
fn named_model(value: &str) -> &'static str {
    match value {
        "e5" => "e5",
        "minilm-base" => "minilm-base",
        _ => "minilm",
    }
}

/// The embedding model `auto` picks for a folder of manuals: MiniLM when every manual is in English,
/// multilingual-e5 as soon as another language is there. Measured (README, "MiniLM versus
/// multilingual-e5"): on English sets the two are level and MiniLM is 2-3x faster; across languages
/// MiniLM finds nothing, and on the bundled (English and Spanish) manuals e5 answers our questions
/// better (hit@3 0.940 against 0.833).
pub fn choose_model(manuals: &Path) -> Result<&'static str> {
    let (found, _) = scanaid_indexer::manual::load_manuals(manuals)
        .with_context(|| format!("reading the manuals in {}", manuals.display()))?;
    let english_only = found
        .iter()
        .all(|m| scanaid_indexer::language::primary(&m.meta.language) == "en");
    Ok(if english_only { "minilm" } else { "e5" })
}

impl ModelOpts {
    pub fn dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(scanaid_models::default_models_dir)
    }

    /// The embedder for a command with no manuals folder (`auto` is MiniLM: the evaluation sets
    /// are English).
    pub fn embedder(&self) -> Result<Arc<dyn Embedder>> {
        self.load(named_model(&self.embedding_model))
    }

    /// The embedder for the manuals in `manuals` (`auto` decides by their languages).
    pub fn embedder_for(&self, manuals: &Path) -> Result<Arc<dyn Embedder>> {
        let name = match self.embedding_model.as_str() {
            "auto" => choose_model(manuals)?,
            other => named_model(other),
        };
        self.load(name)
    }

    /// The embedder an existing index was built with (`auto`), or the one asked for.
    pub fn embedder_of(&self, index_dir: &Path) -> Result<Arc<dyn Embedder>> {
        if self.embedding_model != "auto" {
            return self.embedder();
        }
        let built_with = SearchIndex::open(index_dir)
            .with_context(|| format!("opening the index in {}", index_dir.display()))?
            .meta
            .model_id;
        let name = if built_with == scanaid_models::MULTILINGUAL_E5_SMALL.name {
            "e5"
        } else if built_with == MINILM_L6_V2.name {
            // Built before the tuned delta shipped: keep searching it with the model it was built with.
            "minilm-base"
        } else {
            "minilm"
        };
        self.load(name)
    }

    /// Fetches the embedder's weights on first use, then loads it.
    fn load(&self, name: &str) -> Result<Arc<dyn Embedder>> {
        let dir = self.dir();
        // The delta first: a bad file or flag is reported before any model is fetched.
        let delta = match (&self.embedding_delta, name) {
            (Some(path), "minilm") => Some(
                scanaid_models::EncoderDelta::from_file(path)
                    .context("loading the encoder delta")?,
            ),
            (None, "minilm") => Some(
                scanaid_models::delta::MINILM_TUNED
                    .load()
                    .context("loading the bundled encoder delta")?,
            ),
            (None, _) => None,
            (Some(_), other) => {
                anyhow::bail!(
                    "--embedding-delta applies to `--embedding-model minilm` only, and this command uses {other}"
                )
            }
        };
        let spec = if name == "e5" {
            &scanaid_models::MULTILINGUAL_E5_SMALL
        } else {
            &MINILM_L6_V2
        };
        let spinner = progress::spinner(&format!("checking model {}", spec.name));
        let fetched = scanaid_models::ensure_model(&dir, spec);
        spinner.finish_and_clear();
        let (model_dir, outcome) = fetched.context("fetching the embedding model")?;
        if outcome == FetchOutcome::Fetched {
            eprintln!("fetched {} into {}", spec.name, model_dir.display());
        }
        let embedder = if name == "e5" {
            BertEmbedder::load_e5s1(&model_dir, spec)
        } else {
            BertEmbedder::load_tuned(&model_dir, spec, delta.as_ref())
        }
        .context("loading the embedding model")?;
        Ok(Arc::new(embedder))
    }
}

#[derive(Args)]
pub struct ModelsCmd {
    #[command(subcommand)]
    pub action: ModelsAction,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Subcommand)]
pub enum ModelsAction {
    /// Download (if needed) and verify every model by sha256.
    Fetch,
}

#[derive(Args)]
pub struct IndexCmd {
    /// Folder of markdown manuals with front matter.
    #[arg(long, env = "SCANAID_MANUALS", default_value = "manuals")]
    pub manuals: PathBuf,
    /// Index directory (generations live inside it; default: the data directory's `index`, as
    /// `serve` uses).
    #[arg(long, env = "SCANAID_INDEX")]
    pub index: Option<PathBuf>,
    /// Data directory whose `index` is meant when `--index` is not given.
    #[arg(long = "data", env = "SCANAID_DATA", default_value = "data")]
    pub data_dir: PathBuf,
    /// Point the index back at the previous generation instead of building.
    #[arg(long)]
    pub rollback: bool,
    /// Exit with an error if any manual had problems (they are skipped otherwise).
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct SearchCmd {
    /// The question.
    pub query: String,
    /// Index directory (default: the data directory's `index`, as `serve` uses).
    #[arg(long, env = "SCANAID_INDEX")]
    pub index: Option<PathBuf>,
    /// Data directory whose `index` is meant when `--index` is not given.
    #[arg(long = "data", env = "SCANAID_DATA", default_value = "data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "hybrid")]
    pub mode: Mode,
    #[arg(long, default_value_t = 5)]
    pub limit: usize,
    /// Only chunks of this equipment model (general material included).
    #[arg(long)]
    pub model_number: Option<String>,
    /// Only chunks written for this audience.
    #[arg(long)]
    pub audience: Option<String>,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct EvalCmd {
    #[command(subcommand)]
    pub what: EvalWhat,
}

#[derive(Subcommand)]
pub enum EvalWhat {
    /// Retrieval quality and latency on a BEIR-layout folder.
    Retrieval(EvalRetrievalCmd),
    /// Index the bundled manuals and check that each question of our set finds its section.
    Manuals(EvalManualsCmd),
    /// Extractive answers with citations: citation coverage, whether the expected section is cited,
    /// and latency, over the bundled manuals (default) or a BEIR-layout folder (`--data`).
    Answers(EvalAnswersCmd),
    /// Answer-or-escalate: the confidence model scored by cross-validation on a folder with
    /// answerability.tsv (AUROC, calibration, escalation precision/recall).
    Answerability(EvalAnswerabilityCmd),
    /// Two `eval retrieval --json` reports of the same queries compared query by query: the mean
    /// nDCG@10 difference with a paired bootstrap 95% interval and a randomisation test's p-value.
    Compare(EvalCompareCmd),
}

#[derive(Args)]
pub struct EvalCompareCmd {
    /// The baseline's report.
    pub base: PathBuf,
    /// The changed run's report.
    pub new: PathBuf,
}

#[derive(Args)]
pub struct EvalAnswersCmd {
    /// A folder in BEIR layout; without it, the bundled manuals and our question set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, env = "SCANAID_MANUALS", default_value = "manuals")]
    pub manuals: PathBuf,
    /// Questions as JSON lines: {"id", "question", "manual", "anchor"}.
    #[arg(long, default_value = "evals/data/manual-questions.jsonl")]
    pub questions: PathBuf,
    /// Index to build the manuals into (default: a folder of its own in the eval cache, never the
    /// server's index: an eval's generation would replace the one served, without the patients'
    /// documents, and push out the generations a rollback needs).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Where evaluated corpora's indexes are cached (with `--data`).
    #[arg(long, env = "SCANAID_EVAL_CACHE")]
    pub cache_dir: Option<PathBuf>,
    /// Write the report (with every answer) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print this many answers in full.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// A confidence model file to judge instead of the shipped one (as `eval answerability
    /// --write-model` writes).
    #[arg(long)]
    pub confidence_model: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct EvalAnswerabilityCmd {
    /// A folder in BEIR layout with answerability.tsv (query-id, answerable 0/1); without it, the
    /// bundled manuals with our answerable and unanswerable question sets.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, env = "SCANAID_MANUALS", default_value = "manuals")]
    pub manuals: PathBuf,
    /// Questions the manuals answer (JSON lines with id, question, manual, anchor); repeat for
    /// several files. Default: the English and the Spanish set.
    #[arg(long, action = clap::ArgAction::Append, default_values = [
        "evals/data/manual-questions.jsonl",
        "evals/data/manual-questions-es.jsonl",
    ])]
    pub questions: Vec<PathBuf>,
    /// Questions the manuals do not answer (JSON lines with id, question); repeat for several
    /// files. Default: the English and the Spanish set.
    #[arg(long, action = clap::ArgAction::Append, default_values = [
        "evals/data/manual-unanswerable.jsonl",
        "evals/data/manual-unanswerable-es.jsonl",
    ])]
    pub unanswerable: Vec<PathBuf>,
    /// With `--data`: fit and score one model on that set and the bundled manuals' questions together
    /// (the figures are also given for each set).
    #[arg(long)]
    pub with_manuals: bool,
    /// Search each bundled-manual question as the chat serves it: a question on an asset's manual
    /// (or, unanswerable, asked on an asset) within that asset's manuals, for its reader's role (the
    /// question's `audience`; unanswerable ones take operator, technician, clinician and biomed in
    /// turn); a question tied to no asset as a public reader of every manual, as without it.
    #[arg(long)]
    pub as_served: bool,
    /// Index to build the manuals into (default: a folder of its own in the eval cache, never the
    /// server's index: an eval's generation would replace the one served, without the patients'
    /// documents, and push out the generations a rollback needs).
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the reliability diagram (SVG) here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Write the model fitted on every question, with its threshold, here (the product reads
    /// assistant/confidence-model.json).
    #[arg(long)]
    pub write_model: Option<PathBuf>,
    /// Cross-validation folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Evidence features the model uses: `product` (the shipped set), `all`, or a comma-separated list
    /// of names (top_cosine, cosine_margin, mean_cosine_top5, top_bm25_per_term, bm25_margin,
    /// legs_agree, overlap_top5, term_coverage_top3).
    #[arg(long, default_value = "product")]
    pub features: String,
    /// Retrieve with the last turn only, ignoring a query's history.
    #[arg(long)]
    pub no_history: bool,
    /// Where evaluated corpora's indexes are cached.
    #[arg(long, env = "SCANAID_EVAL_CACHE")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct EvalManualsCmd {
    #[arg(long, env = "SCANAID_MANUALS", default_value = "manuals")]
    pub manuals: PathBuf,
    /// Questions as JSON lines: {"id", "question", "manual", "anchor"}.
    #[arg(long, default_value = "evals/data/manual-questions.jsonl")]
    pub questions: PathBuf,
    /// Index to build the manuals into (default: a folder of its own in the eval cache, never the
    /// server's index: an eval's generation would replace the one served, without the patients'
    /// documents, and push out the generations a rollback needs).
    #[arg(long)]
    pub index: Option<PathBuf>,
    #[arg(long, default_value = "hybrid")]
    pub mode: Mode,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct EvalRetrievalCmd {
    /// A folder in BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    #[arg(long, default_value = "hybrid")]
    pub mode: Mode,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write every query's ranking here in TREC run format (`qid Q0 docid rank score tag`).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// Fusion method for hybrid mode: zscore, minmax, tm2c2 or rrf (default: the product setting).
    #[arg(long, default_value = "default")]
    pub fusion: String,
    /// Dense weight of z-score, min-max or tm2c2 fusion, the product's method included (default: the
    /// fitted product setting).
    #[arg(long)]
    pub dense_weight: Option<f32>,
    /// RRF's k.
    #[arg(long, default_value_t = 60.0)]
    pub rrf_k: f32,
    /// Weight of the title/heading field in BM25 (default: the product setting).
    #[arg(long)]
    pub title_weight: Option<f32>,
    /// Candidates taken from each leg before fusion (default: the product setting).
    #[arg(long)]
    pub candidates: Option<usize>,
    /// Retrieve with the last turn only, ignoring a query's history.
    #[arg(long)]
    pub no_history: bool,
    /// Where evaluated corpora's indexes are cached.
    #[arg(long, env = "SCANAID_EVAL_CACHE")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOpts,
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Models(cmd) => models(cmd),
        Command::Index(cmd) => index(cmd),
        Command::Search(cmd) => search(cmd),
        Command::Eval(EvalCmd {
            what: EvalWhat::Retrieval(cmd),
        }) => eval_retrieval(cmd),
        Command::Eval(EvalCmd {
            what: EvalWhat::Manuals(cmd),
        }) => eval_manuals(cmd),
        Command::Eval(EvalCmd {
            what: EvalWhat::Answerability(cmd),
        }) => eval_answerability(cmd),
        Command::Eval(EvalCmd {
            what: EvalWhat::Answers(cmd),
        }) => eval_answers(cmd),
        Command::Eval(EvalCmd {
            what: EvalWhat::Compare(cmd),
        }) => eval_compare(cmd),
        Command::Serve(cmd) => crate::serve::serve(cmd),
        Command::Codes(cmd) => crate::serve::codes(cmd),
        Command::Rules(cmd) => crate::rules_cmd::run(cmd),
        Command::Users(cmd) => crate::users_cmd::run(cmd),
        Command::Qr(cmd) => crate::serve::qr(cmd),
        Command::Bench(cmd) => crate::bench::run(cmd),
    }
}

fn models(cmd: ModelsCmd) -> Result<ExitCode> {
    match cmd.action {
        ModelsAction::Fetch => {
            let dir = cmd.model.dir();
            // MiniLM serves; multilingual-e5 is measured against it (cross-language retrieval).
            for spec in [&MINILM_L6_V2, &scanaid_models::MULTILINGUAL_E5_SMALL] {
                let (model_dir, outcome) = scanaid_models::ensure_model(&dir, spec)?;
                let what = match outcome {
                    FetchOutcome::AlreadyPresent => "already present, verified",
                    FetchOutcome::Fetched => "fetched and verified",
                };
                println!("{}: {what} ({})", spec.name, model_dir.display());
            }
            let tuned = &scanaid_models::delta::MINILM_TUNED;
            let delta = tuned.load()?;
            println!(
                "{}: built into this binary, verified ({}, the encoder delta `--embedding-model minilm` merges)",
                tuned.file,
                delta.id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn index(cmd: IndexCmd) -> Result<ExitCode> {
    let index_dir = cmd.index.unwrap_or_else(|| cmd.data_dir.join("index"));
    if cmd.rollback {
        let (from, to) = scanaid_indexer::generation::rollback(&index_dir)?;
        println!("rolled back {}: {from} -> {to}", index_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let embedder = cmd.model.embedder_for(&cmd.manuals)?;
    let report = build_index(&cmd.manuals, &index_dir, embedder.as_ref())?;
    if cmd.strict && !report.problems.is_empty() {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn build_index(
    manuals: &Path,
    index_dir: &Path,
    embedder: &dyn Embedder,
) -> Result<scanaid_indexer::BuildReport> {
    if !manuals.is_dir() {
        bail!("manuals folder {} does not exist", manuals.display());
    }
    let mut bar = progress::embedding_bar("embedding");
    let report = scanaid_indexer::index_manuals(
        manuals,
        index_dir,
        embedder,
        ChunkingConfig::default(),
        &mut bar,
    )?;
    for problem in &report.problems {
        eprintln!("skipped {problem}");
    }
    println!(
        "generation {} promoted in {}: {} chunks ({} embedded, {} reused), {:.1} s{}",
        report.generation,
        index_dir.display(),
        report.n_chunks,
        report.n_embedded,
        report.n_reused,
        report.elapsed_s,
        if report.problems.is_empty() {
            String::new()
        } else {
            format!(", {} file(s) skipped", report.problems.len())
        }
    );
    Ok(report)
}

fn eval_manuals(cmd: EvalManualsCmd) -> Result<ExitCode> {
    let questions = scanaid_evals::manual_questions::load_questions(&cmd.questions)?;
    let embedder = cmd.model.embedder_for(&cmd.manuals)?;
    let index_dir = eval_manuals_index(cmd.index.clone(), embedder.model_id());
    build_index(&cmd.manuals, &index_dir, embedder.as_ref())?;
    let index = SearchIndex::open_for(&index_dir, embedder.as_ref())?;
    let report =
        scanaid_evals::manual_questions::evaluate(&index, embedder.as_ref(), &questions, cmd.mode)?;
    for miss in &report.misses {
        println!(
            "  {} {:?}: expected {} at {}, top was {}",
            miss.id,
            miss.question,
            miss.expected,
            miss.rank
                .map_or("none in top 10".to_string(), |r| format!("rank {r}")),
            miss.got
        );
    }
    println!(
        "| questions | mode | hit@1 | hit@3 | hit@10 | MRR@10 | p50 ms | p95 ms |\n|---|---|---|---|---|---|---|---|\n| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |",
        report.n_questions, report.mode, report.hit1, report.hit3, report.hit10, report.mrr10, report.latency_ms.p50, report.latency_ms.p95
    );
    if let Some(path) = cmd.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn search(cmd: SearchCmd) -> Result<ExitCode> {
    let index_dir = cmd.index.unwrap_or_else(|| cmd.data_dir.join("index"));
    let embedder = cmd.model.embedder_of(&index_dir)?;
    let index = SearchIndex::open_for(&index_dir, embedder.as_ref())?;
    let mut request = SearchRequest::new(cmd.query, cmd.mode, cmd.limit);
    if let Some(m) = cmd.model_number {
        request.filters.models = vec![m];
        request.filters.include_general = true;
    }
    if let Some(a) = cmd.audience {
        request.filters.audiences = vec![a];
    }
    let hits = index.search(&request, Some(embedder.as_ref()))?;
    for (i, hit) in hits.iter().enumerate() {
        let c = index.chunk(hit.ord);
        let leg = |l: Option<scanaid_indexer::LegScore>| {
            l.map_or("-".to_string(), |l| format!("{:.3}@{}", l.score, l.rank))
        };
        println!(
            "{}. [{:.3}] {} > {} (#{}, rev {})  bm25 {}  dense {}",
            i + 1,
            hit.score,
            c.manual_title,
            c.heading_path.join(" > "),
            c.anchor,
            c.revision,
            leg(hit.bm25),
            leg(hit.dense)
        );
        let preview: String = c.text.chars().take(160).collect();
        println!("   {}", preview.replace('\n', " "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The filters the chat would search each labelled question with (`eval answerability
/// --as-served`), from the manuals folder's asset registry and the readers' roles.
fn served_filters(
    manuals_dir: &std::path::Path,
    index: Option<&SearchIndex>,
    answerable: &[scanaid_evals::manual_questions::ManualQuestion],
    unanswerable: &[scanaid_evals::answerability::UnanswerableQuestion],
) -> Result<std::collections::HashMap<String, scanaid_indexer::Filters>> {
    use scanaid_server::roles::Role;
    let registry = scanaid_server::registry::Registry::load(&manuals_dir.join("assets.toml"))?;
    // An asset's manuals as the chat takes them: the listed ones, then those naming its model.
    let manuals_of = |asset: &scanaid_server::registry::Asset| match index {
        Some(index) => scanaid_server::pages::asset_manuals(&asset.manuals, &asset.model, index),
        None => asset.manuals.clone(),
    };
    let served =
        |manuals: Vec<String>, role: Role| scanaid_server::chat::chat_filters(manuals, role);
    let mut filters = std::collections::HashMap::new();
    for q in answerable {
        let on_asset = registry
            .assets
            .iter()
            .find(|a| manuals_of(a).contains(&q.manual));
        // A question's audience names a manual audience; "public" material is read by anyone,
        // so its reader is anonymous, and every other audience is read by the role of its name.
        let role = match q.audience.as_deref() {
            Some("public") => Some(Role::Anonymous),
            Some(audience) => Some(
                audience
                    .parse::<Role>()
                    .map_err(|e| anyhow::anyhow!("question {}: {e}", q.id))?,
            ),
            None => None,
        };
        if let (Some(asset), Some(role)) = (on_asset, role) {
            filters.insert(q.id.clone(), served(manuals_of(asset), role));
        }
    }
    // Nobody says who asks what the manuals do not answer: the staff roles take turns.
    let roles = [
        Role::Operator,
        Role::Technician,
        Role::Clinician,
        Role::Biomed,
    ];
    let on_assets = unanswerable.iter().filter(|q| !q.asset.is_empty());
    for (turn, q) in on_assets.enumerate() {
        let Some(asset) = registry.assets.iter().find(|a| a.id == q.asset) else {
            bail!(
                "question {}: asset {:?} is not in {}",
                q.id,
                q.asset,
                manuals_dir.join("assets.toml").display()
            );
        };
        filters.insert(
            q.id.clone(),
            served(manuals_of(asset), roles[turn % roles.len()]),
        );
    }
    Ok(filters)
}

/// The index an eval over the manuals builds: `--index`, or one per model in the eval cache.
fn eval_manuals_index(given: Option<PathBuf>, model_id: &str) -> PathBuf {
    given.unwrap_or_else(|| {
        let cache = std::env::var_os("SCANAID_EVAL_CACHE").map(PathBuf::from);
        let stem = scanaid_indexer::embed_cache::file_stem(model_id);
        eval_cache_dir(cache).join(format!("manuals-{stem}"))
    })
}

fn eval_cache_dir(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        dirs::cache_dir()
            .unwrap_or_else(std::env::temp_dir)
            .join("scanaid")
            .join("eval-indexes")
    })
}

fn eval_answers(cmd: EvalAnswersCmd) -> Result<ExitCode> {
    use scanaid_evals::answers;
    // Over a BEIR folder, MiniLM unless asked; over the manuals, the model `auto` picks for them.
    let embedder = match &cmd.data {
        Some(_) => cmd.model.embedder()?,
        None => cmd.model.embedder_for(&cmd.manuals)?,
    };
    let (index, questions, name) = match &cmd.data {
        Some(dir) => {
            let data = scanaid_evals::beir::load(dir, &cmd.split)?;
            let mut bar = progress::embedding_bar("embedding");
            let (index, _, _, _) = scanaid_evals::retrieval::open_or_build(
                &data,
                embedder.as_ref(),
                &eval_cache_dir(cmd.cache_dir.clone()),
                &mut bar,
            )?;
            (index, answers::from_dataset(&data), data.name.clone())
        }
        None => {
            let questions = scanaid_evals::manual_questions::load_questions(&cmd.questions)?;
            let index_dir = eval_manuals_index(cmd.index.clone(), embedder.model_id());
            build_index(&cmd.manuals, &index_dir, embedder.as_ref())?;
            let index = SearchIndex::open_for(&index_dir, embedder.as_ref())?;
            (
                index,
                answers::from_manual_questions(&questions),
                "bundled manuals".to_string(),
            )
        }
    };
    let model = match &cmd.confidence_model {
        None => {
            let (model, fitted) =
                scanaid_assistant::confidence::ShippedModel::for_model(embedder.model_id());
            if !fitted {
                eprintln!(
                    "note: no confidence model was fitted for {}; the tuned MiniLM's is used, so the confidence figures are not calibrated for it",
                    embedder.model_id()
                );
            }
            model
        }
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a confidence model", path.display()))?,
    };
    let report = answers::evaluate(&index, embedder.as_ref(), &questions, &model)?;
    for a in report.answers.iter().take(cmd.show) {
        println!("{} {:?} (expected {})", a.id, a.question, a.expected);
        for line in a.answer.iter().chain(&a.cited) {
            println!("    {line}");
        }
    }
    println!(
        "| questions | citation coverage | cites the expected section | first sentence from it | sentences per answer | answer p50 / p95 ms | extraction p50 / p95 ms |\n|---|---|---|---|---|---|---|\n| {} ({name}) | {:.3} | {:.3} | {:.3} | {:.1} | {:.2} / {:.2} | {:.2} / {:.2} |",
        report.n_questions,
        report.citation_coverage,
        report.cites_expected_section,
        report.first_sentence_from_expected_section,
        report.mean_sentences,
        report.latency_ms.p50,
        report.latency_ms.p95,
        report.extract_latency_ms.p50,
        report.extract_latency_ms.p95
    );
    println!(
        "shipped confidence model on these questions: mean {:.3}, marked unsure {:.1}%",
        report.mean_confidence,
        100.0 * report.unsure_share
    );
    if let Some(path) = cmd.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_answerability(cmd: EvalAnswerabilityCmd) -> Result<ExitCode> {
    // Over a BEIR folder, MiniLM unless asked; over the manuals, the model `auto` picks for them.
    let embedder = match &cmd.data {
        Some(_) => cmd.model.embedder()?,
        None => cmd.model.embedder_for(&cmd.manuals)?,
    };
    let use_feature = match cmd.features.as_str() {
        "product" => scanaid_assistant::confidence::PRODUCT_FEATURES,
        "all" => [true; scanaid_assistant::N_FEATURES],
        list => {
            let mut use_feature = [false; scanaid_assistant::N_FEATURES];
            for name in list.split(',').map(str::trim) {
                let Some(j) = scanaid_assistant::FEATURE_NAMES
                    .iter()
                    .position(|n| *n == name)
                else {
                    bail!(
                        "unknown feature {name:?}: use {}",
                        scanaid_assistant::FEATURE_NAMES.join(", ")
                    );
                };
                use_feature[j] = true;
            }
            use_feature
        }
    };
    // The bundled manuals' labelled questions: the set itself without --data, or fitted together
    // with the BEIR set with --with-manuals.
    let manuals = if cmd.data.is_none() || cmd.with_manuals {
        let mut answerable = Vec::new();
        for file in &cmd.questions {
            answerable.extend(scanaid_evals::manual_questions::load_questions(file)?);
        }
        let mut unanswerable = Vec::new();
        for file in &cmd.unanswerable {
            unanswerable.extend(scanaid_evals::answerability::load_unanswerable(file)?);
        }
        let index_dir = eval_manuals_index(cmd.index.clone(), embedder.model_id());
        build_index(&cmd.manuals, &index_dir, embedder.as_ref())?;
        let index = SearchIndex::open_for(&index_dir, embedder.as_ref())?;
        Some((index, answerable, unanswerable))
    } else {
        None
    };
    let served_filters = match (&manuals, cmd.as_served) {
        (Some((index, answerable, unanswerable)), true) => {
            served_filters(&cmd.manuals, Some(index), answerable, unanswerable)?
        }
        _ => std::collections::HashMap::new(),
    };
    let manual_set = manuals.as_ref().map(|(index, answerable, unanswerable)| {
        scanaid_evals::answerability::ManualSet {
            index,
            answerable,
            unanswerable,
            served_filters: &served_filters,
        }
    });
    let report = match &cmd.data {
        Some(dir) => {
            let options = scanaid_evals::answerability::AnswerabilityOptions {
                folds: cmd.folds,
                with_manuals: manual_set,
                use_feature,
                use_history: !cmd.no_history,
                cache_dir: eval_cache_dir(cmd.cache_dir.clone()),
            };
            let data = scanaid_evals::beir::load(dir, "test")?;
            let mut bar = progress::embedding_bar("embedding");
            scanaid_evals::answerability::evaluate(&data, embedder.as_ref(), &options, &mut bar)?
        }
        None => {
            let set = manual_set.expect("loaded above without --data");
            let options = scanaid_evals::answerability::AnswerabilityOptions {
                folds: cmd.folds,
                with_manuals: None,
                use_feature,
                use_history: !cmd.no_history,
                cache_dir: eval_cache_dir(cmd.cache_dir.clone()),
            };
            scanaid_evals::answerability::evaluate_manuals(&set, embedder.as_ref(), &options)?
        }
    };
    println!(
        "| dataset | questions (answerable) | folds | AUROC | ECE | threshold | escalate precision | escalate recall |\n|---|---|---|---|---|---|---|---|\n| {}{} | {} ({}) | {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} |",
        report.dataset,
        if report.history { " +history" } else { "" },
        report.n_queries,
        report.n_answerable,
        report.folds,
        report.auroc,
        report.ece,
        report.threshold,
        report.escalate_precision,
        report.escalate_recall
    );
    for part in &report.parts {
        println!(
            "  {}: {} questions ({} answerable), out of fold AUROC {:.3}, ECE {:.3}, escalation precision {:.3} recall {:.3}",
            part.part, part.n_queries, part.n_answerable, part.auroc, part.ece, part.escalate_precision, part.escalate_recall
        );
    }
    println!(
        "the shipped model as is: AUROC {:.3}, ECE {:.3}, unsure on {:.1}% of answerable and {:.1}% of unanswerable questions",
        report.bundled_model.auroc,
        report.bundled_model.ece,
        100.0 * report.bundled_model.unsure_answerable,
        100.0 * report.bundled_model.unsure_unanswerable
    );
    println!(
        "ECE a perfectly calibrated model would show on these questions (sampling noise): {:.3} on average, at most {:.3} in 95% of draws",
        report.ece_if_calibrated, report.ece_if_calibrated_p95
    );
    println!("features: {}", report.features.join(", "));
    println!(
        "single scores, no fitting: top cosine AUROC {:.3}, top BM25 AUROC {:.3}",
        report.baseline_auroc.top_cosine, report.baseline_auroc.top_bm25
    );
    println!("| confidence bin | questions | mean confidence | answerable |\n|---|---|---|---|");
    for b in report.reliability.iter().filter(|b| b.n > 0) {
        println!(
            "| {:.1}-{:.1} | {} | {:.3} | {:.3} |",
            b.from, b.to, b.n, b.mean_confidence, b.answerable_rate
        );
    }
    let weights: Vec<String> = report
        .weights
        .iter()
        .map(|(name, w)| format!("{name} {w:+.3}"))
        .collect();
    println!(
        "weights (all questions, standardised features): {}",
        weights.join(", ")
    );
    if let Some(path) = cmd.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = cmd.write_model {
        let shipped = scanaid_assistant::confidence::ShippedModel {
            fitted_on: format!(
                "{}: {} questions, {}; {}-fold cross-validated AUROC {:.3}, ECE {:.3}",
                report.dataset,
                report.n_queries,
                if report.history {
                    "with history"
                } else {
                    "last turn"
                },
                report.folds,
                report.auroc,
                report.ece
            ),
            features: report.features.clone(),
            model: report.model.clone(),
            threshold: report.threshold,
        };
        std::fs::write(&path, serde_json::to_string_pretty(&shipped)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = cmd.svg {
        std::fs::write(
            &path,
            scanaid_evals::answerability::reliability_svg(&report),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_compare(cmd: EvalCompareCmd) -> Result<ExitCode> {
    use scanaid_evals::compare::{compare, read_report, RESAMPLES};
    let base = read_report(&cmd.base)?;
    let new = read_report(&cmd.new)?;
    if (&base.dataset, &base.split) != (&new.dataset, &new.split) {
        bail!(
            "{} is {} ({}) and {} is {} ({}): compare runs of the same queries",
            cmd.base.display(),
            base.dataset,
            base.split,
            cmd.new.display(),
            new.dataset,
            new.split
        );
    }
    let c = compare(&base.per_query, &new.per_query).map_err(|reason| {
        anyhow::anyhow!(
            "{} and {} cannot be compared: {reason}",
            cmd.base.display(),
            cmd.new.display()
        )
    })?;
    println!(
        "| queries | base nDCG@10 | new nDCG@10 | difference | 95% interval (paired bootstrap) | p (randomisation) | better / worse / equal |\n|---|---|---|---|---|---|---|\n| {} | {:.4} | {:.4} | {:+.4} | {:+.4} to {:+.4} | {:.4} | {} / {} / {} |",
        c.n_queries,
        c.base_mean,
        c.new_mean,
        c.mean_difference,
        c.ci95.0,
        c.ci95.1,
        c.p_value,
        c.better,
        c.worse,
        c.equal
    );
    println!("({RESAMPLES} resamples each, fixed seed)");
    Ok(ExitCode::SUCCESS)
}

fn eval_retrieval(cmd: EvalRetrievalCmd) -> Result<ExitCode> {
    let data = scanaid_evals::beir::load(&cmd.data, &cmd.split)?;
    let embedder = cmd.model.embedder()?;
    let mut settings = SearchSettings::default();
    let default_weight = match settings.fusion {
        Fusion::MinMax { dense_weight }
        | Fusion::ZScore { dense_weight }
        | Fusion::TheoreticalMinMax { dense_weight } => dense_weight,
        Fusion::Rrf { .. } => 0.5,
    };
    settings.fusion = match cmd.fusion.as_str() {
        // `--dense-weight` alone re-weights the product's own method.
        "default" => match (settings.fusion, cmd.dense_weight) {
            (Fusion::ZScore { .. }, Some(w)) => Fusion::ZScore { dense_weight: w },
            (Fusion::MinMax { .. }, Some(w)) => Fusion::MinMax { dense_weight: w },
            (Fusion::TheoreticalMinMax { .. }, Some(w)) => {
                Fusion::TheoreticalMinMax { dense_weight: w }
            }
            (fusion, _) => fusion,
        },
        "rrf" => Fusion::Rrf { k: cmd.rrf_k },
        "minmax" => Fusion::MinMax {
            dense_weight: cmd.dense_weight.unwrap_or(default_weight),
        },
        "zscore" => Fusion::ZScore {
            dense_weight: cmd.dense_weight.unwrap_or(default_weight),
        },
        "tm2c2" => Fusion::TheoreticalMinMax {
            dense_weight: cmd.dense_weight.unwrap_or(default_weight),
        },
        other => bail!("unknown fusion {other:?}: use zscore, minmax, tm2c2 or rrf"),
    };
    if let Some(w) = cmd.title_weight {
        settings.lexical.title = w;
    }
    if let Some(c) = cmd.candidates {
        settings.candidates = c;
    }
    let options = scanaid_evals::retrieval::RetrievalOptions {
        mode: cmd.mode,
        settings,
        use_history: !cmd.no_history,
        cache_dir: eval_cache_dir(cmd.cache_dir),
        run_file: cmd.run,
    };
    let mut bar = progress::embedding_bar("embedding");
    let report = scanaid_evals::retrieval::evaluate(
        &data,
        &cmd.split,
        embedder.as_ref(),
        &options,
        &mut bar,
    )?;
    println!(
        "| dataset | split | mode | nDCG@10 | R@10 | R@100 | MRR@10 | p50 ms | p95 ms | queries | index s |\n|---|---|---|---|---|---|---|---|---|---|---|\n| {} | {} | {}{} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {:.1}{} |",
        report.dataset,
        report.split,
        report.mode,
        if report.history { " +history" } else { "" },
        report.ndcg10,
        report.recall10,
        report.recall100,
        report.mrr10,
        report.latency_ms.p50,
        report.latency_ms.p95,
        report.n_queries,
        report.index_s,
        if report.index_cached { " (cached)" } else { "" },
    );
    let stages = &report.stage_p50_ms;
    println!(
        "median per stage: embed {:.2} ms, bm25 {:.2} ms, vectors {:.2} ms, fuse {:.2} ms",
        stages.embed, stages.bm25, stages.vectors, stages.fuse
    );
    if let Some(path) = cmd.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanaid_evals::answerability::UnanswerableQuestion;
    use scanaid_evals::manual_questions::ManualQuestion;

    const REGISTRY: &str = concat!(
        "[[site]]\nid = \"k\"\nname = \"Kitchen\"\ntimezone = \"Europe/Madrid\"\n\n",
        "[[queue]]\nid = \"q\"\nname = \"Service\"\nsite = \"k\"\n\n",
        "[[asset]]\nid = \"dw1\"\nname = \"Dishwasher\"\nmodel = \"DW-500H\"\nsite = \"k\"\nqueue = \"q\"\nmanuals = [\"dw-500\", \"dw-500-es\"]\n",
    );

    fn answerable(id: &str, manual: &str, audience: &str) -> ManualQuestion {
        serde_json::from_value(serde_json::json!({
            "id": id, "question": "q", "manual": manual, "anchor": "a", "audience": audience
        }))
        .unwrap()
    }

    fn unanswerable(id: &str, asset: &str) -> UnanswerableQuestion {
        serde_json::from_value(serde_json::json!({"id": id, "question": "q", "asset": asset}))
            .unwrap()
    }

    #[test]
    fn questions_are_scoped_as_the_chat_serves_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("assets.toml"), REGISTRY).unwrap();
        let filters = served_filters(
            dir.path(),
            None,
            &[
                answerable("a1", "dw-500", "technician"),
                answerable("a2", "leaflet", "patient"),
                answerable("a4", "dw-500", "public"),
            ],
            &[
                unanswerable("u1", "dw1"),
                unanswerable("u2", ""),
                unanswerable("u3", "dw1"),
            ],
        )
        .unwrap();
        let manuals = vec!["dw-500".to_string(), "dw-500-es".to_string()];
        let audiences = |role: scanaid_server::roles::Role| -> Vec<String> {
            role.audiences().iter().map(|a| a.to_string()).collect()
        };
        // On the asset's manual, for the question's reader: the asset's manuals, that role's sections.
        assert_eq!(filters["a1"].manuals, manuals);
        assert_eq!(
            filters["a1"].audiences,
            audiences(scanaid_server::roles::Role::Technician)
        );
        assert_eq!(filters["a1"].owner, scanaid_indexer::OwnerScope::Public);
        // Public material is read by anyone: asked anonymously.
        assert_eq!(
            filters["a4"].audiences,
            audiences(scanaid_server::roles::Role::Anonymous)
        );
        // Tied to no asset: searched as without --as-served.
        assert!(!filters.contains_key("a2") && !filters.contains_key("u2"));
        // Unanswerable on an asset: its manuals, the staff roles in turn.
        assert_eq!(filters["u1"].manuals, manuals);
        assert_eq!(
            filters["u1"].audiences,
            audiences(scanaid_server::roles::Role::Operator)
        );
        assert_eq!(
            filters["u3"].audiences,
            audiences(scanaid_server::roles::Role::Technician)
        );
        // A reader or an asset nobody knows is an error, not a quietly unscoped question.
        let error = served_filters(dir.path(), None, &[answerable("a3", "dw-500", "chef")], &[])
            .unwrap_err();
        assert!(format!("{error:#}").contains("a3"), "{error:#}");
        let error =
            served_filters(dir.path(), None, &[], &[unanswerable("u4", "dw9")]).unwrap_err();
        assert!(format!("{error:#}").contains("dw9"), "{error:#}");
        // A folder without a registry is a clear error, not an unscoped run.
        let empty = tempfile::tempdir().unwrap();
        let error = served_filters(empty.path(), None, &[], &[]).unwrap_err();
        assert!(format!("{error:#}").contains("assets.toml"), "{error:#}");
    }
}
