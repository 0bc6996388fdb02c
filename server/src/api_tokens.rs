//! API tokens for content pipelines: created by an administrator at `/admin/tokens` (shown once,
//! kept as a SHA-256 hash), scoped to what a content editor may do, revocable. A request presents
//! one as `Authorization: Bearer TOKEN`.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::account::require_admin;
use crate::auth::{self, SignedIn};
use crate::views::TokensPage;
use crate::{AppError, AppState, Result};

/// One token as the admin page lists it (never the token itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub created_by: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl crate::store::Store {
    /// A new token named `name`; the token itself, to show once.
    pub async fn create_api_token(&self, name: &str, by: &str) -> Result<String> {
        let token = format!("sat_{}", auth::random_token(24));
        sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, created_by, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(name)
        .bind(auth::token_hash(&token))
        .bind(by)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(token)
    }

    /// The name of the live token `token` is, noting its use; `None` for an unknown or revoked one.
    pub async fn api_token_user(&self, token: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE api_tokens SET last_used_at = ? WHERE token_hash = ? AND revoked_at IS NULL RETURNING name",
        )
        .bind(now())
        .bind(auth::token_hash(token))
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn api_tokens(&self) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as(
            "SELECT id, name, created_by, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn revoke_api_token(&self, id: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now())
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// The pipeline a request's bearer token names (`token:NAME`, as the audit trail records it), or
/// `None` when it has no live token.
pub async fn bearer_actor(app: &AppState, headers: &HeaderMap) -> Result<Option<String>> {
    let Some(token) = crate::http::header(headers, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with("sat_") && t.len() <= 128)
    else {
        return Ok(None);
    };
    Ok(app
        .store
        .api_token_user(token)
        .await?
        .map(|name| format!("token:{name}")))
}

#[derive(Debug, Deserialize, Default)]
pub struct TokenForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub revoke: String,
}

/// `GET /admin/tokens`.
pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> std::result::Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    render(&app, &me, StatusCode::OK, String::new(), String::new()).await
}

/// `POST /admin/tokens`: creates a token (`name`) or revokes one (`revoke` = its id).
pub async fn change(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<TokenForm>,
) -> std::result::Result<Response, AppError> {
    let me = match crate::account::require_role_posting(
        &app,
        &headers,
        &[crate::roles::Role::Admin],
        "This page is for administrators.",
        &form.csrf,
    )
    .await?
    {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    if !form.revoke.is_empty() {
        let revoked = match form.revoke.parse::<i64>() {
            Ok(id) => app.store.revoke_api_token(id).await?,
            Err(_) => false,
        };
        let message = if revoked {
            "Revoked. Requests with that token are refused from now on."
        } else {
            "No live token has that id."
        };
        let status = if revoked {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        return render(&app, &me, status, message.to_string(), String::new()).await;
    }
    let name = form.name.trim();
    let name_ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return render(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            "A token's name is 2 to 64 letters, digits, '-', '_' or '.', naming the pipeline that uses it."
                .to_string(),
            String::new(),
        )
        .await;
    }
    let token = app.store.create_api_token(name, &me.username).await?;
    render(
        &app,
        &me,
        StatusCode::OK,
        format!("Token {name} created. Copy it now: it is not shown again."),
        token,
    )
    .await
}

async fn render(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    message: String,
    new_token: String,
) -> std::result::Result<Response, AppError> {
    let html = TokensPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        message,
        new_token,
        tokens: app.store.api_tokens().await?,
    }
    .render()?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}
