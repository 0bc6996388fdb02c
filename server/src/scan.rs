//! `GET /c/{code}`: a scan. Resolves the code, works out who is scanning (role, language, device, first or
//! returning), serves the page that fits, and records the scan without waiting for the disk.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::device::{self, DeviceClass};
use crate::events::ScanEvent;
use crate::http;
use crate::i18n;
use crate::language;
use crate::pages::RenderKey;
use crate::registry::is_well_formed_code;
use crate::roles::Role;
use crate::rules::{Action, Facts};
use crate::store::ResolvedCode;
use crate::views::{AssetPage, FallbackPage};
use crate::{AppError, AppState};

/// Remembers which codes this browser has scanned, for "first versus returning" (codes only, no person).
pub const SEEN_COOKIE: &str = "scanaid_seen";
const SEEN_MAX: usize = 32;

#[derive(Debug, Default, Deserialize)]
pub struct ScanQuery {
    pub lang: Option<String>,
}

/// Everything known about the person scanning, at the moment of the scan.
#[derive(Debug, Clone)]
pub struct ScanContext {
    pub role: Role,
    pub signed_in: bool,
    pub language_query: Option<String>,
    pub accept_language: Option<String>,
    pub device: DeviceClass,
    pub returning: bool,
}

pub async fn scan(
    State(app): State<AppState>,
    crate::http::PathSegment(code): crate::http::PathSegment,
    query: Result<Query<ScanQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, AppError> {
    // A query string the scan cannot read (`?lang=a&lang=b`) is ignored: the label still opens.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let started = Instant::now();
    let headers = request.headers();
    let user_agent = http::user_agent(headers);
    // HEAD requests and link previews get the page but are not scans.
    let counted = request.method() != Method::HEAD && !device::is_bot(user_agent);
    let seen = http::cookie(headers, SEEN_COOKIE).unwrap_or("");
    let signed_in = crate::account::current_user(&app, headers)
        .await?
        .map(|(user, _)| user);
    let context = ScanContext {
        role: signed_in.as_ref().map_or(Role::Anonymous, |s| s.role),
        signed_in: signed_in.is_some(),
        language_query: query.lang.filter(|l| l.len() <= 16),
        accept_language: http::header(headers, header::ACCEPT_LANGUAGE).map(str::to_string),
        device: DeviceClass::from_user_agent(user_agent),
        returning: seen.split('.').any(|c| c == code),
    };
    let peer = http::peer(&request);

    let resolved = if is_well_formed_code(&code) {
        app.store.resolve_code(&code).await?
    } else {
        None
    };
    let resolved_kind = resolved.as_ref().map(|r| r.code.kind.clone());
    let (mut response, event) = match resolved {
        Some(resolved) if resolved.code.retired_at.is_none() && resolved.asset.is_some() => {
            serve_asset(&app, &resolved, &context)?
        }
        Some(resolved)
            if resolved.code.retired_at.is_none() && resolved.code.kind == "discharge" =>
        {
            let mut event = base_event(
                DISCHARGE_EVENT_CODE,
                &context,
                crate::language::DEFAULT_LANGUAGE.into(),
            );
            event.placement = Some(resolved.code.placement.clone());
            match crate::patient_pages::scan_packet(&app, &code, request.headers(), event).await? {
                Some(served) => served,
                None => fallback(&app, &code, Some(&resolved), &context).await?,
            }
        }
        other => fallback(&app, &code, other.as_deref(), &context).await?,
    };

    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A discharge code is not remembered in the browser: on a shared phone it would point the next
    // person at a patient's packet. That holds for a packet's retired or deleted code too.
    let is_packet = event.rule == "discharge" || resolved_kind.as_deref() == Some("discharge");
    // A new page view: the page's no-script chat forms are told apart by it (see
    // `chat::first_message_request`), so a form sent again from this view is the same message and
    // one sent from another view (the next person on a shared tablet) is not.
    if !is_packet {
        let cookie = http::set_cookie(
            VIEW_COOKIE,
            &crate::auth::random_token(16),
            "/chat",
            Some(VIEW_KEPT_S),
            app.config.secure_cookies,
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if !context.returning && !is_packet && is_well_formed_code(&code) {
        let mut codes: Vec<&str> = seen.split('.').filter(|c| is_well_formed_code(c)).collect();
        codes.push(&code);
        let keep = &codes[codes.len().saturating_sub(SEEN_MAX)..];
        let cookie = http::set_cookie(
            SEEN_COOKIE,
            &keep.join("."),
            "/c",
            Some(365 * 24 * 3600),
            app.config.secure_cookies,
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    if counted {
        let mut event = event;
        event.latency_us = started.elapsed().as_micros() as u64;
        event.ip_prefix = peer.map(http::ip_prefix);
        app.metrics.scan(&event);
        app.events.record(event);
    }
    Ok(response)
}

/// The page view a machine's page was drawn for (random, sent only to `/chat`): see
/// `chat::first_message_request`.
pub const VIEW_COOKIE: &str = "scanaid_view";
/// How long a page view's forms count as sent from it: going back to an answer and sending its
/// form again happens within minutes.
const VIEW_KEPT_S: u64 = 30 * 60;

/// What a scan event records as the code of a discharge packet's label. A packet's code is its
/// patient's: scan analytics keep that a discharge code was scanned, never which one, so the events
/// cannot be joined to a patient (and nothing is left of them after a packet is deleted).
const DISCHARGE_EVENT_CODE: &str = "discharge";
/// What a scan event records as the code of a scan that named no known code.
const UNKNOWN_EVENT_CODE: &str = "unknown";

fn base_event(code: &str, context: &ScanContext, language: Cow<'static, str>) -> ScanEvent {
    ScanEvent {
        at: chrono::Utc::now(),
        code: code.chars().take(32).collect(),
        asset_id: None,
        site_id: None,
        placement: None,
        device: context.device,
        language,
        role: context.role.as_str(),
        returning: context.returning,
        rule: Cow::Borrowed(""),
        destination: Cow::Borrowed(""),
        fallback: false,
        latency_us: 0,
        ip_prefix: None,
    }
}

/// A served page as an event records it: `page:` and the variant's role, as static text.
fn page_destination(variant: Role) -> &'static str {
    match variant {
        Role::Anonymous => "page:anonymous",
        Role::Operator => "page:operator",
        Role::Technician => "page:technician",
        Role::Biomed => "page:biomed",
        Role::Clinician => "page:clinician",
        Role::Patient => "page:patient",
        Role::Agent => "page:agent",
        Role::Editor => "page:editor",
        Role::Admin => "page:admin",
    }
}

/// The languages a page offers to switch to: its manuals' and the interface's, each once.
fn switcher_languages(manuals: &[String]) -> Vec<String> {
    let mut languages: Vec<String> = manuals.to_vec();
    for l in i18n::UI_LANGUAGES {
        if !languages.iter().any(|m| m == l) {
            languages.push(l.to_string());
        }
    }
    languages.sort();
    languages
}

/// A negotiated language as an event keeps it: the interface's languages are static text; any other
/// language a manual offers is copied.
fn language_text(lang: &str) -> Cow<'static, str> {
    match i18n::UI_LANGUAGES.iter().find(|l| **l == lang) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(lang.to_string()),
    }
}

/// The facts rules decide on, for a resolved code and the person scanning (borrowed from both).
pub fn facts<'a>(
    resolved: &'a ResolvedCode,
    context: &ScanContext,
    language: &'a str,
    at: chrono::DateTime<chrono::Utc>,
) -> Facts<'a> {
    let asset = resolved.asset.as_ref();
    let site = resolved.site.as_ref();
    Facts {
        code: &resolved.code.code,
        asset: asset.map_or("", |a| a.id.as_str()),
        site: site.map_or("", |s| s.id.as_str()),
        placement: &resolved.code.placement,
        role: context.role.as_str(),
        language,
        device: context.device.as_str(),
        returning: context.returning,
        at,
        // Validated when the registry was loaded; UTC only if a site was edited into something odd.
        timezone: site
            .and_then(|s| s.timezone.parse().ok())
            .unwrap_or(chrono_tz::UTC),
        queue: resolved.queue.as_ref().map(|q| crate::rules::QueueHours {
            name: &q.name,
            hours: &q.hours,
            windows: resolved.queue_windows.as_deref(),
            timezone: resolved
                .queue_timezone
                .as_deref()
                .and_then(|tz| tz.parse().ok())
                .unwrap_or(chrono_tz::UTC),
        }),
    }
}

