//! The web layer: scan resolution (`/c/{code}`), role pages rendered from the indexed manuals, staff
//! sign-in, and the store (SQLite) with scan events written off the request path. Handlers stay thin:
//! what a second handler would need lives in a module of its own.

pub mod account;
pub mod admin;
pub mod agent_queues;
pub mod api_tokens;
pub mod auth;
pub mod changes;
pub mod chat;
pub mod console;
pub mod content;
pub mod content_admin;
pub mod content_api;
pub mod device;
pub mod error;
pub mod events;
pub mod gaps;
pub mod http;
pub mod i18n;
pub mod label;
pub mod language;
pub mod manual_history;
pub mod metrics;
pub mod packet_admin;
pub mod packet_reissue;
pub mod pages;
pub mod patient_chat;
pub mod patient_pages;
pub mod patients;
pub mod registry;
pub mod reindex;
pub mod retention;
pub mod return_to;
pub mod roles;
pub mod rules;
pub mod rules_admin;
pub mod scan;
pub mod scans_view;
pub mod signin_devices;
pub mod signin_limits;
pub mod site;
pub mod store;
pub mod stream_session;
pub mod support;
pub mod text_diff;
pub mod ticket_notes;
pub mod tickets;
pub mod tls;
pub mod views;
pub mod webhook;
pub mod webhooks_view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use scanaid_indexer::SearchIndex;
use scanaid_models::Embedder;

pub use error::{AppError, Result, ServerError};

use crate::events::EventSink;
use crate::store::Store;

/// Settings the server runs with, resolved by the binary from flags and environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Base URL printed on labels, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Set the `Secure` flag on cookies (when served over TLS, directly or behind a proxy).
    pub secure_cookies: bool,
    /// Scan events waiting to be written before new ones are dropped (and counted).
    pub event_queue: usize,
    /// The time rules see: the system clock, or a fixed instant (tests, rehearsing rules).
    pub fixed_time: Option<chrono::DateTime<chrono::Utc>>,
    /// Chat messages one conversation may send in `chat::RATE_WINDOW` before it must wait.
    pub chat_per_conversation: u32,
    /// Chat messages one client address prefix may send in `chat::RATE_WINDOW` (a ward or a plant
    /// shares one address, so this is higher).
    pub chat_per_client: u32,
    /// Waits between webhook delivery attempts.
    pub webhook_backoff: webhook::Backoff,
    /// How long chat turns, tickets, contacts and scan events are kept.
    pub retention: retention::Retention,
    /// The bundled manuals folder: on first start the demo patients' packets are made from its
    /// leaflets (`None`: no demo packets).
    pub demo_manuals: Option<PathBuf>,
    /// The index directory: with `demo_manuals`, lets the server add patients' packet documents to
    /// the index (a new generation) when the store has documents the index lacks.
    pub index_dir: Option<PathBuf>,
    /// Bearer token `/metrics` asks of clients not on this machine (loopback needs none); without
    /// it, only loopback may scrape.
    pub metrics_token: Option<String>,
    /// Reverse proxies in front of the server whose `X-Forwarded-For` is believed: a request from
    /// one is taken to come from the client the header names. Without this, behind a proxy every
    /// client would share the proxy's address: one sign-in, PIN and chat limit for everybody, and
    /// `/metrics` open to anyone through a proxy on this machine. Empty: the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// What was wrong with the site's files at start and what serves instead (a broken
    /// `assets.toml` or `rules.toml`): the admin home lists them until a start without them.
    pub start_problems: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_string(),
            secure_cookies: false,
            event_queue: 65_536,
            fixed_time: None,
            chat_per_conversation: 20,
            chat_per_client: 120,
            webhook_backoff: webhook::Backoff::default(),
            retention: retention::Retention::default(),
            demo_manuals: None,
            index_dir: None,
            metrics_token: None,
            trusted_proxies: Vec::new(),
            start_problems: Vec::new(),
        }
    }
}

