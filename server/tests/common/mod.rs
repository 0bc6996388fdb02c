//! Starts the real server on 127.0.0.1 for end-to-end tests: the real MiniLM embedder, the bundled
//! manuals indexed once per test binary, a fresh SQLite store per test, and a blocking HTTP client.

#![allow(dead_code)]

pub mod webdriver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use scanaid_indexer::SearchIndex;
use scanaid_models::{ensure_model, BertEmbedder, Embedder, MINILM_L6_V2};
use scanaid_server::registry::Registry;
use scanaid_server::rules::RuleSet;
use scanaid_server::{AppState, ServerConfig};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("SCANAID_MODELS_DIR")
        .map(Into::into)
        .unwrap_or_else(scanaid_models::default_models_dir)
}

/// MiniLM as `--embedding-model minilm` ships it (with the bundled tuned encoder delta), which most
/// tests serve with.
pub fn embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let (dir, _) = ensure_model(&models_dir(), &MINILM_L6_V2).expect("model fetched");
            let delta = scanaid_models::delta::MINILM_TUNED
                .load()
                .expect("the bundled delta loads");
            Arc::new(
                BertEmbedder::load_tuned(&dir, &MINILM_L6_V2, Some(&delta)).expect("model loads"),
            )
        })
        .clone()
}

/// multilingual-e5-small, the model `scanaid serve` picks for the bundled (English and Spanish)
/// manuals.
pub fn e5_embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let spec = &scanaid_models::MULTILINGUAL_E5_SMALL;
            let (dir, _) = ensure_model(&models_dir(), spec).expect("model fetched");
            Arc::new(BertEmbedder::load_e5s1(&dir, spec).expect("model loads"))
        })
        .clone()
}

/// The bundled manuals, indexed with MiniLM once per test binary (incrementally: unchanged chunks
/// reuse their embeddings from earlier runs).
pub fn bundled_index_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| index_bundled("server-e2e-index", embedder().as_ref()))
        .clone()
}

/// The same with multilingual-e5.
pub fn bundled_index_dir_e5() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| index_bundled("server-e2e-index-e5", e5_embedder().as_ref()))
        .clone()
}

fn index_bundled(name: &str, embedder: &dyn Embedder) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    scanaid_indexer::index_manuals(
        &repo().join("manuals"),
        &dir,
        embedder,
        scanaid_indexer::ChunkingConfig::default(),
        &mut |_, _| {},
    )
    .expect("bundled manuals index");
    dir
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub state: AppState,
    pub admin_password: String,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<scanaid_server::Result<()>>>,
}

/// No routing rules: every scan gets the page for its role.
pub fn spawn_app() -> TestApp {
    spawn_app_with(ServerConfig::default())
}

pub fn spawn_app_with(config: ServerConfig) -> TestApp {
    spawn_app_with_rules(RuleSet::default(), config)
}

pub fn spawn_app_with_rules(rules: RuleSet, config: ServerConfig) -> TestApp {
    spawn_app_serving(rules, config, &bundled_index_dir(), embedder())
}

/// A server on the index in `index_dir`, built with `embedder`'s model.
pub fn spawn_app_serving(
    rules: RuleSet,
    config: ServerConfig,
    index_dir: &Path,
    embedder: Arc<dyn Embedder>,
) -> TestApp {
    spawn(rules, config, index_dir, embedder, None, DataDir::Fresh)
}

/// Where a test server keeps its store.
enum DataDir {
    /// A new, empty directory: the first start, which creates the demo admin.
    Fresh,
    /// A directory a stopped server left: a restart.
    Reuse(tempfile::TempDir),
    /// Another running server's directory: a second replica on one store.
    Share(PathBuf),
}

/// The bundled-manuals server started again on what a stopped one left (`TestApp::shutdown`).
/// `admin_password` is empty: the demo admin was made by the first start.
pub fn restart_on(data: tempfile::TempDir, config: ServerConfig) -> TestApp {
    spawn_bundled_on(config, DataDir::Reuse(data))
}

/// A second bundled-manuals server on `first`'s store, as a replica behind a load balancer would
/// be. Drop it before `first`, whose directory it uses.
pub fn spawn_replica(first: &TestApp, config: ServerConfig) -> TestApp {
    spawn_bundled_on(config, DataDir::Share(first.data.path().to_path_buf()))
}

