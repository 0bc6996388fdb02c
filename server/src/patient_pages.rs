//! The patient's side of a discharge packet: scanning the packet's code asks for the second factor
//! (date of birth and PIN), then shows the patient's own instructions in their language. And the
//! clinicians' side: the packet list with lock status and reset, and the audit log.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::account::{no_store, require_role};
use crate::auth::{self, SIGNIN_CSRF_COOKIE};
use crate::events::ScanEvent;
use crate::http;
use crate::i18n::{self, Strings};
use crate::patients::{Attempt, PacketRecord, MAX_FAILURES, PATIENT_COOKIE};
use crate::roles::Role;
use crate::signin_limits::PER_CLIENT_PACKETS;
use crate::{AppError, AppState};

#[derive(Template)]
#[template(path = "patient_verify.html")]
pub struct VerifyPage {
    pub t: &'static Strings,
    pub lang: String,
    pub code: String,
    pub csrf: String,
    pub error: String,
    pub locked: bool,
    /// Whom to call about a lost PIN or a locked packet (empty: the packet names nobody).
    pub help_line: String,
}

pub struct DocumentView {
    /// The element id its citations point at (`#packet-...`, the document's id in the index).
    pub id: String,
    /// Shown above the document unless the document opens with that title itself.
    pub title: Option<String>,
    pub html: String,
}

#[derive(Template)]
#[template(path = "patient.html")]
pub struct PatientPage {
    pub t: &'static Strings,
    pub lang: String,
    pub name: String,
    pub csrf: String,
    pub documents: Vec<DocumentView>,
    /// The question just asked on the page, its answer, or why it could not be answered.
    pub question: String,
    pub answer: Option<crate::patient_chat::PatientAnswer>,
    pub error: String,
    /// Until when the packet opens (the retention limit), in its language.
    pub kept_until_line: String,
    /// Whom to call with questions (empty: the packet names nobody).
    pub call_line: String,
}

/// The packet a request's patient cookie opens, if the session is live.
async fn session_packet(app: &AppState, headers: &HeaderMap) -> Result<Option<String>, AppError> {
    match http::cookie(headers, PATIENT_COOKIE) {
        Some(token) => Ok(app.store.patient_session(token).await?),
        None => Ok(None),
    }
}

/// Whether a packet is past its retention limit (its last day has ended in every time zone): from
/// then on it opens for nobody, also before the hourly purge has deleted it (or when a purge failed).
pub(crate) fn past_its_limit(app: &AppState, packet: &crate::patients::PacketRecord) -> bool {
    packet.retention_start()
        < crate::retention::packets_past_limit_before(app.config.retention, app.now()).as_str()
}

/// Why a packet has no form now: locked after too many wrong tries, for `wait` more (`None`: until
/// a clinician lifts it).
fn locked_message(t: &i18n::Strings, wait: Option<std::time::Duration>) -> String {
    let max = MAX_FAILURES.to_string();
    match wait {
        Some(wait) => {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let wait = if minutes < 90 {
                format!("{minutes} min")
            } else {
                format!("{} h", minutes.div_ceil(60))
            };
            t.patient_locked
                .replace("{max}", &max)
                .replace("{wait}", &wait)
        }
        None => t.patient_locked_until_unlocked.replace("{max}", &max),
    }
}

/// A scan of a packet's code: the instructions for the patient whose session opened this packet,
/// otherwise the second-factor form. Nobody else's session helps: a session opens one packet.
pub async fn scan_packet(
    app: &AppState,
    code: &str,
    headers: &HeaderMap,
    mut event: ScanEvent,
) -> Result<Option<(Response, ScanEvent)>, AppError> {
    // `None` when the packet was deleted a moment ago and the code cache has not caught up.
    let Some(packet) = app
        .store
        .packet_by_code(code)
        .await?
        .filter(|p| !past_its_limit(app, p))
    else {
        return Ok(None);
    };
    event.rule = "discharge".into();
    event.role = crate::roles::Role::Patient.as_str();
    event.language = packet.language.clone().into();
    if session_packet(app, headers).await?.as_deref() == Some(packet.id.as_str()) {
        event.destination = "discharge:instructions".into();
        let token = http::cookie(headers, PATIENT_COOKIE).unwrap_or_default();
        return Ok(Some((
            instructions(app, &packet, token, Asked::default()).await?,
            event,
        )));
    }
    event.destination = "discharge:verify".into();
    // A locked packet scanned again says why there is no form, for how long, and whom to call.
    let lock = packet.lock_at(chrono::Utc::now());
    let locked = lock.is_some();
    let message = match lock {
        Some(wait) => locked_message(i18n::strings(&packet.language), wait),
        None => String::new(),
    };
    Ok(Some((
        verify_form(app, &packet, StatusCode::OK, &message, locked)?,
        event,
    )))
}