pub struct Inner {
    pub store: Store,
    pub events: EventSink,
    /// The index generation being served; a re-index swaps the `Arc`, readers keep the one they took.
    pub index: RwLock<Arc<SearchIndex>>,
    pub embedder: Arc<dyn Embedder>,
    pub config: ServerConfig,
    /// Routing rules, in order (see `rules.rs`); swapped whole when an admin edits them.
    pub rules: RwLock<Arc<rules::RuleSet>>,
    /// Chat inference slots and the confidence model.
    pub chat: chat::ChatEngine,
    /// Ticket events to agents' consoles, people's chats and webhooks.
    pub support: support::Hub,
    /// Held while a new index generation is built, so two builds never race in one directory. A
    /// publish's job takes it before it writes the manuals folder, so no other build reads the
    /// folder between its change and its gated build.
    pub reindex: tokio::sync::Mutex<()>,
    /// Held by a publish, deletion, override or rollback from its check that no job is running
    /// until its own job is recorded, so two changes to the manuals folder never both pass it.
    pub folder_change: tokio::sync::Mutex<()>,
    /// Role page content per index generation (see `pages::PageCache`).
    pub pages: pages::PageCache,
    /// Rendered role pages per index generation (see `pages::RenderedPages`).
    pub rendered: pages::RenderedPages,
    /// Operational figures for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Progress of the publish jobs running in this process.
    pub jobs: content::LiveJobs,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn index(&self) -> Arc<SearchIndex> {
        self.index.read().expect("index lock").clone()
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.config.fixed_time.unwrap_or_else(chrono::Utc::now)
    }

    pub fn rules(&self) -> Arc<rules::RuleSet> {
        self.rules.read().expect("rules lock").clone()
    }
}

/// Largest request body accepted (forms and JSON); more gets 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest form the manual editor posts (a manual, URL-encoded), and the rules editor: their own
/// limits on the text are checked inside, where the editor can show the text back with the reason.
/// A manual's 512 KB can triple when form-encoded (every byte of non-Latin text becomes `%XX`), and
/// a manual somewhat over its limit must still arrive, to be refused with its text shown back: 4 MB
/// takes a non-Latin text of up to about 1.3 MB (2 MB stopped one of 700 KB with a bare 413).
pub const MAX_MANUAL_FORM_BYTES: usize = 4 * 1024 * 1024;
/// Largest form a clinician posts for a new packet: its 20,000-character note, form-encoded, is up
/// to 9 bytes a character in scripts outside Latin (3 UTF-8 bytes, each as `%XX`).
pub const MAX_PACKET_FORM_BYTES: usize = 256 * 1024;