fn serve_asset(
    app: &AppState,
    resolved: &Arc<ResolvedCode>,
    context: &ScanContext,
) -> Result<(Response, ScanEvent), AppError> {
    let asset = resolved.asset.as_ref().expect("checked by the caller");
    let index = app.index();
    let manual_ids = &crate::pages::asset_manuals(&resolved.manual_ids, &asset.model, &index);
    // What the asset's manuals offer an anonymous reader tells which languages exist; the role's
    // own page is taken below, once the language and the rule's variant are known.
    let public = app.pages.content(
        &index,
        manual_ids,
        Role::Anonymous,
        Role::Anonymous,
        language::DEFAULT_LANGUAGE,
    );
    let lang = language::negotiate_among(
        context.language_query.as_deref(),
        context.accept_language.as_deref(),
        // The manuals' languages, and every language the page itself speaks: a Spanish reader of a
        // machine whose manuals are English gets the page, the chat and its help in Spanish.
        |l| {
            l == language::DEFAULT_LANGUAGE
                || public.languages.iter().any(|a| a == l)
                || i18n::UI_LANGUAGES.contains(&l)
        },
    );
    let rules = app.rules();
    let chosen = rules.choose(&facts(resolved, context, &lang, app.now()));
    let mut event = base_event(&resolved.code.code, context, language_text(&lang));
    event.asset_id = Some(asset.id.clone());
    event.site_id = Some(asset.site_id.clone());
    event.placement = Some(resolved.code.placement.clone());
    event.rule = chosen.map_or(Cow::Borrowed("default"), |r| Cow::Owned(r.id.clone()));
    let (variant, on_call_first) = match chosen.map(|r| &r.then) {
        Some(Action::Redirect(url)) | Some(Action::DeepLink(url)) => {
            event.destination = Cow::Owned(format!("redirect:{url}"));
            // 302: temporary, so the label keeps pointing at us and rules can change.
            let response = match HeaderValue::from_str(url) {
                Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
                Err(_) => {
                    return Err(AppError(crate::ServerError::Registry {
                        path: "rules".into(),
                        reason: format!(
                            "rule {:?} has a redirect that is not a valid header",
                            event.rule
                        ),
                    }))
                }
            };
            return Ok((response, event));
        }
        Some(Action::Page(page)) if page == "on-call" => (context.role, true),
        Some(Action::Page(page)) => (page.parse::<Role>().unwrap_or(context.role), false),
        None => (context.role, false),
    };
    event.destination = Cow::Borrowed(if on_call_first {
        "page:on-call"
    } else {
        page_destination(variant)
    });
    let key = RenderKey {
        code: resolved.code.code.clone(),
        role: context.role,
        variant,
        language: lang.clone(),
        signed_in: context.signed_in,
        on_call_first,
    };
    if let Some(body) = app.rendered.get(&index.generation, resolved, &key) {
        return Ok((Html(body).into_response(), event));
    }
    let content = app
        .pages
        .content(&index, manual_ids, context.role, variant, &lang);
    let ui_lang = i18n::interface_language(&lang);
    let site = resolved.site.as_ref();
    let queue = resolved.queue.as_ref();
    let page = AssetPage {
        t: i18n::strings(&ui_lang),
        code: &resolved.code.code,
        lang: lang.clone(),
        role: i18n::strings(&ui_lang).role_name(context.role),
        signed_in: context.signed_in,
        asset,
        site_name: site.map(|s| s.name.clone()).unwrap_or_default(),
        // The queue's hours are in its own site's zone (as its tickets say), not the machine's.
        timezone: resolved
            .queue_timezone
            .clone()
            .or_else(|| site.map(|s| s.timezone.clone()))
            .unwrap_or_default(),
        contact: site.map(|s| s.contact.clone()).unwrap_or_default(),
        on_call: site.map(|s| s.on_call.clone()).unwrap_or_default(),
        queue_name: queue.map(|q| q.name.clone()).unwrap_or_default(),
        queue_hours: queue
            .map(|q| crate::chat::in_weekdays_of(&q.hours, i18n::strings(&ui_lang)))
            .unwrap_or_default(),
        on_call_first,
        languages: &switcher_languages(&content.languages),
        highlights: &content.highlights,
        contents: &content.contents,
    }
    .render()?;
    let body = axum::body::Bytes::from(page);
    app.rendered
        .put(&index.generation, resolved.clone(), key, body.clone());
    Ok((Html(body).into_response(), event))
}

