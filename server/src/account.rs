//! Staff accounts in the browser: sign in, sign out, and (admins) the user list and adding users.
//! Every form carries a CSRF token; failed sign-ins are limited per account and per client.

use askama::Template;
use axum::extract::{Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::auth::{self, SignedIn, SESSION_COOKIE, SIGNIN_CSRF_COOKIE};
use crate::http;
use crate::roles::{Role, ALL_ROLES};
use crate::signin_devices::{
    device_account_key, device_cookie_name, known_device, remember_device, DEVICE_COOKIE_PATH,
    DEVICE_LIFETIME,
};
use crate::signin_limits::{PER_ACCOUNT, PER_CLIENT};
use crate::views::{AdminUsersPage, MessagePage, SignInPage, UserRow};
use crate::{AppError, AppState};

pub(crate) fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The sign-in form; `next` is the page to return to (kept only if `return_to::safe_next`
/// accepts it).
fn signin_page(
    app: &AppState,
    status: StatusCode,
    error: &str,
    username: &str,
    next: &str,
) -> Result<Response, AppError> {
    let csrf = auth::random_token(16);
    let page = SignInPage {
        lang: "en".to_string(),
        csrf: csrf.clone(),
        error: error.to_string(),
        username: username.to_string(),
        next: crate::return_to::safe_next(next).unwrap_or("").to_string(),
    }
    .render()?;
    let cookie = http::set_cookie(
        SIGNIN_CSRF_COOKIE,
        &csrf,
        "/signin",
        Some(3600),
        app.config.secure_cookies,
    );
    Ok(no_store(with_cookie(
        (status, Html(page)).into_response(),
        &cookie,
    )))
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    /// The page to return to after signing in.
    pub next: Option<String>,
}

/// `GET /signin[?next=PAGE]`.
pub async fn signin_form(
    State(app): State<AppState>,
    http::LenientQuery(query): http::LenientQuery<SignInQuery>,
) -> Result<Response, AppError> {
    signin_page(
        &app,
        StatusCode::OK,
        "",
        "",
        query.next.as_deref().unwrap_or(""),
    )
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// The page to return to (see `return_to`).
    #[serde(default)]
    pub next: String,
}

pub async fn signin(State(app): State<AppState>, request: Request) -> Result<Response, AppError> {
    let client = http::peer(&request)
        .map(http::ip_prefix)
        .unwrap_or_else(|| "unknown".to_string());
    let headers = request.headers().clone();
    let Form(form) = match Form::<SignInForm>::from_request(request, &app).await {
        Ok(form) => form,
        Err(_) => {
            return signin_page(
                &app,
                StatusCode::BAD_REQUEST,
                "The form was incomplete. Please try again.",
                "",
                "",
            )
        }
    };
    let expected = http::cookie(&headers, SIGNIN_CSRF_COOKIE).unwrap_or("");
    if !auth::tokens_match(expected, &form.csrf) {
        return signin_page(
            &app,
            StatusCode::FORBIDDEN,
            "This form expired. Please sign in again.",
            &form.username,
            &form.next,
        );
    }
    let username = form.username.trim().to_ascii_lowercase();
    let client_key = format!("client:{client}");
    let now = chrono::Utc::now();
    // A browser this account signed in from before counts its failures on its own, and the
    // address's limit does not apply to it (`signin_devices`).
    let device = match http::cookie(&headers, &device_cookie_name(&username)) {
        Some(token) if !username.is_empty() && username.len() <= 64 => {
            known_device(&app.store, &username, token, now).await?
        }
        _ => None,
    };
    let account_key = match &device {
        Some(device) => device_account_key(&username, device),
        None => format!("user:{username}"),
    };
    let locked = match PER_ACCOUNT
        .locked_for(&app.store, &account_key, now)
        .await?
    {
        Some(wait) => Some(wait),
        None if device.is_some() => None,
        None => PER_CLIENT.locked_for(&app.store, &client_key, now).await?,
    };
    if let Some(wait) = locked {
        if let Some(device) = &device {
            // A known browser at its own lockout is a stranger again (see below).
            crate::signin_devices::forget_device(&app.store, device).await?;
        }
        return locked_out(&app, wait, &username, &form.next);
    }
    if username.is_empty()
        || username.len() > 64
        || form.password.is_empty()
        || form.password.chars().count() > 256
    {
        return signin_page(
            &app,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter your username and password.",
            &username,
            &form.next,
        );
    }
    // Counted as failures before the password is checked (see `count_attempt`); a right one is
    // taken back below.
    let over_account = PER_ACCOUNT
        .count_attempt(&app.store, &account_key, now)
        .await?;
    let over_client = match device {
        Some(_) => None,
        None => {
            PER_CLIENT
                .count_attempt(&app.store, &client_key, now)
                .await?
        }
    };
    if let Some(wait) = over_account.or(over_client) {
        if let (Some(device), Some(_)) = (&device, over_account) {
            // Its own lockout reached: the browser is a stranger again, so a copied cookie is not
            // a fresh set of guesses after every lockout. (The owner's next right password, once
            // the account-wide limit allows, makes it known again.)
            crate::signin_devices::forget_device(&app.store, device).await?;
        }
        return locked_out(&app, wait, &username, &form.next);
    }
    match auth::sign_in(&app.store, &username, &form.password).await? {
        Some(token) => {
            PER_ACCOUNT.record_success(&app.store, &account_key).await?;
            let device_cookie = match device {
                Some(_) => None,
                None => {
                    PER_CLIENT.take_back(&app.store, &client_key).await?;
                    let device = remember_device(&app.store, &username, now).await?;
                    Some(http::set_cookie(
                        &device_cookie_name(&username),
                        &device,
                        DEVICE_COOKIE_PATH,
                        Some(DEVICE_LIFETIME.as_secs()),
                        app.config.secure_cookies,
                    ))
                }
            };
            let cookie =
                http::set_cookie(SESSION_COOKIE, &token, "/", None, app.config.secure_cookies);
            // Back to the page that sent them here, else their role's own page.
            let role = auth::session_user(&app.store, &token)
                .await?
                .map_or(Role::Anonymous, |user| user.role);
            let to =
                crate::return_to::safe_next(&form.next).unwrap_or(crate::return_to::landing(role));
            let mut response = with_cookie(Redirect::to(to).into_response(), &cookie);
            if let Some(device_cookie) = device_cookie {
                response = with_cookie(response, &device_cookie);
            }
            Ok(no_store(with_cookie(
                response,
                &http::set_cookie(
                    SIGNIN_CSRF_COOKIE,
                    "",
                    "/signin",
                    Some(0),
                    app.config.secure_cookies,
                ),
            )))
        }
        None => {
            tracing::info!(client = %client, "failed sign-in");
            signin_page(
                &app,
                StatusCode::UNAUTHORIZED,
                "Wrong username or password.",
                &username,
                &form.next,
            )
        }
    }
}

/// The sign-in page refusing for `wait` more: too many failures for the account or the address.
fn locked_out(
    app: &AppState,
    wait: std::time::Duration,
    username: &str,
    next: &str,
) -> Result<Response, AppError> {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    Ok(crate::http::with_retry_after(
        signin_page(
            app,
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Too many failed sign-ins. Try again in {minutes} minute(s), or ask an administrator."),
            username,
            next,
        )?,
        Some(wait),
    ))
}

use axum::extract::FromRequest;

/// The signed-in user behind the request's cookie, if any.
pub async fn current_user(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(SignedIn, String)>, AppError> {
    let Some(token) = http::cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(auth::session_user(&app.store, token)
        .await?
        .map(|user| (user, token.to_string())))
}

#[derive(Debug, Deserialize, Default)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn signout(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<CsrfForm>,
) -> Result<Response, AppError> {
    if let Some((user, token)) = current_user(&app, &headers).await? {
        if !auth::tokens_match(&user.csrf, &form.csrf) {
            return forbidden("This form expired. Reload the page and try again.");
        }
        auth::sign_out(&app.store, &token).await?;
        // Gone home: the tickets they held go back to their queues for colleagues to take,
        // unless they are still signed in elsewhere (another device).
        if !auth::has_live_session(&app.store, &user.username, chrono::Utc::now()).await? {
            release_held(&app, &user.username, &user.username, &no_queue()).await?;
        }
    }
    let cookie = http::set_cookie(SESSION_COOKIE, "", "/", Some(0), app.config.secure_cookies);
    Ok(no_store(with_cookie(
        Redirect::to("/").into_response(),
        &cookie,
    )))
}

/// `GET /signout`: the confirmation form, for pages that cannot carry a CSRF token themselves (the
/// equipment pages are rendered once per role, not per person). Signed out already: home.
pub async fn signout_page(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some((user, _)) = current_user(&app, &headers).await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let page = SignOutPage {
        lang: "en".to_string(),
        me: user.username,
        csrf: user.csrf,
    }
    .render()?;
    Ok(no_store(Html(page).into_response()))
}

#[derive(Template)]
#[template(path = "signout.html")]
struct SignOutPage {
    lang: String,
    me: String,
    csrf: String,
}

pub(crate) fn forbidden(message: &str) -> Result<Response, AppError> {
    let page = MessagePage {
        lang: "en".to_string(),
        heading: "Not allowed".to_string(),
        message: message.to_string(),
        back: "/".to_string(),
    }
    .render()?;
    Ok(no_store(
        (StatusCode::FORBIDDEN, Html(page)).into_response(),
    ))
}

/// Admins only; anybody else is sent to sign in (or told they lack the role).
pub async fn require_admin(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Result<SignedIn, Response>, AppError> {
    require_role(
        app,
        headers,
        &[Role::Admin],
        "This page is for administrators.",
    )
    .await
}

/// `require_admin` for a form post (the session's CSRF token must be the one posted).
async fn require_admin_posting(
    app: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Result<SignedIn, Response>, AppError> {
    require_role_posting(
        app,
        headers,
        &[Role::Admin],
        "This page is for administrators.",
        csrf,
    )
    .await
}

/// `require_role` for a form post: also the session's CSRF token must be the one posted.
pub async fn require_role_posting(
    app: &AppState,
    headers: &HeaderMap,
    allowed: &[Role],
    refusal: &str,
    csrf: &str,
) -> Result<Result<SignedIn, Response>, AppError> {
    let me = match require_role(app, headers, allowed, refusal).await? {
        Ok(me) => me,
        Err(refused) => return Ok(Err(refused)),
    };
    if !crate::auth::tokens_match(&me.csrf, csrf) {
        return Ok(Err(forbidden(
            "This form expired. Reload the page and try again.",
        )?));
    }
    Ok(Ok(me))
}

/// A signed-in user with one of `allowed`; anybody else is sent to sign in, or told `refusal`.
pub async fn require_role(
    app: &AppState,
    headers: &HeaderMap,
    allowed: &[Role],
    refusal: &str,
) -> Result<Result<SignedIn, Response>, AppError> {
    match current_user(app, headers).await? {
        None => Ok(Err(Redirect::to("/signin").into_response())),
        Some((user, _)) if allowed.contains(&user.role) => Ok(Ok(user)),
        Some(_) => Ok(Err(forbidden(refusal)?)),
    }
}

async fn users_page(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    message: &str,
) -> Result<Response, AppError> {
    let rows = auth::list_users(&app.store).await?;
    let now = chrono::Utc::now();
    let all_queues = app.store.queue_names().await?;
    let agent_queues = app.store.all_agent_queues().await?;
    let mut users = Vec::with_capacity(rows.len());
    for (user_id, username, role, created_at) in rows {
        let works = agent_queues.get(&user_id);
        // Given queues, all since dropped from assets.toml: they see no ticket until given one.
        let queues_dropped = role == Role::Agent.as_str() && works.is_some_and(|w| w.is_empty());
        let queues = if role == Role::Agent.as_str() {
            all_queues
                .iter()
                .map(|(id, name)| crate::views::QueueChoice {
                    checked: works.is_some_and(|w| w.contains(id)),
                    id: id.clone(),
                    name: name.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let locked = PER_ACCOUNT
            .locked_for(&app.store, &format!("user:{username}"), now)
            .await?
            .map(|wait| format!("locked for {} min", wait.as_secs().div_ceil(60).max(1)))
            .unwrap_or_default();
        users.push(UserRow {
            username,
            role,
            created_at,
            locked,
            queues,
            queues_dropped,
        });
    }
    let page = AdminUsersPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        message: message.to_string(),
        users,
        changes: app.store.account_changes(50).await?,
        roles: ALL_ROLES
            .iter()
            .filter(|r| r.is_staff())
            .map(|r| r.as_str())
            .collect(),
    }
    .render()?;
    Ok(no_store((status, Html(page)).into_response()))
}

/// Records an administrator's change to a staff account in the audit log (the log level that
/// would keep the `tracing` line is usually off): who may sign in as what, and who gave them a new
/// password, decides who can read patients' data. Shown on /admin/users, never to clinicians.
async fn account_audit(
    app: &AppState,
    admin: &SignedIn,
    action: &str,
    detail: &str,
) -> Result<(), AppError> {
    app.store
        .audit(&admin.username, action, None, detail, None)
        .await?;
    Ok(())
}

pub async fn users(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, AppError> {
    match require_admin(&app, &headers).await? {
        Ok(me) => users_page(&app, &me, StatusCode::OK, "").await,
        Err(response) => Ok(response),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AddUserForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub role: String,
}

pub async fn add_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<AddUserForm>,
) -> Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if !auth::tokens_match(&me.csrf, &form.csrf) {
        return forbidden("This form expired. Reload the page and try again.");
    }
    let username = form.username.trim().to_ascii_lowercase();
    let valid_name = (2..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let role = form.role.parse::<Role>().ok().filter(|r| r.is_staff());
    let problem = if !valid_name {
        Some("Usernames are 2-64 characters: letters, digits, dot, dash, underscore.")
    } else if form.password.chars().count() < 12 || form.password.chars().count() > 256 {
        Some("Passwords are 12 characters or more.")
    } else if role.is_none() {
        Some("Choose one of the listed roles.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return users_page(&app, &me, StatusCode::UNPROCESSABLE_ENTITY, problem).await;
    }
    let role = role.expect("checked above");
    if auth::create_user(&app.store, &username, &form.password, role).await? {
        tracing::info!(admin = %me.username, user = %username, role = role.as_str(), "user created");
        account_audit(
            &app,
            &me,
            "account.created",
            &format!("{username} as {}", role.as_str()),
        )
        .await?;
        users_page(
            &app,
            &me,
            StatusCode::OK,
            &format!("Added {username} ({}).", role.as_str()),
        )
        .await
    } else {
        users_page(
            &app,
            &me,
            StatusCode::CONFLICT,
            &format!("{username} already exists."),
        )
        .await
    }
}

/// Every staff role: they all have a password to change.
fn staff_roles() -> Vec<Role> {
    ALL_ROLES.iter().copied().filter(|r| r.is_staff()).collect()
}

fn password_page(
    me: &SignedIn,
    status: StatusCode,
    message: &str,
    error: &str,
) -> Result<Response, AppError> {
    let page = crate::views::AccountPasswordPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        message: message.to_string(),
        error: error.to_string(),
    }
    .render()?;
    Ok(no_store((status, Html(page)).into_response()))
}

/// `GET /account/password`: the form, for any signed-in staff member.
pub async fn password_form(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    match require_role(
        &app,
        &headers,
        &staff_roles(),
        "Only staff accounts have a password.",
    )
    .await?
    {
        Ok(me) => password_page(&me, StatusCode::OK, "", ""),
        Err(response) => Ok(response),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct PasswordForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub current: String,
    #[serde(default)]
    pub new: String,
    #[serde(default)]
    pub confirm: String,
}

/// `POST /account/password`. A wrong current password counts as a failed sign-in of the account
/// (so the form cannot be used to guess it), and the account's sign-in lock applies here too.
pub async fn change_password(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<PasswordForm>,
) -> Result<Response, AppError> {
    let me = match require_role_posting(
        &app,
        &headers,
        &staff_roles(),
        "Only staff accounts have a password.",
        &form.csrf,
    )
    .await?
    {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let account_key = format!("user:{}", me.username);
    let now = chrono::Utc::now();
    let too_many = |wait: std::time::Duration| -> Result<Response, AppError> {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        Ok(crate::http::with_retry_after(
            password_page(
                &me,
                StatusCode::TOO_MANY_REQUESTS,
                "",
                &format!("Too many wrong passwords. Try again in {minutes} minute(s), or ask an administrator."),
            )?,
            Some(wait),
        ))
    };
    if let Some(wait) = PER_ACCOUNT
        .locked_for(&app.store, &account_key, now)
        .await?
    {
        return too_many(wait);
    }
    let problem = if form.current.is_empty() || form.current.chars().count() > 256 {
        Some("Enter your current password.")
    } else if form.new.chars().count() < 12 || form.new.chars().count() > 256 {
        Some("The new password must be 12 characters or more.")
    } else if form.new != form.confirm {
        Some("The two new passwords differ. Type the same one twice.")
    } else if form.new == form.current {
        Some("The new password is the current one. Choose another.")
    } else {
        None
    };
    if let Some(problem) = problem {
        return password_page(&me, StatusCode::UNPROCESSABLE_ENTITY, "", problem);
    }
    // Counted before the check, as at sign-in.
    if let Some(wait) = PER_ACCOUNT
        .count_attempt(&app.store, &account_key, now)
        .await?
    {
        return too_many(wait);
    }
    let token = http::cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    if auth::change_password(&app.store, &me.username, &form.current, &form.new, token).await? {
        PER_ACCOUNT.record_success(&app.store, &account_key).await?;
        tracing::info!(user = %me.username, "password changed");
        password_page(
            &me,
            StatusCode::OK,
            "Your password was changed. Your other sessions were signed out.",
            "",
        )
    } else {
        password_page(
            &me,
            StatusCode::FORBIDDEN,
            "",
            "Your current password is not right.",
        )
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct UserActionForm {
    #[serde(default)]
    pub csrf: String,
    /// For removal: the word "remove", typed, so a stray click removes nobody.
    #[serde(default)]
    pub confirm: String,
}

/// `POST /admin/users/{username}/unlock`: lifts the lock that failed sign-ins put on an account.
pub async fn unlock_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(username): crate::http::PathSegment,
    crate::http::LenientForm(form): crate::http::LenientForm<UserActionForm>,
) -> Result<Response, AppError> {
    let me = match require_admin_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    PER_ACCOUNT
        .record_success(&app.store, &format!("user:{username}"))
        .await?;
    crate::signin_devices::clear_device_locks(&app.store, &username).await?;
    tracing::info!(admin = %me.username, user = %username, "account unlocked");
    account_audit(&app, &me, "account.unlocked", &username).await?;
    users_page(
        &app,
        &me,
        StatusCode::OK,
        &format!("Unlocked {username}: they can sign in again."),
    )
    .await
}

/// `POST /admin/users/{username}/queues`: the support queues an agent works, as repeated `queue`
/// fields (none: every queue). An unknown queue or a user who is not an agent changes nothing and
/// says why.
pub async fn set_user_queues(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(username): crate::http::PathSegment,
    crate::http::LenientForm(pairs): crate::http::LenientForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let csrf = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let me = match require_admin_posting(&app, &headers, csrf).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let user: Option<(i64, String)> =
        sqlx::query_as("SELECT id, role FROM users WHERE username = ?")
            .bind(&username)
            .fetch_optional(app.store.pool())
            .await
            .map_err(crate::ServerError::from)?;
    let Some((user_id, role)) = user else {
        return users_page(
            &app,
            &me,
            StatusCode::NOT_FOUND,
            &format!("There is no user {username}."),
        )
        .await;
    };
    if role != Role::Agent.as_str() {
        let message = format!(
            "{username} is not an agent: queues are given to agents (administrators see every queue)."
        );
        return users_page(&app, &me, StatusCode::UNPROCESSABLE_ENTITY, &message).await;
    }
    let known: Vec<String> = app
        .store
        .queue_names()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut chosen: Vec<String> = Vec::new();
    for (key, value) in &pairs {
        if key != "queue" {
            continue;
        }
        if !known.contains(value) {
            let message = format!("There is no queue {value:?}; nothing was changed.");
            return users_page(&app, &me, StatusCode::UNPROCESSABLE_ENTITY, &message).await;
        }
        if !chosen.contains(value) {
            chosen.push(value.clone());
        }
    }
    app.store.set_agent_queues(user_id, &chosen).await?;
    tracing::info!(admin = %me.username, user = %username, queues = ?chosen, "agent's queues set");
    let queues = if chosen.is_empty() {
        "every queue".to_string()
    } else {
        chosen.join(", ")
    };
    account_audit(
        &app,
        &me,
        "account.queues_set",
        &format!("{username}: {queues}"),
    )
    .await?;
    // Tickets they held in queues they no longer work go back to nobody.
    let scope = crate::agent_queues::QueueScope::of(chosen.iter().cloned());
    let released = release_held(&app, &me.username, &username, &scope).await?;
    let mut message = if chosen.is_empty() {
        format!("{username} works every queue.")
    } else {
        format!("{username} works {}.", chosen.join(", "))
    };
    if released > 0 {
        message.push_str(&format!(
            " {released} ticket(s) they had in other queues now wait for someone to take them."
        ));
    }
    users_page(&app, &me, StatusCode::OK, &message).await
}

/// Lets go of the tickets `username` holds in queues outside `scope` (every ticket they hold, for
/// `QueueScope::Only` of none), announced to the consoles as a let-go is, or colleagues would see
/// them held by someone who can no longer answer. How many were let go.
pub(crate) async fn release_held(
    app: &AppState,
    by: &str,
    username: &str,
    scope: &crate::agent_queues::QueueScope,
) -> Result<usize, AppError> {
    let mut released = 0;
    for ticket in app.store.held_outside(username, scope).await? {
        if app
            .store
            .assign_ticket(ticket, None, Some(username))
            .await?
        {
            released += 1;
            if let Some(record) = app.store.ticket(ticket).await? {
                crate::support::publish(
                    app,
                    crate::support::SupportEvent::of("ticket.assigned", &record).by(by),
                )
                .await?;
            }
        }
    }
    Ok(released)
}

/// No queue at all: for letting go of every ticket someone holds.
pub(crate) fn no_queue() -> crate::agent_queues::QueueScope {
    crate::agent_queues::QueueScope::Only(Default::default())
}

#[derive(Debug, Deserialize, Default)]
pub struct RoleForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub role: String,
}

/// `POST /admin/users/{username}/role`: another staff role for an account, effective at their
/// next request (sessions read the role afresh). Not one's own (so an administrator is always
/// left); tickets held by someone who no longer works the console go back to nobody.
pub async fn set_user_role(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(username): crate::http::PathSegment,
    crate::http::LenientForm(form): crate::http::LenientForm<RoleForm>,
) -> Result<Response, AppError> {
    let me = match require_admin_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if username == me.username {
        return users_page(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot change your own role; another administrator can.",
        )
        .await;
    }
    let Some(role) = form.role.parse::<Role>().ok().filter(|r| r.is_staff()) else {
        return users_page(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Choose one of the listed roles.",
        )
        .await;
    };
    if !auth::set_role(&app.store, &username, role).await? {
        return users_page(
            &app,
            &me,
            StatusCode::NOT_FOUND,
            &format!("There is no user {username}."),
        )
        .await;
    }
    tracing::info!(admin = %me.username, user = %username, role = role.as_str(), "role changed");
    account_audit(
        &app,
        &me,
        "account.role_changed",
        &format!("{username} to {}", role.as_str()),
    )
    .await?;
    let mut message = format!("{username} is now {}.", role.as_str());
    if !matches!(role, Role::Agent | Role::Admin) {
        let released = release_held(&app, &me.username, &username, &no_queue()).await?;
        if released > 0 {
            message.push_str(&format!(
                " {released} ticket(s) they had now wait for someone to take them."
            ));
        }
    }
    users_page(&app, &me, StatusCode::OK, &message).await
}

/// `POST /admin/users/{username}/password`: a new random password for someone who forgot theirs,
/// shown once to the administrator to hand over; their sessions end and a sign-in lock lifts.
/// Not for one's own account (that is `/account/password`, which asks for the current one).
pub async fn reset_user_password(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(username): crate::http::PathSegment,
    crate::http::LenientForm(form): crate::http::LenientForm<UserActionForm>,
) -> Result<Response, AppError> {
    let me = match require_admin_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if username == me.username {
        return users_page(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Change your own password at /account/password.",
        )
        .await;
    }
    match auth::reset_password(&app.store, &username).await? {
        Some(password) => {
            tracing::info!(admin = %me.username, user = %username, "password reset");
            account_audit(&app, &me, "account.password_reset", &username).await?;
            users_page(
                &app,
                &me,
                StatusCode::OK,
                &format!("New password for {username}: {password} (shown only now). Give it to them in person; their sessions ended. They can change it at /account/password."),
            )
            .await
        }
        None => {
            users_page(
                &app,
                &me,
                StatusCode::NOT_FOUND,
                &format!("There is no user {username}."),
            )
            .await
        }
    }
}

/// `POST /admin/users/{username}/remove`: deletes a staff account and ends its sessions. An admin
/// cannot remove their own account (so there is always one admin left).
pub async fn remove_user(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::PathSegment(username): crate::http::PathSegment,
    crate::http::LenientForm(form): crate::http::LenientForm<UserActionForm>,
) -> Result<Response, AppError> {
    let me = match require_admin_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if username == me.username {
        return users_page(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            "You cannot remove your own account; another administrator can.",
        )
        .await;
    }
    if form.confirm.trim() != "remove" {
        return users_page(
            &app,
            &me,
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("Type remove beside {username} to remove the account."),
        )
        .await;
    }
    if auth::remove_user(&app.store, &username).await? {
        tracing::info!(admin = %me.username, user = %username, "user removed");
        account_audit(&app, &me, "account.removed", &username).await?;
        release_held(&app, &me.username, &username, &no_queue()).await?;
        users_page(
            &app,
            &me,
            StatusCode::OK,
            &format!("Removed {username}; their sessions ended."),
        )
        .await
    } else {
        users_page(
            &app,
            &me,
            StatusCode::NOT_FOUND,
            &format!("There is no user {username}."),
        )
        .await
    }
}
