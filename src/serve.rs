//! `scanaid serve` and `scanaid codes`: glue that opens the model, the index and the store, then hands
//! them to the server crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use scanaid_indexer::SearchIndex;
use scanaid_server::registry::Registry;
use scanaid_server::rules::RuleSet;
use scanaid_server::ServerConfig;

use crate::cli::ModelOpts;

#[derive(Args, Clone)]
pub struct DataOpts {
    /// Data directory: the SQLite store and the index live here.
    #[arg(long = "data", env = "SCANAID_DATA", default_value = "data")]
    pub data_dir: PathBuf,
    /// Folder of manuals with the asset registry (assets.toml), read at every server start.
    #[arg(long, env = "SCANAID_MANUALS", default_value = "manuals")]
    pub manuals: PathBuf,
    /// Index directory (default: the data directory's `index`).
    #[arg(long, env = "SCANAID_INDEX")]
    pub index: Option<PathBuf>,
    /// Base URL printed on labels and in `codes` (default: for `serve`, http:// and the listening
    /// address; for `codes` and `qr`, the URL the last `serve` on this data directory used).
    #[arg(long, env = "SCANAID_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// Where `serve` leaves the base URL it serves at, in the data directory, for `codes` and `qr`.
const PUBLIC_URL_FILE: &str = "public-url";

impl DataOpts {
    pub fn registry(&self) -> Result<Registry> {
        let path = self.manuals.join("assets.toml");
        Registry::load(&path).context("loading the asset registry")
    }

    /// The routing rules (`rules.toml` beside the registry); none when the file is absent.
    pub fn rules(&self) -> Result<RuleSet> {
        let path = self.manuals.join("rules.toml");
        let from_file = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            RuleSet::parse(&text)
                .map_err(|e| anyhow::anyhow!("routing rules {}: {e}", path.display()))?
        } else {
            RuleSet::default()
        };
        // What the server would serve: an admin's saved rules win over the file's.
        if !self
            .data_dir
            .join(scanaid_server::store::DATABASE_FILE)
            .exists()
        {
            return Ok(from_file);
        }
        Ok(runtime()?.block_on(async {
            let store = scanaid_server::store::Store::open(&self.data_dir).await?;
            let rules = scanaid_server::rules_in_force(&store, from_file).await;
            store.close().await;
            rules
        })?)
    }

    /// The rules an admin saved in the store, or none: what serves when `rules.toml` is broken.
    fn saved_rules(&self) -> Result<RuleSet> {
        Ok(runtime()?.block_on(async {
            let store = scanaid_server::store::Store::open(&self.data_dir).await?;
            let rules = scanaid_server::rules_in_force(&store, RuleSet::default()).await;
            store.close().await;
            rules
        })?)
    }

    /// The base URL of printed codes: `--public-url`, else the one the last `serve` on this data
    /// directory used (a server on another port prints labels that reach it), else the default
    /// listening address.
    fn public_url_or_default(&self) -> String {
        self.public_url
            .clone()
            .or_else(|| {
                std::fs::read_to_string(self.data_dir.join(PUBLIC_URL_FILE))
                    .ok()
                    .map(|url| url.trim().to_string())
                    .filter(|url| !url.is_empty())
            })
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_string())
    }

    /// Looks a code up in the store (seeded from the registry on a fresh data directory).
    pub fn resolve_code(&self, code: &str) -> Result<Option<scanaid_server::store::ResolvedCode>> {
        let registry = self.registry()?;
        Ok(runtime()?.block_on(async {
            let store = scanaid_server::store::Store::open(&self.data_dir).await?;
            store.seed_if_empty(&registry).await?;
            let resolved = store.resolve_code(code).await;
            store.close().await;
            resolved.map(|r| r.map(|r| (*r).clone()))
        })?)
    }

    /// The sites, assets and codes rules may be scoped to, as the store holds them.
    pub fn known_scopes(&self) -> Result<scanaid_server::rules::KnownScopes> {
        let registry = self.registry()?;
        Ok(runtime()?.block_on(async {
            let store = scanaid_server::store::Store::open(&self.data_dir).await?;
            store.seed_if_empty(&registry).await?;
            let known = scanaid_server::rules::KnownScopes::of(&store).await;
            store.close().await;
            known
        })?)
    }

    fn index_dir(&self) -> PathBuf {
        self.index
            .clone()
            .unwrap_or_else(|| self.data_dir.join("index"))
    }
}