/// Every route, without the guard and the body limit: serve (and test) `service`, which adds them.
fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(site::home))
        .route("/go", get(site::go))
        .route("/metrics", get(metrics::exposition))
        .route("/admin/manuals/{id}/delete", post(content_admin::delete))
        .route("/admin/jobs/{id}/events", get(content_admin::job_events))
        .route("/admin/jobs/{id}/rollback", post(content_admin::roll_back))
        .route(
            "/admin/jobs/{id}/override",
            post(content_admin::override_gate),
        )
        .route("/admin/gaps/handled", post(gaps::mark_handled))
        .route("/admin/gaps/unhandled", post(gaps::unmark_handled))
        .route("/api/content/manuals", get(content_api::list))
        .route(
            "/api/content/manuals/{id}",
            axum::routing::put(content_api::publish)
                .delete(content_api::delete)
                .layer(DefaultBodyLimit::max(MAX_MANUAL_FORM_BYTES)),
        )
        .route(
            "/api/content/manuals/{id}/check",
            post(content_api::check).layer(DefaultBodyLimit::max(MAX_MANUAL_FORM_BYTES)),
        )
        .route("/api/content/jobs/{id}", get(content_api::job))
        .route(
            "/api/content/jobs/{id}/rollback",
            post(content_api::rollback),
        )
        .route("/c/{code}", get(scan::scan).post(patient_pages::verify))
        .route("/patient/signout", post(patient_pages::sign_out))
        .route("/api/patient/chat", post(patient_chat::ask))
        .route("/patient/ask", post(patient_pages::ask_form))
        .route("/patients/{packet}/reset", post(patient_pages::reset))
        .route("/patients/{packet}/keep", post(patient_pages::keep))
        .route("/patients/{packet}/delete", post(patient_pages::delete))
        .route("/m/{manual}", get(site::manual))
        .route("/search", post(site::search))
        .route("/api/chat", post(chat::chat))
        .route("/api/chat/feedback", post(chat::feedback))
        .route("/api/chat/history", post(chat::history))
        .route("/api/chat/events", post(support::person_events))
        .route("/chat", post(chat::chat_form))
        .route("/chat/replies", post(chat::replies_form))
        .route("/support/events", get(support::console_events))
        .route("/support/tickets/{id}/reply", post(console::reply))
        .route("/support/tickets/{id}/close", post(console::close))
        .route("/support/tickets/{id}/reopen", post(console::reopen))
        .route("/support/tickets/{id}/take", post(console::take))
        .route("/support/tickets/{id}/release", post(console::release))
        .route("/support/tickets/{id}/move", post(console::move_queue))
        .route("/support/tickets/{id}/note", post(ticket_notes::add))
        .route("/signin", get(account::signin_form).post(account::signin))
        .route(
            "/signout",
            get(account::signout_page).post(account::signout),
        )
        .route("/admin/users/{username}/unlock", post(account::unlock_user))
        .route("/admin/users/{username}/remove", post(account::remove_user))
        .route("/admin/users/{username}/role", post(account::set_user_role))
        .route(
            "/admin/users/{username}/password",
            post(account::reset_user_password),
        )
        .route(
            "/admin/users/{username}/queues",
            post(account::set_user_queues),
        )
        .route("/static/site.css", get(site::stylesheet))
        .route("/static/{script}", get(site::script))
        .route("/healthz", get(site::health))
        .merge(staff_pages())
        .fallback(site::not_found)
        .with_state(state)
}

/// The staff pages (and their forms): a page request sent to sign in comes back to the page
/// afterwards (`return_to::remember_the_page`, on these routes only).
fn staff_pages() -> Router<AppState> {
    Router::new()
        .route("/admin", get(admin::home))
        .route(
            "/admin/manuals",
            get(content_admin::list)
                .post(content_admin::save)
                .layer(DefaultBodyLimit::max(MAX_MANUAL_FORM_BYTES)),
        )
        .route("/admin/manuals/new", get(content_admin::new_manual))
        .route("/admin/manuals/{id}", get(content_admin::edit))
        .route("/admin/jobs/{id}", get(content_admin::job))
        .route("/admin/jobs/{id}/text", get(content_admin::job_text))
        .route("/admin/manuals/{id}/history", get(manual_history::history))
        .route("/admin/revisions/{id}", get(manual_history::revision))
        .route("/admin/revisions/{id}/open", get(manual_history::open))
        .route(
            "/admin/tokens",
            get(api_tokens::page).post(api_tokens::change),
        )
        .route("/admin/gaps", get(gaps::page))
        .route("/admin/scans", get(scans_view::page))
        .route("/admin/gaps.csv", get(gaps::csv))
        .route("/patients", get(patient_pages::packets))
        .route(
            "/patients/new",
            get(packet_admin::new_form)
                .post(packet_admin::create)
                .layer(DefaultBodyLimit::max(MAX_PACKET_FORM_BYTES)),
        )
        .route("/patients/{packet}/label", get(packet_reissue::label))
        .route("/patients/{packet}/pin", post(packet_reissue::new_pin))
        .route("/support", get(console::queue))
        .route("/support/tickets/{id}", get(console::ticket))
        .route("/support/find", get(console::find))
        .route(
            "/account/password",
            get(account::password_form).post(account::change_password),
        )
        .route("/admin/users", get(account::users).post(account::add_user))
        .route("/admin/codes", get(admin::codes))
        .route(
            "/admin/rules",
            get(rules_admin::page)
                .post(rules_admin::save)
                .layer(DefaultBodyLimit::max(MAX_MANUAL_FORM_BYTES)),
        )
        .route("/admin/codes/{label}", get(admin::label))
        .route("/admin/files/open", get(content_admin::open_broken))
        .route("/admin/webhooks", get(webhooks_view::page))
        .route(
            "/admin/webhooks/{queue}/send",
            post(webhooks_view::send_now),
        )
        .route(
            "/admin/webhooks/{queue}/retry",
            post(webhooks_view::send_set_aside),
        )
        .route_layer(axum::middleware::from_fn(return_to::remember_the_page))
}

