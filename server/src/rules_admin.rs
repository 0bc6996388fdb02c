//! Routing rules for admins: `/admin/rules` shows the rules in force, checks and saves an edit (kept
//! in the store with who saved it, swapped in without a restart), and explains which rule fires for a
//! scan and why each earlier one did not. `scanaid rules explain` prints the same explanation.

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::TimeZone;
use serde::Deserialize;

use crate::account::require_admin;
use crate::auth::{self, SignedIn};
use crate::device::DeviceClass;
use crate::roles::{Role, ALL_ROLES};
use crate::rules::{KnownScopes, RuleSet};
use crate::scan::{facts, ScanContext};
use crate::store::ResolvedCode;
use crate::views::AdminRulesPage;
use crate::{AppError, AppState};

/// Largest rule file accepted from the editor. The form's limit is far larger (URL-encoding grows a
/// rule file by about a third), so a text over this one is shown back with the reason, not lost.
const MAX_RULES_BYTES: usize = 48 * 1024;

/// A scan to explain: who, in which language, on what, when.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExplainQuery {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub lang: String,
    /// RFC 3339, or `YYYY-MM-DD HH:MM` in the site's time zone; empty for now.
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub returning: Option<String>,
    /// A saved version to load into the editor (the history's ids).
    #[serde(default)]
    pub version: String,
}

/// Which rule fires for a scan of `code` and why each earlier rule did not, as lines to show.
/// `Err` is a message for the person asking (an unknown code, a time that does not parse).
pub fn explain(
    rules: &RuleSet,
    code: &str,
    resolved: Option<&ResolvedCode>,
    query: &ExplainQuery,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, String> {
    let Some(resolved) = resolved else {
        return Err(format!(
            "unknown code {code:?}: a scan of it gets the fallback page"
        ));
    };
    if resolved.code.retired_at.is_some() {
        return Ok(vec![format!(
            "code {code} is retired: a scan of it gets the fallback page of its site"
        )]);
    }
    let role = match query.role.trim() {
        "" => Role::Anonymous,
        text => text
            .parse::<Role>()
            .map_err(|_| format!("unknown role {text:?}"))?,
    };
    let device = match query.device.trim() {
        "" => DeviceClass::Ios,
        text => text
            .parse::<DeviceClass>()
            .map_err(|_| format!("unknown device {text:?}: use ios, android or desktop"))?,
    };
    let lang = match query.lang.trim() {
        "" => "en".to_string(),
        text => text.to_ascii_lowercase(),
    };
    let timezone: chrono_tz::Tz = resolved
        .site
        .as_ref()
        .and_then(|s| s.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let at = match query.at.trim() {
        "" => now,
        text => parse_time(text, timezone)?,
    };
    let context = ScanContext {
        role,
        signed_in: role.is_staff(),
        language_query: Some(lang.clone()),
        accept_language: None,
        device,
        returning: query.returning.is_some(),
    };
    let facts = facts(resolved, &context, &lang, at);
    let mut lines = vec![format!(
        "scan of {} ({}, {}, placement {}) by {} in {} on {} at {} ({}){}",
        code,
        facts.asset,
        facts.site,
        facts.placement,
        facts.role,
        facts.language,
        facts.device,
        at.with_timezone(&timezone).format("%a %Y-%m-%d %H:%M"),
        timezone,
        if context.returning { ", returning" } else { "" }
    )];
    let decision = rules.decide(&facts);
    lines.extend(decision.trace.iter().map(|l| format!("  {l}")));
    lines.push(match (&decision.rule, &decision.action) {
        (Some(rule), Some(action)) => format!("=> rule {rule}: {action}"),
        _ => format!("=> default: the {} page", facts.role),
    });
    Ok(lines)
}

/// RFC 3339, or a local `YYYY-MM-DD HH:MM` at the site.
pub fn parse_time(
    text: &str,
    timezone: chrono_tz::Tz,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .map_err(|_| format!("time {text:?}: use RFC 3339 or \"YYYY-MM-DD HH:MM\" (site time)"))?;
    timezone
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok_or_else(|| format!("time {text:?} does not exist in {timezone} (a clock change)"))
}

pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<ExplainQuery>,
) -> Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    let rules = app.rules();
    let mut message = String::new();
    let mut error = String::new();
    let mut explanation = Vec::new();
    let code = query.code.trim().to_string();
    if !code.is_empty() {
        let resolved = if crate::registry::is_well_formed_code(&code) {
            app.store.resolve_code(&code).await?
        } else {
            None
        };
        match explain(&rules, &code, resolved.as_deref(), &query, app.now()) {
            Ok(lines) => explanation = lines,
            Err(problem) => error = problem,
        }
    } else {
        message = "Enter a code to see which rule fires for a scan of it.".to_string();
    }
    let mut editor = rules.source.clone();
    if !query.version.trim().is_empty() {
        let version = query.version.trim().parse::<i64>().ok();
        match version {
            Some(id) => match app.store.rule_version(id).await? {
                Some(text) => {
                    editor = text;
                    message = format!(
                        "Version {id} is in the editor. It is not in force until you save it."
                    );
                }
                None => error = format!("There is no saved version {id}."),
            },
            None => error = format!("{:?} is not a version number.", query.version.trim()),
        }
    }
    let status = if error.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render(
        &app,
        &me,
        status,
        &editor,
        message,
        error,
        query,
        explanation,
    )
    .await
}

#[derive(Debug, Deserialize, Default)]
pub struct SaveForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub toml: String,
    /// `check` (analyse the text, save nothing) or `save` (the default).
    #[serde(default)]
    pub action: String,
    /// The saved rule set the page was drawn with; absent: not checked.
    #[serde(default)]
    pub base: Option<String>,
}