/// The server's settings from the command line; `over_tls` when it serves HTTPS itself.
fn server_config(cmd: &ServeCmd, over_tls: bool) -> ServerConfig {
    ServerConfig {
        // Set once the listener is bound, unless given.
        public_url: cmd.data.public_url.clone().unwrap_or_default(),
        // Over TLS, cookies are Secure and HSTS is sent; so too when the public address is HTTPS
        // (a TLS proxy in front): a patient's or staff cookie must never travel in the clear.
        secure_cookies: cmd.secure_cookies
            || over_tls
            || cmd
                .data
                .public_url
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://")),
        trusted_proxies: cmd.trusted_proxies.clone(),
        demo_manuals: Some(cmd.data.manuals.clone()),
        metrics_token: cmd.metrics_token.clone(),
        index_dir: Some(cmd.data.index_dir()),
        retention: scanaid_server::retention::Retention {
            chat: days(cmd.chat_retention_days),
            scan_events: days(cmd.scan_retention_days),
            ticket_idle: days(cmd.ticket_idle_days),
            audit: days(cmd.audit_retention_days),
            packets: days(cmd.packet_retention_days),
            ..Default::default()
        },
        ..ServerConfig::default()
    }
}

#[derive(Args)]
pub struct ServeCmd {
    /// Address to listen on.
    #[arg(long, env = "SCANAID_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Set the Secure flag on cookies (when a TLS proxy is in front; implied by --tls-cert).
    #[arg(long, env = "SCANAID_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, env = "SCANAID_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Bearer token a Prometheus on another machine sends to read /metrics (this machine needs none).
    #[arg(long, env = "SCANAID_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// A reverse proxy in front of scanaid (repeat for a chain, e.g. --trusted-proxy 127.0.0.1):
    /// its X-Forwarded-For is believed, so limits and analytics see each client, not the proxy.
    #[arg(
        long = "trusted-proxy",
        env = "SCANAID_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SCANAID_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Days a quiet conversation (its turns, ticket and replies) is kept.
    #[arg(long, env = "SCANAID_CHAT_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    pub chat_retention_days: u32,
    /// Days scan events are kept.
    #[arg(long, env = "SCANAID_SCAN_RETENTION_DAYS", default_value_t = 395, value_parser = clap::value_parser!(u32).range(1..))]
    pub scan_retention_days: u32,
    /// Days a ticket nobody wrote on, replied to or changed stays open before it is closed.
    #[arg(long, env = "SCANAID_TICKET_IDLE_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub ticket_idle_days: u32,
    /// Days audit log entries (patient packet access, sign-ins) are kept.
    #[arg(long, env = "SCANAID_AUDIT_RETENTION_DAYS", default_value_t = 395, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_retention_days: u32,
    /// Days a discharge packet (the patient's name, documents and second factors) is kept after the
    /// UTC day it was made, or a clinician last kept it longer; it opens through that last day and is
    /// deleted once the day has ended in every time zone (12:00 UTC the day after). Its PIN slip and
    /// page give the date.
    #[arg(long, env = "SCANAID_PACKET_RETENTION_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    pub packet_retention_days: u32,
    #[command(flatten)]
    pub data: DataOpts,
    #[command(flatten)]
    pub model: ModelOpts,
}

#[derive(Args)]
pub struct CodesCmd {
    /// Print a JSON array of {"code", "kind", "asset", "placement", "url"} instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataOpts,
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the index, building it from the bundled manuals on first start.
pub(crate) fn open_or_build_index(
    data: &DataOpts,
    embedder: &dyn scanaid_models::Embedder,
) -> Result<SearchIndex> {
    let index_dir = data.index_dir();
    if scanaid_indexer::generation::current(&index_dir)?.is_none() {
        eprintln!(
            "first start: indexing {} into {}",
            data.manuals.display(),
            index_dir.display()
        );
        crate::cli::build_index(&data.manuals, &index_dir, embedder)?;
    }
    use scanaid_indexer::IndexError;
    match SearchIndex::open_for(&index_dir, embedder) {
        // Another embedding model was chosen since (`--embedding-model`, or `auto` after the
        // manuals' languages changed): a new generation, the old one kept for rollback.
        Err(IndexError::ModelMismatch { built_with, .. }) => {
            eprintln!(
                "the index was built with {built_with}; re-indexing with {}",
                embedder.model_id()
            );
            crate::cli::build_index(&data.manuals, &index_dir, embedder)?;
        }
        // Built by another scanaid (another analyzer or format), or its meta.json is damaged: a
        // rebuild from the manuals makes one this scanaid reads; the old one stays on disk.
        Err(e @ (IndexError::Incompatible { .. } | IndexError::Meta { .. })) => {
            eprintln!("the index cannot be used as it is ({e}); re-indexing");
            crate::cli::build_index(&data.manuals, &index_dir, embedder)?;
        }
        _ => {}
    }
    SearchIndex::open_for(&index_dir, embedder).with_context(|| {
        format!(
            "opening the index in {} (rebuild it with `scanaid index --index {} --manuals {}`, \
             and the same --embedding-model as serve)",
            index_dir.display(),
            index_dir.display(),
            data.manuals.display()
        )
    })
}

/// Creates `dir` if needed and lets only this user enter it (mode 0700).
fn private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))
}

