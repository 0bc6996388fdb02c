//! Admin pages: the administration home (what needs attention, and every admin page), and codes:
//! the list of printed codes and their printable labels (SVG or PNG).

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::account::require_admin;
use crate::http::escape_markup;
use crate::label::{self, Label, DEFAULT_LINE};
use crate::{AppError, AppState};

#[derive(askama::Template)]
#[template(path = "admin_home.html")]
pub struct AdminHome {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub tickets_waiting: i64,
    pub webhooks_waiting: i64,
    pub packets_locked: i64,
    /// Problems with the site's files found at start (see `ServerConfig::start_problems`).
    pub start_problems: Vec<String>,
}

/// `GET /admin`: where an administrator lands after signing in.
pub async fn home(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let count = |sql: &str| {
        let pool = app.store.pool().clone();
        let sql = sql.to_string();
        async move {
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&pool)
                .await
                .map_err(crate::ServerError::from)
        }
    };
    let page = AdminHome {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        tickets_waiting: count("SELECT COUNT(*) FROM tickets WHERE status IN ('open', 'waiting')")
            .await?,
        webhooks_waiting: count(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE delivered_at IS NULL",
        )
        .await?,
        packets_locked: count(&format!(
            "SELECT COUNT(*) FROM packets WHERE locked_at IS NOT NULL AND (locked_until IS NULL OR locked_until > '{}')",
            crate::store::stored_time(chrono::Utc::now())
        ))
        .await?,
        start_problems: app.config.start_problems.clone(),
    }
    .render()?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

pub async fn codes(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    if let Err(response) = require_admin(&app, &headers).await? {
        return Ok(response);
    }
    let mut rows = String::new();
    // Discharge packets' codes are the first of a patient's two factors: only clinicians, who
    // print and reprint them from /patients (audited), see them.
    for c in app
        .store
        .codes()
        .await?
        .into_iter()
        .filter(|c| c.kind != "discharge")
    {
        let state = if c.retired_at.is_some() {
            "retired"
        } else {
            "live"
        };
        rows.push_str(&format!(
            "<tr><td><code>{code}</code></td><td>{kind}</td><td>{asset}</td><td>{placement}</td><td>{state}</td><td><a href=\"/admin/codes/{code}.svg\">SVG</a> · <a href=\"/admin/codes/{code}.png\">PNG</a></td></tr>\n",
            code = escape_markup(&c.code),
            kind = escape_markup(&c.kind),
            asset = escape_markup(c.asset_id.as_deref().unwrap_or("-")),
            placement = escape_markup(&c.placement),
        ));
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Codes</title><link rel=\"stylesheet\" href=\"/static/site.css\"><main><section class=\"card\"><h1>Codes and labels</h1><p>Discharge packets' codes are not listed here: clinicians print their labels from Discharge packets.</p><table><tr><th>Code</th><th>Kind</th><th>Asset</th><th>Placement</th><th>State</th><th>Label</th></tr>\n{rows}</table></section></main></html>"
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}

/// `/admin/codes/{code}.svg` or `.png`.
pub async fn label(
    State(app): State<AppState>,
    crate::http::PathSegment(file): crate::http::PathSegment,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Err(response) = require_admin(&app, &headers).await? {
        return Ok(response);
    }
    let Some((code, format)) = file.rsplit_once('.') else {
        return Ok(crate::http::no_such_page());
    };
    let resolved = if crate::registry::is_well_formed_code(code) {
        app.store.resolve_code(code).await?
    } else {
        None
    };
    // A discharge packet's label is printed by clinicians, from /patients (see `codes`).
    let Some(resolved) = resolved.filter(|r| r.code.kind != "discharge") else {
        return Ok(crate::http::no_such_page());
    };
    let label = Label {
        url: format!(
            "{}/c/{}",
            app.config.public_url.trim_end_matches('/'),
            resolved.code.code
        ),
        title: resolved
            .asset
            .as_ref()
            .map(|a| a.name.clone())
            .unwrap_or_default(),
        line: DEFAULT_LINE.to_string(),
        code: resolved.code.code.clone(),
        contact: label::contact_line(resolved.site.as_ref().map(|s| s.contact.as_str())),
    };
    let rendered = match format {
        "svg" => label::svg(&label).map(|s| ("image/svg+xml", s.into_bytes())),
        "png" => label::png(&label).map(|b| ("image/png", b)),
        _ => return Ok(crate::http::no_such_page()),
    };
    match rendered {
        Ok((content_type, body)) => Ok((
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()),
        Err(reason) => Ok((StatusCode::UNPROCESSABLE_ENTITY, reason).into_response()),
    }
}