fn spawn_bundled_on(config: ServerConfig, data: DataDir) -> TestApp {
    spawn(
        RuleSet::default(),
        config,
        &bundled_index_dir(),
        embedder(),
        None,
        data,
    )
}

/// The bundled-manuals server over HTTPS with `tls`.
pub fn spawn_app_tls(
    config: ServerConfig,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> TestApp {
    spawn(
        RuleSet::default(),
        config,
        &bundled_index_dir(),
        embedder(),
        Some(tls),
        DataDir::Fresh,
    )
}

fn spawn(
    rules: RuleSet,
    config: ServerConfig,
    index_dir: &Path,
    embedder: Arc<dyn Embedder>,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    data: DataDir,
) -> TestApp {
    let index = SearchIndex::open_for(index_dir, embedder.as_ref()).expect("index opens");
    let registry = Registry::load(&repo().join("manuals/assets.toml")).expect("registry");
    let fresh = matches!(data, DataDir::Fresh);
    // A replica owns an empty placeholder; its store is in the first server's directory.
    let (data, data_dir) = match data {
        DataDir::Fresh => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            (dir, path)
        }
        DataDir::Reuse(dir) => {
            let path = dir.path().to_path_buf();
            (dir, path)
        }
        DataDir::Share(path) => (tempfile::tempdir().unwrap(), path),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (shutdown, wait) = tokio::sync::oneshot::channel::<()>();
    let (addr, state, admin_password, server) = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = ServerConfig {
            public_url: format!("{scheme}://{addr}"),
            ..config
        };
        let (running, admin) =
            scanaid_server::open(data_dir, Some(&registry), rules, index, embedder, config)
                .await
                .expect("server opens");
        let state = running.state.clone();
        let stop = async {
            let _ = wait.await;
        };
        let server = match tls {
            Some(tls) => {
                let listener = scanaid_server::tls::TlsListener::new(listener, tls);
                tokio::spawn(scanaid_server::serve(listener, running, stop))
            }
            None => tokio::spawn(scanaid_server::serve(listener, running, stop)),
        };
        let admin = if fresh {
            admin.expect("a fresh store creates the demo admin")
        } else {
            assert!(admin.is_none(), "the store already has its admin");
            String::new()
        };
        (addr, state, admin, server)
    });
    TestApp {
        addr,
        data,
        state,
        admin_password,
        runtime: Some(runtime),
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.as_ref().expect("running").block_on(f)
    }

    /// Waits until every scan event queued so far is in the store.
    pub fn flush_events(&self) {
        let events = self.state.events.clone();
        self.block_on(async move { events.flush().await });
    }

    /// Rows of a query on the store, each column as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<String>> {
        let pool = self.state.store.pool().clone();
        let sql = sql.to_string();
        self.block_on(async move {
            use sqlx::Row;
            let rows = sqlx::query(&sql).fetch_all(&pool).await.unwrap();
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| {
                            r.try_get::<Option<i64>, _>(i)
                                .map(|v| v.map(|v| v.to_string()))
                                .or_else(|_| r.try_get::<Option<String>, _>(i))
                                .unwrap()
                                .unwrap_or_else(|| "NULL".to_string())
                        })
                        .collect()
                })
                .collect()
        })
    }

    /// Graceful shutdown: stops accepting, finishes requests, writes queued events. Returns the data dir.
    pub fn shutdown(mut self) -> tempfile::TempDir {
        let _ = self.shutdown.take().unwrap().send(());
        let server = self.server.take().unwrap();
        let runtime = self.runtime.take().unwrap();
        runtime.block_on(async { server.await.unwrap().unwrap() });
        drop(runtime);
        // `state` still holds a pool handle; it is closed already.
        std::mem::replace(&mut self.data, tempfile::tempdir().unwrap())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(runtime), Some(server)) = (self.runtime.take(), self.server.take()) {
            let _ = runtime.block_on(server);
        }
    }
}