/// Unknown, malformed or retired codes: a page with the site's contact (or every site's, when the code
/// says nothing) and a search box. Never a bare 404.
async fn fallback(
    app: &AppState,
    code: &str,
    resolved: Option<&ResolvedCode>,
    context: &ScanContext,
) -> Result<(Response, ScanEvent), AppError> {
    let available: Vec<String> = i18n::UI_LANGUAGES.iter().map(|s| s.to_string()).collect();
    let lang = language::negotiate(
        context.language_query.as_deref(),
        context.accept_language.as_deref(),
        &available,
    );
    let retired = resolved.is_some_and(|r| r.code.retired_at.is_some());
    // A deleted discharge packet: the patient is told to call the number on their papers, not shown
    // the equipment sites' contacts.
    let patient = resolved.is_some_and(|r| r.code.kind == "discharge");
    let listed = app.store.listed_sites().await?;
    let sites = match resolved.and_then(|r| r.site.clone()) {
        _ if patient => Vec::new(),
        // Its own site's contact, unless assets.toml no longer lists that site (its numbers may be
        // stale): then every listed site's.
        Some(site) if listed.iter().any(|s| s.id == site.id) => vec![site],
        _ => listed,
    };
    let t = i18n::strings(&lang);
    let page = FallbackPage {
        t,
        lang: lang.clone(),
        heading: t.fallback_title.to_string(),
        intro: if patient {
            t.fallback_packet_gone
        } else if retired {
            t.fallback_retired
        } else {
            t.fallback_unknown
        }
        .to_string(),
        sites,
        patient,
    }
    .render()?;
    let status = if retired {
        StatusCode::GONE
    } else {
        StatusCode::NOT_FOUND
    };
    // A code that resolves to nothing is not kept: it may be a patient's packet code with a
    // character mistyped, or one not yet in this server's table, and scan analytics must not hold it.
    let logged_code = if patient {
        DISCHARGE_EVENT_CODE
    } else if resolved.is_none() {
        UNKNOWN_EVENT_CODE
    } else {
        code
    };
    let mut event = base_event(logged_code, context, language_text(&lang));
    if let Some(r) = resolved {
        event.asset_id = r.code.asset_id.clone();
        event.site_id = r.site.as_ref().map(|s| s.id.clone());
        event.placement = Some(r.code.placement.clone());
    }
    event.rule = Cow::Borrowed("fallback");
    event.destination = Cow::Borrowed(if retired {
        "fallback:retired"
    } else {
        "fallback:unknown"
    });
    event.fallback = true;
    Ok(((status, Html(page)).into_response(), event))
}