/// The routes as the server runs them: behind the guard (body limits, security headers) and the
/// default body limit. Both wrap the router once, outside it: `Router::layer` wraps every route
/// instead, and each such layer was another boxed service cloned per request (README, "Scan
/// throughput").
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    use tower::Layer;
    let guard = http::GuardLayer {
        strict_transport_security: state.config.secure_cookies,
        trusted_proxies: state.config.trusted_proxies.clone().into(),
    };
    guard.layer(DefaultBodyLimit::max(MAX_BODY_BYTES).layer(app(state)))
}

/// Everything `serve` needs, opened by the caller (the binary or a test).
pub struct Running {
    pub state: AppState,
    pub event_writer: tokio::task::JoinHandle<()>,
    /// Sends ticket events to support queues' webhooks (see `webhook.rs`).
    pub webhooks: tokio::task::JoinHandle<()>,
    /// Deletes what is past its retention limit (see `retention.rs`).
    pub retention: tokio::task::JoinHandle<()>,
    /// Reloads codes and rules another server on the store changed (see `changes.rs`).
    pub changes: tokio::task::JoinHandle<()>,
    /// Written on first start: the file with the demo patients' codes and second factors, and how
    /// many packets it lists.
    pub demo_patients: Option<(PathBuf, usize)>,
}

/// Opens the store, brings its registry in line with `assets.toml`, starts the event writer.
/// Without a registry (`assets.toml` could not be read), the store's registry from the last start
/// serves as it is; a store that has none yet cannot serve, and says so.
pub async fn open(
    data_dir: PathBuf,
    registry: Option<&registry::Registry>,
    rules: rules::RuleSet,
    index: SearchIndex,
    embedder: Arc<dyn Embedder>,
    config: ServerConfig,
) -> Result<(Running, Option<String>)> {
    let store = Store::open(&data_dir).await?;
    // assets.toml is the registry's source: what it adds or changes is served from this start on.
    match registry {
        Some(registry) => {
            if let Some(summary) = store.sync_registry(registry).await?.summary() {
                tracing::info!("{summary}");
            }
        }
        None if store.listed_sites().await?.is_empty() => {
            return Err(ServerError::Config(
                "the asset registry could not be read and this store has none from an earlier start: fix assets.toml".to_string(),
            ));
        }
        None => {}
    }
    store
        .fail_interrupted_jobs(config.demo_manuals.as_deref())
        .await?;
    // Read before the rules and codes are loaded, so a change made meanwhile is picked up.
    let marks = store.change_marks().await?;
    let rules = rules_in_force(&store, rules).await?;
    let demo_patients = match &config.demo_manuals {
        Some(manuals) => {
            patients::seed_demo_packets(&store, manuals, &data_dir, &config.public_url).await?
        }
        None => None,
    };
    let (events, event_writer) = EventSink::start(&store, config.event_queue)?;
    let metrics = metrics::Metrics::new(events.counters.clone());
    let state = AppState(Arc::new(Inner {
        metrics,
        jobs: content::LiveJobs::default(),
        store,
        events,
        index: RwLock::new(Arc::new(index)),
        rules: RwLock::new(Arc::new(rules)),
        // Before `config` and `embedder` move in.
        chat: chat::ChatEngine::new(
            config.chat_per_conversation,
            config.chat_per_client,
            embedder.model_id(),
        ),
        embedder,
        config,
        pages: pages::PageCache::default(),
        rendered: pages::RenderedPages::default(),
        support: support::Hub::default(),
        reindex: tokio::sync::Mutex::new(()),
        folder_change: tokio::sync::Mutex::new(()),
    }));
    let webhooks = webhook::start(
        state.store.clone(),
        state.support.webhook_wake.clone(),
        state.config.webhook_backoff,
    );
    if patient_chat::ensure_packets_indexed(&state)
        .await
        .map_err(|e| e.0)?
    {
        tracing::info!("indexed the patients' packet documents into a new generation");
    }
    // Last of the fallible steps: the password is shown once, so the account is made only when the
    // start cannot fail after it (else it would exist with a password nobody saw).
    let demo_admin = ensure_demo_admin(&state.store).await?;
    let retention = retention::start(state.clone());
    let changes = changes::start(state.clone(), marks);
    Ok((
        Running {
            state,
            event_writer,
            webhooks,
            retention,
            changes,
            demo_patients,
        },
        demo_admin,
    ))
}