/// What `render` shows besides the page's fixed parts.
struct Shown<'a> {
    /// The rule set the warnings are about: the text checked, or (`None`) the rules in force.
    draft: Option<&'a RuleSet>,
    /// The editor's base; `None`: the rule set saved last.
    base: Option<i64>,
}

pub async fn save(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<SaveForm>,
) -> Result<Response, AppError> {
    let me = match require_admin(&app, &headers).await? {
        Ok(me) => me,
        Err(response) => return Ok(response),
    };
    if !auth::tokens_match(&me.csrf, &form.csrf) {
        return crate::account::forbidden("This form expired. Reload the page and try again.");
    }
    // Browsers send CRLF from a textarea; the stored text keeps the file's line endings.
    let text = form.toml.replace("\r\n", "\n");
    let parsed = if text.len() > MAX_RULES_BYTES {
        Err(format!(
            "the rules are {} KB; the limit is {} KB",
            text.len() / 1024,
            MAX_RULES_BYTES / 1024
        ))
    } else {
        RuleSet::parse(&text)
    };
    match parsed {
        Err(problem) => {
            // Nothing changes, and the edit is shown back so no work is lost, on the base it was
            // made on: mended and saved, it is still refused if someone saved meanwhile.
            render_with(
                &app,
                &me,
                StatusCode::UNPROCESSABLE_ENTITY,
                &text,
                String::new(),
                format!("Not saved: {problem}"),
                ExplainQuery::default(),
                Vec::new(),
                Shown {
                    draft: None,
                    base: base_of(&form),
                },
            )
            .await
        }
        Ok(rules) if form.action == "check" => {
            let n = rules.rules.len();
            render_with(
                &app,
                &me,
                StatusCode::OK,
                &text,
                format!("{n} rule(s) read without errors. Not saved: scans still use the rules in force."),
                String::new(),
                ExplainQuery::default(),
                Vec::new(),
                Shown {
                    draft: Some(&rules),
                    base: base_of(&form),
                },
            )
            .await
        }
        Ok(rules) => {
            if !app
                .store
                .save_rules(&text, &me.username, base_of(&form))
                .await?
            {
                let by = match app.store.saved_rules().await? {
                    Some((_, at, by)) => format!(" (by {by} at {at})"),
                    None => String::new(),
                };
                // Kept on its old base: saved again as it is, it is refused again, so nobody's
                // change is undone unseen.
                return render_with(
                    &app,
                    &me,
                    StatusCode::CONFLICT,
                    &text,
                    String::new(),
                    format!("Not saved: the rules were saved again after you opened them{by}, and saving this would undo that. Your text is kept below: open this page in another tab, bring your change into the rules in force, and save that."),
                    ExplainQuery::default(),
                    Vec::new(),
                    Shown {
                        draft: Some(&rules),
                        base: base_of(&form),
                    },
                )
                .await;
            }
            let n = rules.rules.len();
            *app.rules.write().expect("rules lock") = std::sync::Arc::new(rules);
            tracing::info!(admin = %me.username, n_rules = n, "routing rules saved");
            render(
                &app,
                &me,
                StatusCode::OK,
                &text,
                format!("Saved {n} rule(s); scans use them from now on."),
                String::new(),
                ExplainQuery::default(),
                Vec::new(),
            )
            .await
        }
    }
}

/// The form's `base`, when it sent a number.
fn base_of(form: &SaveForm) -> Option<i64> {
    form.base.as_deref().and_then(|b| b.trim().parse().ok())
}

#[allow(clippy::too_many_arguments)]
async fn render(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    toml: &str,
    message: String,
    error: String,
    query: ExplainQuery,
    explanation: Vec<String>,
) -> Result<Response, AppError> {
    let shown = Shown {
        draft: None,
        base: None,
    };
    render_with(
        app,
        me,
        status,
        toml,
        message,
        error,
        query,
        explanation,
        shown,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn render_with(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    toml: &str,
    message: String,
    error: String,
    query: ExplainQuery,
    explanation: Vec<String>,
    shown: Shown<'_>,
) -> Result<Response, AppError> {
    let saved = match app.store.saved_rules().await? {
        Some((_, at, by)) => format!("Last saved {at} by {by}."),
        // The file could not be read at start (see the admin home): nothing was saved here either,
        // so no rule is in force and every scan gets its role's page.
        None if app
            .config
            .start_problems
            .iter()
            .any(|p| p.starts_with("rules.toml")) =>
        {
            "In force: no rules (manuals/rules.toml could not be read at start and none were saved here), so every scan gets its role's page.".to_string()
        }
        None => "In force: the corpus file manuals/rules.toml (never edited here).".to_string(),
    };
    let page = AdminRulesPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        message,
        error,
        toml: toml.to_string(),
        saved,
        warnings: {
            let in_force = app.rules();
            let rules = shown.draft.unwrap_or(&in_force);
            let mut warnings = rules.analyse();
            warnings.extend(rules.unknown_scopes(&KnownScopes::of(&app.store).await?));
            warnings
        },
        base: match shown.base {
            Some(base) => base,
            None => app.store.rules_version().await?,
        },
        checked_draft: shown.draft.is_some(),
        history: app.store.rule_history(20).await?,
        query,
        explanation,
        roles: ALL_ROLES.iter().map(|r| r.as_str()).collect(),
    }
    .render()?;
    Ok((status, [(header::CACHE_CONTROL, "no-store")], Html(page)).into_response())
}