/// A question asked on the page and what came of it.
#[derive(Default)]
pub struct Asked {
    pub question: String,
    pub answer: Option<crate::patient_chat::PatientAnswer>,
    pub error: String,
}

async fn instructions(
    app: &AppState,
    packet: &PacketRecord,
    token: &str,
    asked: Asked,
) -> Result<Response, AppError> {
    // Every time the papers are shown (a scan, the page's question form), not only when they were
    // opened: on a shared phone the session outlives the patient's reading, and the audit log is
    // where that shows.
    app.store
        .audit("patient", "access.viewed", Some(&packet.id), "", None)
        .await?;
    let documents = app
        .store
        .packet_documents(&packet.id)
        .await?
        .into_iter()
        .map(|d| DocumentView {
            id: crate::patient_chat::document_id(&packet.id, d.id),
            title: (!crate::pages::opens_with_title(&d.markdown, &d.title)).then_some(d.title),
            html: crate::pages::markdown_to_html(&d.markdown),
        })
        .collect();
    let t = i18n::strings(&packet.language);
    let page = PatientPage {
        t,
        kept_until_line: t
            .pin_slip_until
            .replace("{date}", &kept_until(packet.retention_start(), app)),
        call_line: t.with_contact(t.patient_call, &packet.contact),
        lang: packet.language.clone(),
        name: packet.display_name.clone(),
        csrf: auth::csrf_for_session(token),
        documents,
        question: asked.question,
        answer: asked.answer,
        error: asked.error,
    }
    .render()?;
    Ok(no_store(Html(page).into_response()))
}

