//! The pages around a scan: a manual read in full (for the reader's role), search over the manuals,
//! the home page, the stylesheet and the health check.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use scanaid_indexer::{Filters, Mode, OwnerScope, SearchRequest};

use crate::http;
use crate::i18n;
use crate::language;
use crate::pages;
use crate::pages::SectionView;
use crate::roles::Role;
use crate::views::{FallbackPage, ManualPage, ManualSection, MessagePage, SearchPage};
use crate::{AppError, AppState};

const STYLESHEET: &str = include_str!("../static/site.css");

/// The pages' scripts: progressive enhancement only, every page works without them.
pub async fn script(crate::http::PathSegment(name): crate::http::PathSegment) -> Response {
    let body = match name.as_str() {
        "chat.js" => include_str!("../static/chat.js"),
        "support.js" => include_str!("../static/support.js"),
        "job.js" => include_str!("../static/job.js"),
        "editor.js" => include_str!("../static/editor.js"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

pub async fn health(State(app): State<AppState>) -> Response {
    let index = app.index();
    (
        [(header::CACHE_CONTROL, "no-store")],
        // Public chunks only, and no generation: anyone may ask, and either would tell when a
        // patient's packet was made or deleted (each rebuilds the index). `/metrics`, for the
        // operators, has both.
        format!("ok chunks={}\n", index.public_len()),
    )
        .into_response()
}

/// Who is asking: the signed-in staff role, or anonymous.
pub async fn role_of(app: &AppState, headers: &HeaderMap) -> Result<Role, AppError> {
    Ok(crate::account::current_user(app, headers)
        .await?
        .map_or(Role::Anonymous, |(user, _)| user.role))
}

pub(crate) fn ui_language(query: Option<&str>, headers: &HeaderMap) -> String {
    let available: Vec<String> = i18n::UI_LANGUAGES.iter().map(|s| s.to_string()).collect();
    language::negotiate(query, http::header(headers, "accept-language"), &available)
}

#[derive(Debug, Default, Deserialize)]
pub struct LangQuery {
    pub lang: Option<String>,
}

pub async fn home(
    State(app): State<AppState>,
    http::LenientQuery(query): http::LenientQuery<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let lang = ui_language(query.lang.as_deref(), &headers);
    // Home is where a person lands without a code: the same help as an unknown code, with a 200.
    let t = i18n::strings(&lang);
    let page = FallbackPage {
        t,
        lang,
        heading: "scanaid".to_string(),
        intro: t.home_intro.to_string(),
        sites: app.store.listed_sites().await?,
        patient: false,
    }
    .render()?;
    Ok(Html(page).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct GoQuery {
    pub code: Option<String>,
    pub lang: Option<String>,
}

/// `GET /go?code=...`: the code typed from under a label (the camera could not read it) opens as
/// if scanned. Spaces, dashes and dots people type between groups are dropped, and a code typed in
/// the wrong case (the alphabet has c/C, k/K, s/S...) opens the one live code it can only mean;
/// anything else that is not a well-formed code goes home, where the form is. The page's language
/// goes along.
pub async fn go(
    State(app): State<AppState>,
    http::LenientQuery(query): http::LenientQuery<GoQuery>,
) -> Result<Response, AppError> {
    let typed: String = query
        .code
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '\t'))
        .collect();
    let lang = query
        .lang
        .filter(|l| i18n::UI_LANGUAGES.contains(&l.as_str()))
        .map(|l| format!("?lang={l}"))
        .unwrap_or_default();
    let to = if crate::registry::is_well_formed_code(&typed) {
        let code = match app.store.resolve_code(&typed).await? {
            Some(_) => typed,
            None => app
                .store
                .live_code_ignoring_case(&typed)
                .await?
                .unwrap_or(typed),
        };
        format!("/c/{code}{lang}")
    } else {
        format!("/{lang}")
    };
    Ok(axum::response::Redirect::to(&to).into_response())
}

pub async fn manual(
    State(app): State<AppState>,
    crate::http::PathSegment(manual_id): crate::http::PathSegment,
    http::LenientQuery(query): http::LenientQuery<LangQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let role = role_of(&app, &headers).await?;
    let index = app.index();
    let lang = ui_language(query.lang.as_deref(), &headers);
    let Some(first) = index
        .chunks()
        .iter()
        .find(|c| c.manual_id == manual_id && c.owner.is_none())
    else {
        return Ok(not_found_page(&lang));
    };
    let sections = pages::manual_sections(&index, &manual_id, role)
        .into_iter()
        .map(|(path, anchor, html)| ManualSection {
            title: path.last().cloned().unwrap_or_default(),
            anchor,
            html,
        })
        .collect();
    let page = ManualPage {
        t: i18n::strings(&lang),
        lang: first.language.clone(),
        title: first.manual_title.clone(),
        revision: first.revision.clone(),
        sections,
    }
    .render()?;
    // What a signed-in reader sees depends on their role: not kept in the browser, where the
    // next person on a shared tablet could go Back to it after sign-out.
    let mut response = Html(page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Cookie"));
    if role != Role::Anonymous {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

#[derive(Debug, Deserialize, Default)]
pub struct SearchForm {
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub asset: String,
    #[serde(default)]
    pub lang: String,
}

pub const MAX_QUERY_CHARS: usize = 500;

/// Searches the manuals (the asset's own when one is given) within what the role may read. A POST, so the
/// question never lands in a URL, a log line or a browser history.
///
/// A search embeds the question, as a chat message does, so it counts against the same per-client
/// message limit and runs on one of the same inference slots.
pub async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    crate::http::LenientForm(form): crate::http::LenientForm<SearchForm>,
) -> Result<Response, AppError> {
    let role = role_of(&app, &headers).await?;
    let lang = ui_language(Some(form.lang.as_str()).filter(|l| !l.is_empty()), &headers);
    let query = form.q.trim().to_string();
    let t = i18n::strings(&lang);
    let machine = crate::views::MachineLink::to(&app.store, &form.asset, &lang).await?;
    // A search that is not run shows the search page again with the question in its box, why,
    // and the way back to the machine: nothing typed is lost.
    let page_with = |status: StatusCode,
                     refusal: String,
                     hits: Vec<SectionView>,
                     no_manuals: bool,
                     wait: Option<std::time::Duration>| {
        let page = SearchPage {
            t,
            lang: lang.clone(),
            query: form.q.chars().take(MAX_QUERY_CHARS * 2).collect(),
            asset_id: form.asset.clone(),
            hits,
            machine: machine.clone(),
            no_manuals,
            refusal,
        }
        .render()?;
        Ok::<_, AppError>(crate::http::with_retry_after(
            (status, [(header::CACHE_CONTROL, "no-store")], Html(page)).into_response(),
            wait,
        ))
    };
    if query.is_empty() || query.chars().count() > MAX_QUERY_CHARS {
        return page_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            t.search_length
                .replace("{max}", &MAX_QUERY_CHARS.to_string()),
            Vec::new(),
            false,
            None,
        );
    }
    let manuals = if form.asset.is_empty() {
        Vec::new()
    } else {
        match app.store.asset(&form.asset).await? {
            Some(a) => {
                let manuals = crate::pages::asset_manuals(&a.manual_ids(), &a.model, &app.index());
                // A machine no manual is for yet: an empty list would search every manual.
                if manuals.is_empty() {
                    return page_with(StatusCode::OK, String::new(), Vec::new(), true, None);
                }
                manuals
            }
            None => Vec::new(),
        }
    };
    let filters = Filters {
        manuals,
        audiences: role.audiences().iter().map(|s| s.to_string()).collect(),
        owner: OwnerScope::Public,
        ..Filters::default()
    };
    let request = SearchRequest {
        query: query.clone(),
        history: Vec::new(),
        filters,
        limit: 5,
        mode: Mode::Hybrid,
        language: Some(lang.to_string()),
    };
    let refused = |status: StatusCode, message: &str, wait: std::time::Duration| {
        page_with(status, message.to_string(), Vec::new(), false, Some(wait))
    };
    let client = crate::chat::client_of(&extensions);
    if let Some(wait) = app.chat.over_limit(None, client.as_deref()) {
        return refused(StatusCode::TOO_MANY_REQUESTS, t.search_too_many, wait);
    }
    let Ok(slot) = tokio::time::timeout(
        crate::chat::BUSY_WAIT,
        app.chat.slots.clone().acquire_owned(),
    )
    .await
    else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            t.chat_busy,
            crate::chat::BUSY_WAIT,
        );
    };
    let index = app.index();
    let embedder = app.embedder.clone();
    let searched = {
        let index = index.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            index.search(&request, Some(embedder.as_ref()))
        })
        .await?
    };
    let hits = match searched {
        Ok(hits) => hits,
        Err(scanaid_indexer::IndexError::BadRequest(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let hits = hits
        .iter()
        .map(|h| {
            let c = index.chunk(h.ord);
            SectionView {
                manual_id: c.manual_id.clone(),
                manual_title: c.manual_title.clone(),
                revision: c.revision.clone(),
                title: c
                    .heading_path
                    .last()
                    .cloned()
                    .unwrap_or_else(|| c.manual_title.clone()),
                anchor: c.anchor.clone(),
                html: pages::markdown_to_html(&c.text),
                truncated: false,
                language: c.language.clone(),
            }
        })
        .collect();
    page_with(StatusCode::OK, String::new(), hits, false, None)
}

fn not_found_page(lang: &str) -> Response {
    let t = i18n::strings(lang);
    let page = MessagePage {
        lang: lang.to_string(),
        heading: t.not_found_title.to_string(),
        message: t.not_found_text.to_string(),
        back: "/".to_string(),
    }
    .render()
    .unwrap_or_else(|_| t.not_found_title.to_string());
    (StatusCode::NOT_FOUND, Html(page)).into_response()
}

pub async fn not_found(headers: HeaderMap) -> Response {
    not_found_page(&ui_language(None, &headers))
}