pub fn serve(cmd: ServeCmd) -> Result<ExitCode> {
    // A typo in assets.toml or rules.toml must not take every label offline at the next restart:
    // with a store from an earlier start, the last good registry and the saved rules (or none)
    // serve, and the problem is printed and listed on the admin home.
    let has_store = cmd
        .data
        .data_dir
        .join(scanaid_server::store::DATABASE_FILE)
        .exists();
    let mut start_problems = Vec::new();
    let registry = match cmd.data.registry() {
        Ok(registry) => Some(registry),
        Err(e) if has_store => {
            let problem = format!(
                "assets.toml could not be read, so the registry from the last start serves until it is fixed and the server restarted: {e:#}"
            );
            eprintln!("warning: {problem}");
            start_problems.push(problem);
            None
        }
        Err(e) => return Err(e),
    };
    let rules = match cmd.data.rules() {
        Ok(rules) => rules,
        Err(e) if has_store => {
            let problem = format!(
                "rules.toml could not be read, so the rules saved on /admin/rules serve (with none saved, every scan gets its role's page) until it is fixed and the server restarted: {e:#}"
            );
            eprintln!("warning: {problem}");
            start_problems.push(problem);
            cmd.data.saved_rules()?
        }
        Err(e) => return Err(e),
    };
    for finding in rules.analyse() {
        eprintln!("warning: routing rule {finding}");
    }
    // Checked before the slow steps, so a wrong certificate or key fails at once.
    let tls = match (&cmd.tls_cert, &cmd.tls_key) {
        (Some(cert), Some(key)) => Some(scanaid_server::tls::load_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Bound before the slow steps (the model, the index), so a port in use fails at once and a
    // second `serve` never re-indexes the running one's index first.
    let std_listener = std::net::TcpListener::bind(&cmd.addr).with_context(|| {
        format!(
            "listening on {} (is scanaid already running? choose another address with --addr or SCANAID_ADDR)",
            cmd.addr
        )
    })?;
    std_listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    let bound = std_listener.local_addr()?;
    if bound.ip().is_unspecified() && cmd.data.public_url.is_none() {
        eprintln!(
            "warning: listening on every interface, but labels and packets would encode {scheme}://{bound}, \
             which no phone can open; pass --public-url {scheme}://<this machine's name or address>:{}",
            bound.port()
        );
    }
    // The store and the index hold patients' documents and conversations: only this user may
    // enter their folders (an install made before this is closed up at the next start).
    private_dir(&cmd.data.data_dir)?;
    let embedder = cmd.model.embedder_for(&cmd.data.manuals)?;
    let index = open_or_build_index(&cmd.data, embedder.as_ref())?;
    private_dir(&cmd.data.index_dir())?;
    let mut config = server_config(&cmd, tls.is_some());
    config.start_problems = start_problems;
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .with_context(|| format!("listening on {}", cmd.addr))?;
        if config.public_url.is_empty() {
            // The bound address, so `--addr 127.0.0.1:0` gets the port it was given.
            config.public_url = format!("{scheme}://{}", listener.local_addr()?);
        }
        // `codes` and `qr` read it, so labels printed later reach this server.
        let remembered = cmd.data.data_dir.join(PUBLIC_URL_FILE);
        std::fs::write(&remembered, format!("{}\n", config.public_url))
            .with_context(|| format!("writing {}", remembered.display()))?;
        let (running, demo_admin) = scanaid_server::open(
            cmd.data.data_dir.clone(),
            registry.as_ref(),
            rules,
            index,
            embedder,
            config.clone(),
        )
        .await
        .context("opening the store")?;
        if let Some((file, made)) = &running.demo_patients {
            // The file, not its contents: second factors never go to the terminal or the logs.
            println!(
                "created {made} demo discharge packet(s); their codes, dates of birth and PINs are in {}",
                file.display()
            );
        }
        if let Some(password) = demo_admin {
            // Printed once, on the terminal only: it is not logged and not stored in clear.
            println!("created the demo administrator: username admin, password {password}");
            println!(
                "sign in at {}/signin and change it at {}/account/password",
                config.public_url, config.public_url
            );
        }
        println!(
            "scanaid listening on {scheme}://{}  (Ctrl-C to stop)",
            listener.local_addr()?
        );
        println!(
            "codes: scanaid codes --data {} --manuals {}",
            cmd.data.data_dir.display(),
            cmd.data.manuals.display()
        );
        match tls {
            Some(tls) => {
                let listener = scanaid_server::tls::TlsListener::new(listener, tls);
                scanaid_server::serve(listener, running, shutdown_signal()).await
            }
            None => scanaid_server::serve(listener, running, shutdown_signal()).await,
        }
        .context("serving")?;
        println!("stopped; every scan event was written");
        Ok(ExitCode::SUCCESS)
    })
}

