//! Clinicians create discharge packets in the browser: the patient's name and date of birth, the
//! language, bundled leaflets to start from and a personal note. The result page shows, once, the
//! printable label (the QR code) and the PIN slip; the packet's documents are indexed in the
//! background so the patient's questions can be answered from them.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::account::no_store;
use crate::auth::{self, SignedIn};
use crate::patient_pages::{require_clinician, require_clinician_posting};
use crate::patients::{normalise_dob, NewDocument, NewPacket};
use crate::{AppError, AppState};

/// Longest personal note, in characters.
pub const MAX_NOTE_CHARS: usize = 20_000;
const MAX_NAME_CHARS: usize = 120;
const MAX_CONTACT_CHARS: usize = 120;

/// A bundled leaflet a packet can start from.
pub struct LeafletChoice {
    pub id: String,
    pub title: String,
    pub language: String,
    /// Ticked: a form shown again with its errors keeps the leaflets chosen, so fixing the name
    /// cannot create a packet without them.
    pub chosen: bool,
}

#[derive(Template)]
#[template(path = "patients_new.html")]
pub struct NewPacketPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub errors: Vec<String>,
    pub templates: Vec<LeafletChoice>,
    pub name: String,
    pub dob: String,
    pub language: String,
    pub note: String,
    pub contact: String,
    /// Random per form page: the same form sent twice makes one packet.
    pub form_token: String,
}

/// The label and the PIN slip, or either alone: after making a packet both; a reprint the label
/// only; a new PIN the slip only.
#[derive(Template)]
#[template(path = "patients_created.html")]
pub struct CreatedPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub heading: String,
    pub intro: String,
    pub url: String,
    pub code: String,
    pub pin: String,
    pub label_svg: String,
    /// The slip is the patient's: in the packet's language.
    pub packet_lang: String,
    pub slip: &'static crate::i18n::Strings,
    /// The last day the packet is kept, `YYYY-MM-DD`.
    pub kept_until: String,
    /// The slip's line saying so, in the packet's language.
    pub kept_until_line: String,
    /// The slip's line saying whom to call about a lost PIN (empty: the packet names nobody).
    pub pin_help_line: String,
}

/// The bundled patient leaflets (`manuals/patient/*.md`), parsed.
fn leaflets(app: &AppState) -> Vec<scanaid_indexer::manual::Manual> {
    let Some(dir) = app.config.demo_manuals.as_ref().map(|d| d.join("patient")) else {
        return Vec::new();
    };
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            scanaid_indexer::manual::parse_manual(&p, &bytes).ok()
        })
        .collect();
    found.sort_by(|a, b| a.meta.title.cmp(&b.meta.title));
    found
}

fn form_page(
    app: &AppState,
    me: &SignedIn,
    status: StatusCode,
    errors: Vec<String>,
    form: &NewPacketForm,
) -> Result<Response, AppError> {
    let page = NewPacketPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(me),
        errors,
        templates: leaflets(app)
            .into_iter()
            .map(|m| LeafletChoice {
                chosen: form.templates.contains(&m.meta.id),
                id: m.meta.id,
                title: m.meta.title,
                language: m.meta.language,
            })
            .collect(),
        name: form.name.clone(),
        dob: form.dob.clone(),
        language: form.language.clone(),
        note: form.note.clone(),
        contact: form.contact.clone(),
        // A form shown again with its errors keeps its token: it still makes one packet.
        form_token: if form.form_token.is_empty() {
            auth::random_token(16)
        } else {
            form.form_token.clone()
        },
    }
    .render()?;
    Ok(no_store((status, Html(page)).into_response()))
}

/// `GET /patients/new`.
pub async fn new_form(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let me = match require_clinician(&app, &headers).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let empty = NewPacketForm {
        language: "en".to_string(),
        contact: app.store.last_packet_contact(&me.username).await?,
        ..NewPacketForm::default()
    };
    form_page(&app, &me, StatusCode::OK, Vec::new(), &empty)
}

/// The form as posted. Leaflets come as repeated `template` fields, so the body is read as pairs.
#[derive(Debug, Default, Clone)]
pub struct NewPacketForm {
    pub csrf: String,
    pub name: String,
    pub dob: String,
    pub language: String,
    pub note: String,
    pub contact: String,
    pub templates: Vec<String>,
    pub form_token: String,
}

impl NewPacketForm {
    fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = NewPacketForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "csrf" => form.csrf = v,
                "name" => form.name = v,
                "dob" => form.dob = v,
                "language" => form.language = v,
                // A textarea's line breaks arrive as CRLF but count as one against its maxlength.
                "note" => form.note = v.replace("\r\n", "\n"),
                "contact" => form.contact = v,
                // Each leaflet once, however often a (crafted) form names it.
                "template" if !form.templates.contains(&v) => form.templates.push(v),
                "form_token" => form.form_token = v,
                _ => {}
            }
        }
        form
    }
}