/// A response as the tests look at it.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Retry-After` header in whole seconds; panics (failing the test) when a refusal lacks it.
    pub fn retry_after_secs(&self) -> u64 {
        let value = self
            .header("retry-after")
            .unwrap_or_else(|| panic!("a {} says when to retry: {:?}", self.status, self.headers));
        value
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is whole seconds, not {value:?}"))
    }

    pub fn all_headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a `name=value` cookie set by this response.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.all_headers("set-cookie").into_iter().find_map(|c| {
            let first = c.split(';').next()?;
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    /// The value of a hidden form field.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .flat_map(|name| {
            response
                .all(&name)
                .into_iter()
                .map(|v| (name.clone(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let body = response.into_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    reply(request.call())
}

pub fn head(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().head(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    reply(request.call())
}

pub fn post_form(url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    reply(request.send_form(form))
}

/// Sends any bytes with any content type (fuzzing); the status, or 0 when the server dropped the
/// connection without an answer.
pub fn send_bytes(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let mut request = agent().request(method, url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    match request.send_bytes(body) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(_) => 0,
    }
}

/// `send_bytes`, answered as a `Reply` (status, headers, body).
pub fn send_bytes_reply(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = agent().request(method, url);
    for (k, v) in headers {
        request = request.set(k, v);
    }
    reply(request.send_bytes(body))
}

/// Creates a staff user with `role` and signs them in through the real form; the `Cookie` header
/// value of their session.
pub fn staff_cookie(app: &TestApp, username: &str, role: scanaid_server::roles::Role) -> String {
    let password = format!("{username}-password-long");
    let store = app.state.store.clone();
    let (u, p) = (username.to_string(), password.clone());
    app.block_on(async move { scanaid_server::auth::create_user(&store, &u, &p, role).await })
        .unwrap();
    let form = get(&app.url("/signin"), &[]);
    let csrf_cookie = form.set_cookie("scanaid_csrf").unwrap();
    let csrf = form.hidden("csrf").unwrap();
    let reply = post_form(
        &app.url("/signin"),
        &[("cookie", &format!("scanaid_csrf={csrf_cookie}"))],
        &[
            ("csrf", &csrf),
            ("username", username),
            ("password", &password),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    format!(
        "scanaid_session={}",
        reply.set_cookie("scanaid_session").unwrap()
    )
}

/// Signs the session in `cookie` out, as the sign-out page's confirmation form does.
pub fn sign_out(app: &TestApp, cookie: &str) {
    let confirm = get(&app.url("/signout"), &[("cookie", cookie)]);
    let out = post_form(
        &app.url("/signout"),
        &[("cookie", cookie)],
        &[("csrf", &confirm.hidden("csrf").unwrap())],
    );
    assert_eq!(out.status, 303, "{}", out.body);
}

/// POSTs `body` as JSON (raw text, so tests can send broken JSON too).
pub fn post_json(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = agent().post(url).set("content-type", "application/json");
    for (k, v) in headers {
        request = request.set(k, v);
    }
    reply(request.send_string(body))
}

pub const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
pub const ANDROID: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36";

/// The ICU pump's nameplate code in the bundled registry.
pub const PUMP_CODE: &str = "tJ6bpUpB";

/// Sends `request` as raw bytes on a fresh connection and returns everything the server answers.
/// For requests no HTTP client will send as written (a declared length with no body, a chunked
/// body over the limit). Write errors are ignored on purpose: a server that answers early and
/// closes may reset the rest of the upload, and the answer already sent is still readable.
pub fn raw_request(app: &TestApp, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(app.addr).expect("connect to the test server");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("read timeout");
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

// Discharge packets: the demo patients, as tests reach them.

/// One demo patient as the demo file lists them.
pub struct Demo {
    pub code: String,
    pub dob: String,
    pub pin: String,
}

/// Makes a packet as a clinician's form does and indexes its documents, as the server does in the
/// background after the form; the packet's code and PIN.
pub fn make_indexed_packet(
    app: &TestApp,
    new: scanaid_server::patients::NewPacket,
) -> scanaid_server::patients::CreatedPacket {
    let store = app.state.store.clone();
    let created = app
        .block_on(async move { store.create_packet(&new).await })
        .unwrap();
    let state = app.state.clone();
    assert!(app
        .block_on(async move { scanaid_server::patient_chat::ensure_packets_indexed(&state).await })
        .unwrap());
    created
}

pub fn spawn_with_demo_packets() -> (TestApp, Vec<(String, Demo)>) {
    spawn_demo(ServerConfig {
        demo_manuals: Some(repo().join("manuals")),
        ..ServerConfig::default()
    })
}

/// The demo packets with their documents indexed: the server builds a new generation in a copy of
/// the bundled index (its embedding cache means only the packet documents are embedded).
pub fn spawn_with_indexed_packets() -> (TestApp, Vec<(String, Demo)>, tempfile::TempDir) {
    indexed_packets_on(&bundled_index_dir(), embedder())
}

/// `spawn_with_indexed_packets` with multilingual-e5, as `scanaid serve` runs the bundled manuals.
pub fn spawn_with_indexed_packets_e5() -> (TestApp, Vec<(String, Demo)>, tempfile::TempDir) {
    indexed_packets_on(&bundled_index_dir_e5(), e5_embedder())
}

/// A server whose manuals folder and index are copies it may change (publishing writes both).
pub fn spawn_with_editable_manuals() -> (TestApp, tempfile::TempDir, tempfile::TempDir) {
    spawn_with_editable_manuals_and(ServerConfig::default())
}

/// `spawn_with_editable_manuals` with other settings.
pub fn spawn_with_editable_manuals_and(
    base: ServerConfig,
) -> (TestApp, tempfile::TempDir, tempfile::TempDir) {
    let manuals = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("manuals"), manuals.path());
    let index = tempfile::tempdir().unwrap();
    copy_dir(&bundled_index_dir(), index.path());
    let config = ServerConfig {
        demo_manuals: Some(manuals.path().to_path_buf()),
        index_dir: Some(index.path().to_path_buf()),
        ..base
    };
    let app = spawn_app_serving(RuleSet::default(), config, &bundled_index_dir(), embedder());
    (app, manuals, index)
}

fn indexed_packets_on(
    index_dir: &Path,
    embedder: Arc<dyn Embedder>,
) -> (TestApp, Vec<(String, Demo)>, tempfile::TempDir) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(index_dir, copy.path());
    let config = ServerConfig {
        demo_manuals: Some(repo().join("manuals")),
        index_dir: Some(copy.path().to_path_buf()),
        ..ServerConfig::default()
    };
    let app = spawn_app_serving(RuleSet::default(), config, index_dir, embedder);
    let demos = demos_of(&app);
    (app, demos, copy)
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub fn spawn_demo(config: ServerConfig) -> (TestApp, Vec<(String, Demo)>) {
    let app = spawn_app_with(config);
    let demos = demos_of(&app);
    (app, demos)
}

/// The demo patients a fresh server wrote to its demo file.
fn demos_of(app: &TestApp) -> Vec<(String, Demo)> {
    let text = std::fs::read_to_string(app.data.path().join("demo-patients.txt")).unwrap();
    let demos = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (name, rest) = l.split_once(": ").unwrap();
            let words: Vec<&str> = rest.split_whitespace().collect();
            let code = words[0].rsplit('/').next().unwrap().to_string();
            let dob = words[words.iter().position(|w| *w == "birth").unwrap() + 1].to_string();
            let pin = words[words.iter().position(|w| *w == "PIN").unwrap() + 1].to_string();
            (name.to_string(), Demo { code, dob, pin })
        })
        .collect::<Vec<_>>();
    assert_eq!(demos.len(), 3, "{text}");
    demos
}

pub fn demo<'a>(demos: &'a [(String, Demo)], name: &str) -> &'a Demo {
    &demos.iter().find(|(n, _)| n == name).unwrap().1
}

/// The text between the first `start` and the next `end` after it (or the end of `text`).
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in {text}"))
        + start.len();
    let to = text[from..].find(end).map_or(text.len(), |i| from + i);
    &text[from..to]
}

/// The lines of text an SVG label shows, in order, joined by spaces (long ones wrap onto two).
pub fn svg_text(svg: &str) -> String {
    svg.split("</text>")
        .filter_map(|piece| piece.rsplit_once('>').map(|(_, text)| text))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The label code of `add_machine_without_manuals`'s machine.
pub const NO_MANUALS_CODE: &str = "nEwCh9Lz";

/// A machine no manual is for yet ("Chiller 9 (new)", asset `chiller-new`, model CH-9, at the
/// pump's site and queue) with the label code `NO_MANUALS_CODE`.
pub fn add_machine_without_manuals(app: &TestApp) {
    app.rows(
        "INSERT INTO assets (id, name, model, site_id, queue_id, manuals)
         SELECT 'chiller-new', 'Chiller 9 (new)', 'CH-9', site_id, queue_id, '[]'
         FROM assets WHERE id = 'pump-icu-07'",
    );
    app.rows(&format!(
        "INSERT INTO codes (code, kind, asset_id, placement, created_at)
         VALUES ('{NO_MANUALS_CODE}', 'asset', 'chiller-new', 'front panel', '2026-12-01T00:00:00Z')"
    ));
}