/// The rules an admin saved last, else the corpus file's. A saved set that no longer parses (a newer
/// rule syntax rolled back, say) is reported and the file's rules serve instead of none.
pub async fn rules_in_force(store: &Store, from_file: rules::RuleSet) -> Result<rules::RuleSet> {
    Ok(saved_rule_set(store).await?.unwrap_or(from_file))
}

/// The rule set an admin saved last, if there is one and it parses (a set that does not parse is
/// reported here).
pub async fn saved_rule_set(store: &Store) -> Result<Option<rules::RuleSet>> {
    let Some((text, saved_at, saved_by)) = store.saved_rules().await? else {
        return Ok(None);
    };
    match rules::RuleSet::parse(&text) {
        Ok(saved) => {
            tracing::info!(%saved_at, %saved_by, "routing rules from the store");
            Ok(Some(saved))
        }
        Err(error) => {
            tracing::error!(%error, %saved_at, "saved routing rules do not parse; keeping the rules in force");
            Ok(None)
        }
    }
}

/// On first start (no users), creates `admin` with a random password and returns it to print once.
async fn ensure_demo_admin(store: &Store) -> Result<Option<String>> {
    if auth::count_users(store).await? > 0 {
        return Ok(None);
    }
    let password = auth::random_token(9);
    auth::create_user(store, "admin", &password, roles::Role::Admin).await?;
    Ok(Some(password))
}

/// Serves until `shutdown` resolves, then drains in-flight requests and writes every queued scan
/// event before returning. `listener` is a `tokio::net::TcpListener`, or a `tls::TlsListener` for
/// HTTPS.
pub async fn serve<L>(
    listener: L,
    running: Running,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
    tls::PeerAddr:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let Running {
        state,
        event_writer,
        webhooks,
        retention,
        changes,
        ..
    } = running;
    let store = state.store.clone();
    let service = service(state.clone());
    let hub_state = state.clone();
    // Event streams never end by themselves: close them when shutdown starts, or the drain would
    // wait for every open console and chat.
    let shutdown = async move {
        shutdown.await;
        hub_state.support.close();
    };
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
            tls::PeerAddr,
        >(service),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| ServerError::Io {
        path: PathBuf::from("<listener>"),
        source,
    })?;
    // No request is in flight any more: write what is queued, then stop the writer.
    state.events.close().await;
    event_writer.await?;
    // Undelivered webhook events stay in the store and go out after the next start.
    webhooks.abort();
    retention.abort();
    changes.abort();
    store.close().await;
    Ok(())
}
