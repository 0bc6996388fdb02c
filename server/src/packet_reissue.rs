//! Reissuing what a discharge packet's patient was given, for a clinician: the label again (a jammed
//! printer, papers lost; the code alone opens nothing, so it can be printed any time), and a new
//! PIN (a lost slip). The PIN is kept only as a hash, so it is never shown again: a new one is made,
//! with the date of birth the clinician reads from the patient's record, and the old slip stops
//! working.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::account::no_store;
use crate::auth;
use crate::packet_admin::{packet_label, CreatedPage};
use crate::patient_pages::{kept_until, require_clinician, require_clinician_posting};
use crate::{AppError, AppState};

/// A packet id that does not exist (deleted meanwhile, or made up).
fn no_such_packet() -> Result<Response, AppError> {
    message(
        StatusCode::NOT_FOUND,
        "No such packet",
        "There is no packet with that id.",
    )
}

fn message(status: StatusCode, heading: &str, text: &str) -> Result<Response, AppError> {
    let page = crate::views::MessagePage {
        lang: "en".to_string(),
        heading: heading.to_string(),
        message: text.to_string(),
        back: "/patients".to_string(),
    }
    .render()?;
    Ok(no_store((status, Html(page)).into_response()))
}

/// `GET /patients/{packet}/label`: the packet's label to print again.
pub async fn label(
    State(app): State<AppState>,
    crate::http::PathSegment(packet): crate::http::PathSegment,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let me = match require_clinician(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let Some(record) = app.store.packet(&packet).await? else {
        return no_such_packet();
    };
    // Who printed whose label, as for every other look at a packet (nothing personal in it).
    app.store
        .audit(
            &me.username,
            "packet.label_printed",
            Some(&packet),
            "",
            None,
        )
        .await?;
    let record_name = record.display_name.clone();
    let (_, label_svg) = packet_label(&app, &record.code, &record.language, &record.contact)?;
    reissued_page(
        &app,
        &me,
        record,
        format!("Label for {}", record_name),
        "The same code as before: the patient's PIN slip still opens it.",
        String::new(),
        label_svg,
    )
}

#[derive(Debug, Deserialize, Default)]
pub struct NewPinForm {
    #[serde(default)]
    pub csrf: String,
    /// The patient's date of birth, from their record: with the new PIN, the second factor.
    #[serde(default)]
    pub dob: String,
    /// Typed twice: nothing can check it (it is kept only hashed with the PIN), and a typo would
    /// make the new slip useless.
    #[serde(default)]
    pub dob_again: String,
    /// `patients::pin_version` of the second factor the page was drawn with.
    #[serde(default)]
    pub pin_version: String,
}

/// `POST /patients/{packet}/pin`: a new PIN for a lost slip. Shows the new slip once; the old one
/// no longer opens the packet, its lock and failed tries are cleared, and the patient's open
/// sessions end.
pub async fn new_pin(
    State(app): State<AppState>,
    crate::http::PathSegment(packet): crate::http::PathSegment,
    headers: HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<NewPinForm>,
) -> Result<Response, AppError> {
    let me = match require_clinician_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let Some(dob) = crate::patients::normalise_dob(&form.dob).filter(|d| *d <= today) else {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No new PIN",
            "The date of birth is not a date (YYYY-MM-DD) in the past; nothing was changed.",
        );
    };
    if crate::patients::normalise_dob(&form.dob_again).as_deref() != Some(dob.as_str()) {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No new PIN",
            "The two dates of birth differ; nothing was changed. Type the date from the patient's record twice.",
        );
    }
    let Some(record) = app.store.packet(&packet).await? else {
        return no_such_packet();
    };
    let already = "A new PIN was issued since this page was drawn (a form sent twice?): nothing was changed, and the slip shown last is the one that works. Reload the packets page before issuing another.";
    if form.pin_version != crate::patients::pin_version(&record.secret_hash) {
        return message(StatusCode::CONFLICT, "No new PIN", already);
    }
    let Some(pin) = app
        .store
        .issue_new_pin(&packet, &dob, &me.username, &record.secret_hash)
        .await?
    else {
        return message(StatusCode::CONFLICT, "No new PIN", already);
    };
    let heading = format!("New PIN for {}", record.display_name);
    reissued_page(
        &app,
        &me,
        record,
        heading,
        &format!("The old slip no longer opens the packet; give the patient this one. The PIN is shown only now. It signs in with the date of birth {dob}."),
        pin,
        String::new(),
    )
}

/// The page with what was reissued: the label, or the PIN slip in the packet's language.
fn reissued_page(
    app: &AppState,
    me: &auth::SignedIn,
    record: crate::patients::PacketRecord,
    heading: String,
    intro: &str,
    pin: String,
    label_svg: String,
) -> Result<Response, AppError> {
    let until = kept_until(record.retention_start(), app);
    let slip = crate::i18n::strings(&record.language);
    let url = crate::packet_admin::packet_url(app, &record.code);
    let page = CreatedPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        heading,
        intro: intro.to_string(),
        url,
        code: record.code,
        pin,
        label_svg,
        kept_until_line: slip.pin_slip_until.replace("{date}", &until),
        pin_help_line: slip.with_contact(slip.pin_help, &record.contact),
        kept_until: until,
        slip,
        packet_lang: record.language,
    }
    .render()?;
    Ok(no_store(Html(page).into_response()))
}