fn days(n: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(n) * 24 * 3600)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

pub fn codes(cmd: CodesCmd) -> Result<ExitCode> {
    let registry = cmd.data.registry()?;
    let public_url = cmd.data.public_url_or_default();
    let rows = runtime()?.block_on(async {
        let store = scanaid_server::store::Store::open(&cmd.data.data_dir).await?;
        store.seed_if_empty(&registry).await?;
        let codes = store.codes().await?;
        store.close().await;
        Ok::<_, scanaid_server::ServerError>(codes)
    })?;
    let url = |code: &str| format!("{}/c/{code}", public_url.trim_end_matches('/'));
    let live: Vec<_> = rows.iter().filter(|c| c.retired_at.is_none()).collect();
    if cmd.json {
        let list: Vec<serde_json::Value> = live
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": c.code,
                    "kind": c.kind,
                    "asset": c.asset_id,
                    "placement": c.placement,
                    "url": url(&c.code),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    for c in live {
        {
            println!(
                "{:10} {:8} {:24} {:14} {}",
                c.code,
                c.kind,
                c.asset_id.as_deref().unwrap_or("-"),
                c.placement,
                url(&c.code)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct QrCmd {
    /// The code to print.
    #[arg(long)]
    pub code: String,
    /// Output file: .svg or .png.
    #[arg(long)]
    pub out: PathBuf,
    /// The line under the asset's name.
    #[arg(long, default_value = scanaid_server::label::DEFAULT_LINE)]
    pub line: String,
    #[command(flatten)]
    pub data: DataOpts,
}

pub fn qr(cmd: QrCmd) -> Result<ExitCode> {
    let extension = cmd
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(extension.as_deref(), Some("svg") | Some("png")) {
        anyhow::bail!(
            "--out {}: the label is written as .svg or .png",
            cmd.out.display()
        );
    }
    let Some(resolved) = cmd.data.resolve_code(&cmd.code)? else {
        anyhow::bail!(
            "unknown code {:?} (list codes with `scanaid codes`)",
            cmd.code
        );
    };
    if resolved.code.retired_at.is_some() {
        anyhow::bail!(
            "code {} is retired; print a new code for this asset",
            cmd.code
        );
    }
    let public_url = cmd.data.public_url_or_default();
    let label = scanaid_server::label::Label {
        url: format!(
            "{}/c/{}",
            public_url.trim_end_matches('/'),
            resolved.code.code
        ),
        title: resolved
            .asset
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_default(),
        line: cmd.line.clone(),
        code: resolved.code.code.clone(),
        contact: scanaid_server::label::contact_line(
            resolved.site.as_ref().map(|s| s.contact.as_str()),
        ),
    };
    let bytes = match extension.as_deref() {
        Some("svg") => scanaid_server::label::svg(&label).map(String::into_bytes),
        _ => scanaid_server::label::png(&label),
    }
    .map_err(|e| anyhow::anyhow!(e))?;
    std::fs::write(&cmd.out, bytes).with_context(|| format!("writing {}", cmd.out.display()))?;
    println!(
        "wrote {} for {} ({})",
        cmd.out.display(),
        label.url,
        label.title
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        serve: ServeCmd,
    }

    /// The command line as given, with no `SCANAID_*` environment variable filling in a flag (a
    /// shell or CI that sets one must not change what these tests see).
    fn parsed(args: &[&str]) -> ServeCmd {
        use clap::{CommandFactory, FromArgMatches};
        let matches = Command::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap();
        Command::from_arg_matches(&matches).unwrap().serve
    }

    #[test]
    fn serving_tls_makes_cookies_secure_and_the_retention_flags_reach_the_server() {
        let plain = parsed(&[]);
        assert!(!server_config(&plain, false).secure_cookies);
        assert!(
            server_config(&plain, true).secure_cookies,
            "HTTPS served here implies Secure cookies and HSTS"
        );
        assert!(server_config(&parsed(&["--secure-cookies"]), false).secure_cookies);
        assert!(
            server_config(
                &parsed(&["--public-url", "https://scan.example.org"]),
                false
            )
            .secure_cookies,
            "behind a TLS proxy, the public address says so"
        );
        assert!(
            !server_config(&parsed(&["--public-url", "http://10.0.0.5:8080"]), false)
                .secure_cookies
        );
        let config = server_config(
            &parsed(&["--ticket-idle-days", "7", "--audit-retention-days", "30"]),
            false,
        );
        assert_eq!(config.retention.ticket_idle, days(7));
        assert_eq!(config.retention.audit, days(30));
        assert!(Command::try_parse_from(["serve", "--ticket-idle-days", "0"]).is_err());
    }
}