/// `POST /patients/new`: validates everything and says what is wrong, or creates the packet and
/// shows its label and PIN once.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    crate::http::LenientForm(pairs): crate::http::LenientForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let form = NewPacketForm::from_pairs(pairs);
    let me = match require_clinician_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(refused) => return Ok(refused),
    };
    let mut errors = Vec::new();
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        errors.push(format!(
            "The patient's name is 1 to {MAX_NAME_CHARS} characters."
        ));
    }
    let dob = normalise_dob(&form.dob);
    match &dob {
        None => errors.push("The date of birth is not a date (YYYY-MM-DD).".to_string()),
        Some(d) if d.as_str() > chrono::Utc::now().format("%Y-%m-%d").to_string().as_str() => {
            errors.push("The date of birth is in the future.".to_string())
        }
        Some(_) => {}
    }
    if !crate::i18n::UI_LANGUAGES.contains(&form.language.as_str()) {
        errors.push(format!(
            "The language is one of: {}.",
            crate::i18n::UI_LANGUAGES.join(", ")
        ));
    }
    let contact = form.contact.trim();
    if contact.chars().count() > MAX_CONTACT_CHARS
        || contact.chars().any(char::is_control)
        || contact.chars().filter(char::is_ascii_digit).count() < 3
    {
        errors.push(format!(
            "Whom the patient calls is a ward and a phone number or extension (at least 3 digits, at most {MAX_CONTACT_CHARS} characters): the label, the PIN slip and the patient's pages tell them to call it."
        ));
    }
    if form.note.chars().count() > MAX_NOTE_CHARS {
        errors.push(format!(
            "The personal note is at most {MAX_NOTE_CHARS} characters."
        ));
    }
    let available = leaflets(&app);
    let mut documents = Vec::new();
    if !form.note.trim().is_empty() {
        documents.push(NewDocument {
            title: if form.language == "es" {
                "Indicaciones de su equipo".to_string()
            } else {
                "From your care team".to_string()
            },
            markdown: form.note.trim().to_string(),
            template: None,
        });
    }
    for id in &form.templates {
        match available.iter().find(|m| &m.meta.id == id) {
            Some(m) => documents.push(NewDocument {
                title: m.meta.title.clone(),
                markdown: m.body.clone(),
                template: Some(m.meta.id.clone()),
            }),
            None => errors.push(format!("There is no leaflet {id:?}.")),
        }
    }
    if documents.is_empty() {
        errors.push("Add a personal note or pick at least one leaflet.".to_string());
    }
    if !errors.is_empty() {
        return form_page(&app, &me, StatusCode::UNPROCESSABLE_ENTITY, errors, &form);
    }
    let token = (!form.form_token.is_empty()).then_some(form.form_token.as_str());
    let document_count = documents.len();
    let Some(created) = app
        .store
        .create_packet_once(
            &NewPacket {
                patient_name: name.to_string(),
                dob: dob.expect("checked above"),
                language: form.language.clone(),
                documents,
                created_by: me.username.clone(),
                contact: contact.to_string(),
            },
            token,
        )
        .await?
    else {
        let page = crate::views::MessagePage {
            lang: "en".to_string(),
            heading: "Packet already made".to_string(),
            message: "This form was already sent, and its packet was made then: no second one was made. Its PIN was shown once; if the slip is lost, use New PIN on the packets page.".to_string(),
            back: "/patients".to_string(),
        }
        .render()?;
        return Ok(no_store((StatusCode::CONFLICT, Html(page)).into_response()));
    };
    // Indexing takes seconds; the clinician gets the label now.
    crate::patient_chat::reindex_in_background(&app);
    // Nothing after the commit may fail the page: it holds the only copy of the PIN. So no store
    // reads here: the count is the form's, and retention counts from today.
    let (url, label_svg) = packet_label(&app, &created.code, &form.language, contact)?;
    let documents = document_count;
    let kept_until = crate::patient_pages::kept_until(
        &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        &app,
    );
    let slip = crate::i18n::strings(&form.language);
    let page = CreatedPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        heading: "Packet created".to_string(),
        intro: format!("{documents} document(s). Print the label for the discharge papers and give the PIN slip (in the patient's language) separately. The PIN is shown only now."),
        url,
        code: created.code,
        pin: created.pin,
        label_svg,
        kept_until_line: slip.pin_slip_until.replace("{date}", &kept_until),
        pin_help_line: slip.with_contact(slip.pin_help, contact),
        kept_until,
        slip,
        packet_lang: form.language.clone(),
    }
    .render()?;
    Ok(no_store(Html(page).into_response()))
}

/// A packet's address and its printable label (SVG), worded in the packet's `language`, with
/// whom to call (`contact`; empty: no such line).
pub(crate) fn packet_label(
    app: &AppState,
    code: &str,
    language: &str,
    contact: &str,
) -> Result<(String, String), AppError> {
    let url = packet_url(app, code);
    let spanish = language == "es";
    let label = crate::label::Label {
        url: url.clone(),
        title: if spanish {
            "Sus instrucciones al alta"
        } else {
            "Your discharge instructions"
        }
        .to_string(),
        line: if spanish {
            "Escanee para ver sus instrucciones"
        } else {
            "Scan for your instructions"
        }
        .to_string(),
        code: code.to_string(),
        contact: {
            let t = crate::i18n::strings(language);
            t.with_contact(t.label_call, contact)
        },
    };
    let svg = crate::label::svg(&label).map_err(|reason| {
        AppError(crate::ServerError::Registry {
            path: "label".into(),
            reason,
        })
    })?;
    Ok((url, svg))
}

/// The address a packet's code opens.
pub(crate) fn packet_url(app: &AppState, code: &str) -> String {
    format!("{}/c/{code}", app.config.public_url.trim_end_matches('/'))
}