/// The second-factor form, with a fresh double-submit CSRF token (there is no session yet).
fn verify_form(
    app: &AppState,
    packet: &PacketRecord,
    status: StatusCode,
    error: &str,
    locked: bool,
) -> Result<Response, AppError> {
    let csrf = auth::random_token(16);
    let t = i18n::strings(&packet.language);
    let page = VerifyPage {
        t,
        help_line: t.with_contact(t.pin_help, &packet.contact),
        lang: packet.language.clone(),
        code: packet.code.clone(),
        csrf: csrf.clone(),
        error: error.to_string(),
        locked,
    }
    .render()?;
    let mut response = no_store((status, Html(page)).into_response());
    let cookie = http::set_cookie(
        SIGNIN_CSRF_COOKIE,
        &csrf,
        "/c",
        Some(3600),
        app.config.secure_cookies,
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub dob: String,
    #[serde(default)]
    pub pin: String,
}

/// `POST /c/{code}`: the patient's date of birth and PIN.
pub async fn verify(
    State(app): State<AppState>,
    crate::http::PathSegment(code): crate::http::PathSegment,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    form: Result<Form<VerifyForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, AppError> {
    let packet = if crate::registry::is_well_formed_code(&code) {
        app.store.packet_by_code(&code).await?
    } else {
        None
    };
    let Some(packet) = packet.filter(|p| !past_its_limit(&app, p)) else {
        return Ok(crate::site::not_found(headers).await);
    };
    let t = i18n::strings(&packet.language);
    let Ok(Form(form)) = form else {
        return verify_form(
            &app,
            &packet,
            StatusCode::UNPROCESSABLE_ENTITY,
            t.patient_fill_both,
            false,
        );
    };
    let expected = http::cookie(&headers, SIGNIN_CSRF_COOKIE).unwrap_or("");
    if !auth::tokens_match(expected, &form.csrf) {
        return verify_form(&app, &packet, StatusCode::FORBIDDEN, t.form_expired, false);
    }
    if crate::patients::dob_is_ambiguous(&form.dob) {
        // Not a guess either: the date reads two ways.
        return verify_form(
            &app,
            &packet,
            StatusCode::UNPROCESSABLE_ENTITY,
            t.patient_dob_ambiguous,
            false,
        );
    }
    let (Some(dob), Some(pin)) = (
        crate::patients::normalise_dob(&form.dob),
        crate::patients::normalise_pin(&form.pin),
    ) else {
        // Not a guess at all (a typo in the format): not counted.
        return verify_form(
            &app,
            &packet,
            StatusCode::UNPROCESSABLE_ENTITY,
            t.patient_fill_both,
            false,
        );
    };
    let client = crate::chat::client_of(&extensions);
    let client_key = client.as_deref().unwrap_or("unknown");
    let now = chrono::Utc::now();
    // A locked packet is refused below without a check, and without counting against the address.
    // Otherwise the try counts before its check (once per packet; a right PIN takes it back).
    let locked = match packet.lock_at(now) {
        Some(_) => None,
        None => match PER_CLIENT_PACKETS
            .locked_for(&app.store, client_key, now)
            .await?
        {
            Some(wait) => Some(wait),
            None => {
                crate::signin_limits::count_packet_attempt(&app.store, client_key, &packet.id, now)
                    .await?
            }
        },
    };
    if let Some(wait) = locked {
        app.store
            .audit(
                "anonymous",
                "access.refused_client_limit",
                Some(&packet.id),
                "",
                client.as_deref(),
            )
            .await?;
        return Ok(crate::http::with_retry_after(
            verify_form(
                &app,
                &packet,
                StatusCode::TOO_MANY_REQUESTS,
                t.patient_client_limit,
                false,
            )?,
            Some(wait),
        ));
    }
    match app
        .store
        .try_packet(&packet, &dob, &pin, client.as_deref())
        .await?
    {
        Attempt::Opened(token) => {
            crate::signin_limits::packet_opened(&app.store, client_key, &packet.id).await?;
            let mut response = Redirect::to(&format!("/c/{code}")).into_response();
            let cookie =
                http::set_cookie(PATIENT_COOKIE, &token, "/", None, app.config.secure_cookies);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(no_store(response))
        }
        Attempt::Wrong { left } => {
            let message = t.patient_wrong.replace("{left}", &left.to_string());
            verify_form(&app, &packet, StatusCode::UNAUTHORIZED, &message, false)
        }
        Attempt::Locked { wait } => {
            let message = locked_message(t, wait);
            Ok(crate::http::with_retry_after(
                verify_form(&app, &packet, StatusCode::LOCKED, &message, true)?,
                wait,
            ))
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AskForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub message: String,
}

/// `POST /patient/ask`: the page's question box, without JavaScript; the page comes back with the
/// answer above the instructions.
pub async fn ask_form(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    crate::http::LenientForm(form): crate::http::LenientForm<AskForm>,
) -> Result<Response, AppError> {
    let (Some(token), Some(packet)) = (
        http::cookie(&headers, PATIENT_COOKIE),
        crate::patient_chat::session_packet(&app, &headers).await?,
    ) else {
        // The session ended (idle too long, or signed out elsewhere): say so, not the home page.
        let lang = crate::site::ui_language(None, &headers);
        let t = i18n::strings(&lang);
        return patient_message(
            StatusCode::UNAUTHORIZED,
            &lang,
            t.patient_signed_out_title,
            t.patient_session_ended,
        );
    };
    if !auth::tokens_match(&auth::csrf_for_session(token), &form.csrf) {
        return crate::account::forbidden("This form expired. Reload the page and try again.");
    }
    let client = crate::chat::client_of(&extensions);
    let asked =
        match crate::patient_chat::answer_patient(&app, &packet, &form.message, client.as_deref())
            .await?
        {
            Ok(answer) => Asked {
                question: form.message.trim().to_string(),
                answer: Some(answer),
                error: String::new(),
            },
            Err(refusal) => Asked {
                question: form.message.trim().to_string(),
                answer: None,
                error: refusal.message,
            },
        };
    instructions(&app, &packet, token, asked).await
}

/// A short page for a patient, without the equipment sites' contacts or search.
fn patient_message(
    status: StatusCode,
    lang: &str,
    heading: &str,
    message: &str,
) -> Result<Response, AppError> {
    let page = crate::views::MessagePage {
        lang: lang.to_string(),
        heading: heading.to_string(),
        message: message.to_string(),
        // No way on to the equipment pages: the patient's next step is the code on their papers.
        back: String::new(),
    }
    .render()?;
    Ok(no_store((status, Html(page)).into_response()))
}

/// `POST /patient/signout`.
pub async fn sign_out(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<crate::account::CsrfForm>,
) -> Result<Response, AppError> {
    // The page says so in the packet's language, with no equipment sites' contacts: it is shown
    // on a phone a patient may hand on.
    let mut language = None;
    if let Some(token) = http::cookie(&headers, PATIENT_COOKIE) {
        if !auth::tokens_match(&auth::csrf_for_session(token), &form.csrf) {
            return crate::account::forbidden("This form expired. Reload the page and try again.");
        }
        if let Some(packet) = app.store.patient_session(token).await? {
            app.store
                .audit("patient", "access.signed_out", Some(&packet), "", None)
                .await?;
            language = app.store.packet(&packet).await?.map(|p| p.language);
        }
        app.store.end_patient_session(token).await?;
    }
    let lang = language.unwrap_or_else(|| crate::site::ui_language(None, &headers));
    let t = i18n::strings(&lang);
    let mut response = patient_message(
        StatusCode::OK,
        &lang,
        t.patient_signed_out_title,
        t.patient_signed_out,
    )?;
    let cookie = http::set_cookie(PATIENT_COOKIE, "", "/", Some(0), app.config.secure_cookies);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(no_store(response))
}

pub struct PacketRow {
    pub id: String,
    pub name: String,
    pub language: String,
    pub created: String,
    /// The last UTC day it is kept (the retention limit), `YYYY-MM-DD`.
    pub kept_until: String,
    /// The last day it would be kept if a clinician kept it longer now; `None` when that is no
    /// later (made or kept longer today) or it is past its limit (about to be deleted).
    pub could_keep_until: Option<String>,
    pub created_by: String,
    pub failed_attempts: i64,
    /// Empty when it opens; else "locked" and for how long.
    pub locked: String,
    /// `patients::pin_version` of its second factor, for the new-PIN form.
    pub pin_version: String,
}

#[derive(Template)]
#[template(path = "patients_admin.html")]
pub struct PacketsPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub message: String,
    pub packets: Vec<PacketRow>,
    pub audit: Vec<crate::patients::AuditEntry>,
}

/// The page for a packet id that does not exist (deleted meanwhile, or made up).
fn packet_not_found() -> Result<Response, AppError> {
    let page = crate::views::MessagePage {
        lang: "en".to_string(),
        heading: "No such packet".to_string(),
        message: "There is no packet with that id.".to_string(),
        back: "/patients".to_string(),
    }
    .render()?;
    Ok(no_store(
        (StatusCode::NOT_FOUND, Html(page)).into_response(),
    ))
}

/// The last day a packet whose retention count started at `start` is kept, as `YYYY-MM-DD` (see
/// `retention::packet_kept_until`).
pub(crate) fn kept_until(start: &str, app: &AppState) -> String {
    crate::retention::packet_kept_until(start, app.config.retention)
        .map(|day| day.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Clinicians only: an administrator runs the site, not the ward, and reading a patient's papers
/// or issuing a new PIN (with a date of birth they choose, so they could open the packet
/// themselves) is not theirs to do. The admin page counts locked packets without names.
const CLINICIAN_ROLES: &[Role] = &[Role::Clinician];
const CLINICIAN_REFUSAL: &str = "Discharge packets are for clinicians.";

pub(crate) async fn require_clinician(
    app: &AppState,
    headers: &HeaderMap,
) -> Result<Result<auth::SignedIn, Response>, AppError> {
    require_role(app, headers, CLINICIAN_ROLES, CLINICIAN_REFUSAL).await
}

/// `require_clinician` for a form post: the session's CSRF token must be the one posted.
pub(crate) async fn require_clinician_posting(
    app: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Result<auth::SignedIn, Response>, AppError> {
    crate::account::require_role_posting(app, headers, CLINICIAN_ROLES, CLINICIAN_REFUSAL, csrf)
        .await
}

/// `GET /patients`: packets with their lock status, and the newest audit entries.
pub async fn packets(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let me = match require_clinician(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    packets_page(&app, &me, "").await
}

async fn packets_page(
    app: &AppState,
    me: &auth::SignedIn,
    message: &str,
) -> Result<Response, AppError> {
    app.store
        .audit(&me.username, "packets.listed", None, "", None)
        .await?;
    let now = chrono::Utc::now();
    let kept_longer_now = kept_until(&crate::store::stored_time(now), app);
    let past_limit = crate::retention::packets_past_limit_before(app.config.retention, now);
    let packets = app
        .store
        .packets()
        .await?
        .into_iter()
        .map(|p| PacketRow {
            failed_attempts: p.failures_counting_at(now),
            locked: match p.lock_at(now) {
                None => String::new(),
                Some(None) => "locked".to_string(),
                Some(Some(wait)) => {
                    format!("locked for {} more min", wait.as_secs().div_ceil(60).max(1))
                }
            },
            pin_version: crate::patients::pin_version(&p.secret_hash),
            kept_until: kept_until(p.retention_start(), app),
            // Both are `YYYY-MM-DD`, so text order is date order.
            could_keep_until: (kept_until(p.retention_start(), app) < kept_longer_now
                && p.retention_start() >= past_limit.as_str())
            .then(|| kept_longer_now.clone()),
            id: p.id,
            name: p.display_name,
            language: p.language,
            created: p.created_at,
            created_by: p.created_by,
        })
        .collect();
    let page = PacketsPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        message: message.to_string(),
        packets,
        audit: app.store.audit_entries(200).await?,
    }
    .render()?;
    Ok(no_store(Html(page).into_response()))
}

/// `POST /patients/{packet}/reset`: unlocks a packet after the clinician has checked who is asking.
pub async fn reset(
    State(app): State<AppState>,
    crate::http::PathSegment(packet): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<crate::account::CsrfForm>,
) -> Result<Response, AppError> {
    let me = match require_clinician_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    if !app.store.reset_packet(&packet, &me.username).await? {
        return packet_not_found();
    }
    Ok(Redirect::to("/patients").into_response())
}

/// `POST /patients/{packet}/keep`: keeps a packet longer, for a patient who still needs it: its
/// retention count starts again today, so it opens through the retention limit from today (the
/// patient's page shows the new date; the slip they were given shows the old one, which stays
/// true as the earliest). Audited with the old and new last days. A packet past its limit (its
/// last day has ended everywhere; the hourly purge deletes it) is not brought back.
pub async fn keep(
    State(app): State<AppState>,
    crate::http::PathSegment(packet): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<crate::account::CsrfForm>,
) -> Result<Response, AppError> {
    let me = match require_clinician_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let now = chrono::Utc::now();
    let from = crate::store::stored_time(now);
    let past_limit = crate::retention::packets_past_limit_before(app.config.retention, now);
    let until = kept_until(&from, &app);
    let kept = app
        .store
        .keep_packet(&packet, &from, &past_limit, &me.username, |start| {
            format!("kept until {until} (was {})", kept_until(start, &app))
        })
        .await?;
    match kept {
        crate::patients::Kept::Kept | crate::patients::Kept::Unchanged => {
            Ok(Redirect::to("/patients").into_response())
        }
        crate::patients::Kept::NoSuchPacket => packet_not_found(),
        crate::patients::Kept::PastItsLimit => {
            let page = crate::views::MessagePage {
                lang: "en".to_string(),
                heading: "Not kept".to_string(),
                message: "This packet's last day has ended, so it is being deleted as its patient was told. Make a new packet if they still need one.".to_string(),
                back: "/patients".to_string(),
            }
            .render()?;
            Ok(no_store((StatusCode::CONFLICT, Html(page)).into_response()))
        }
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DeleteForm {
    #[serde(default)]
    pub csrf: String,
    /// Must be `delete`: a second step against a slip of the finger.
    #[serde(default)]
    pub confirm: String,
}

/// `POST /patients/{packet}/delete`: deletes the packet and its patient's data on request; the
/// index drops the documents in the background.
pub async fn delete(
    State(app): State<AppState>,
    crate::http::PathSegment(packet): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<DeleteForm>,
) -> Result<Response, AppError> {
    let me = match require_clinician_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    if form.confirm.trim() != "delete" {
        let page = crate::views::MessagePage {
            lang: "en".to_string(),
            heading: "Not deleted".to_string(),
            message: "Type delete in the box to confirm; nothing was deleted.".to_string(),
            back: "/patients".to_string(),
        }
        .render()?;
        return Ok(no_store(
            (StatusCode::UNPROCESSABLE_ENTITY, Html(page)).into_response(),
        ));
    }
    if !app.store.delete_packet(&packet, &me.username).await? {
        return packet_not_found();
    }
    crate::patient_chat::reindex_in_background(&app);
    Ok(Redirect::to("/patients").into_response())
}
