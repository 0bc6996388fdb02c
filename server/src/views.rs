//! The page types askama renders (templates live in `templates/`). The server owns these view types;
//! engine types are converted into them, never rendered directly.

use askama::Template;

use crate::i18n::Strings;
use crate::pages::SectionView;
use crate::store::{AssetRecord, SiteRecord};

#[derive(Template)]
#[template(path = "asset.html")]
pub struct AssetPage<'a> {
    pub t: &'static Strings,
    /// The code scanned: staff who sign in from the page come back to it.
    pub code: &'a str,
    pub lang: String,
    pub role: &'static str,
    pub signed_in: bool,
    pub asset: &'a AssetRecord,
    pub site_name: String,
    pub timezone: String,
    pub contact: String,
    pub on_call: String,
    pub queue_name: String,
    pub queue_hours: String,
    /// The on-call page variant: who to call comes first.
    pub on_call_first: bool,
    pub languages: &'a [String],
    pub highlights: &'a [SectionView],
    pub contents: &'a [SectionView],
}

#[derive(Template)]
#[template(path = "fallback.html")]
pub struct FallbackPage {
    pub t: &'static Strings,
    pub lang: String,
    pub heading: String,
    pub intro: String,
    pub sites: Vec<SiteRecord>,
    /// A patient's (discharge) code: no manual search and no sites' contacts, which are not theirs.
    pub patient: bool,
}

pub struct ManualSection {
    pub title: String,
    pub anchor: String,
    pub html: String,
}

#[derive(Template)]
#[template(path = "manual.html")]
pub struct ManualPage {
    pub t: &'static Strings,
    pub lang: String,
    pub title: String,
    pub revision: String,
    pub sections: Vec<ManualSection>,
}

#[derive(Template)]
#[template(path = "search.html")]
pub struct SearchPage {
    pub t: &'static Strings,
    pub lang: String,
    pub query: String,
    pub asset_id: String,
    pub hits: Vec<SectionView>,
    pub machine: Option<MachineLink>,
    /// The search was for a machine no manual is for yet: nothing was searched.
    pub no_manuals: bool,
    /// Why the search was not run (empty, too long, too many, busy), with the question kept.
    pub refusal: String,
}

/// The way back to a machine's page from a page its forms led to (a chat answer, search results).
#[derive(Clone)]
pub struct MachineLink {
    pub href: String,
    pub name: String,
}

impl MachineLink {
    /// The link for asset `asset_id` in language `lang`, if it has a live label code.
    pub async fn to(
        store: &crate::store::Store,
        asset_id: &str,
        lang: &str,
    ) -> Result<Option<MachineLink>, crate::ServerError> {
        if asset_id.is_empty() || asset_id.len() > 64 {
            return Ok(None);
        }
        Ok(store
            .page_code_of(asset_id)
            .await?
            .map(|(code, name)| MachineLink {
                href: format!("/c/{code}?lang={lang}"),
                name,
            }))
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub lang: String,
    pub heading: String,
    pub message: String,
    pub back: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub lang: String,
    pub csrf: String,
    pub error: String,
    pub username: String,
    /// The page to return to after signing in (already checked), or empty.
    pub next: String,
}

pub struct UserRow {
    pub username: String,
    pub role: String,
    pub created_at: String,
    /// "locked for N min" while failed sign-ins lock the account; empty otherwise.
    pub locked: String,
    /// For an agent: every support queue, ticked where they work it (none ticked: every queue).
    pub queues: Vec<QueueChoice>,
    /// An agent whose given queues were all dropped from `assets.toml`: they see no ticket.
    pub queues_dropped: bool,
}

/// A support queue as a checkbox on the users page.
pub struct QueueChoice {
    pub id: String,
    pub name: String,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
pub struct AdminUsersPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub message: String,
    pub users: Vec<UserRow>,
    pub roles: Vec<&'static str>,
    /// Administrators' recent changes to staff accounts (the audit log's `account.*` entries).
    pub changes: Vec<crate::patients::AuditEntry>,
}

#[derive(Template)]
#[template(path = "account_password.html")]
pub struct AccountPasswordPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub message: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "admin_rules.html")]
pub struct AdminRulesPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub message: String,
    pub error: String,
    pub toml: String,
    pub saved: String,
    pub warnings: Vec<String>,
    /// Saved versions, newest first: (id, saved at, saved by).
    pub history: Vec<(i64, String, String)>,
    pub query: crate::rules_admin::ExplainQuery,
    pub explanation: Vec<String>,
    pub roles: Vec<&'static str>,
    /// The saved rule set the editor started from (`Store::rules_version`): saving over a newer
    /// one is refused.
    pub base: i64,
    /// Whether the warnings are about the text in the editor (a check) or the rules in force.
    pub checked_draft: bool,
}

/// A question the page's form sent that was not answered (a limit, a busy assistant, a message
/// too long): why, and the question back in a form to send again, on the same asset.
#[derive(Template)]
#[template(path = "chat_refused.html")]
pub struct ChatRefusedPage {
    /// Random per drawing: the page's chat forms send it as `request`, so a resubmitted form is
    /// answered with what its first sending stored (`chat::is_repeat`).
    pub request: String,
    pub t: &'static Strings,
    pub lang: String,
    pub heading: String,
    pub message: String,
    pub asset_id: String,
    /// Empty when the conversation itself was the problem (unknown or gone): a new one starts.
    pub conversation: String,
    pub question: String,
    pub contact: String,
    pub machine: Option<MachineLink>,
}

#[derive(Template)]
#[template(path = "chat.html")]
pub struct ChatPage {
    /// Random per drawing: the page's chat forms send it as `request`, so a resubmitted form is
    /// answered with what its first sending stored (`chat::is_repeat`).
    pub request: String,
    pub t: &'static Strings,
    pub lang: String,
    pub asset_id: String,
    pub question: String,
    pub reply: crate::chat::ChatReply,
    /// Support's replies on this conversation so far (without JavaScript, a new question or a
    /// reload shows them).
    pub replies: Vec<crate::tickets::TicketMessage>,
    pub machine: Option<MachineLink>,
}

/// Support's replies to a conversation, for a chat without JavaScript (`POST /chat/replies`).
#[derive(Template)]
#[template(path = "chat_replies.html")]
pub struct ChatRepliesPage {
    /// Random per drawing: the page's chat forms send it as `request`, so a resubmitted form is
    /// answered with what its first sending stored (`chat::is_repeat`).
    pub request: String,
    pub t: &'static Strings,
    pub lang: String,
    pub asset_id: String,
    pub conversation: String,
    pub replies: Vec<crate::tickets::TicketMessage>,
    /// The conversation's last ticket is closed: the page says so and offers a person again.
    pub closed: bool,
    pub machine: Option<MachineLink>,
}

/// One manual in the content editors' list.
pub struct ManualRow {
    pub id: String,
    pub title: String,
    pub file: String,
    pub revision: String,
    pub language: String,
    pub audiences: String,
    pub models: String,
    pub chunks: usize,
    pub status: String,
}

#[derive(Template)]
#[template(path = "admin_manuals.html")]
pub struct ManualsPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub generation: String,
    /// When the served generation was built: every manual in it was indexed then.
    pub indexed_at: String,
    pub model: String,
    pub manuals: Vec<ManualRow>,
    /// Files in the folder that are not usable manuals: (why, the file relative to the folder, to
    /// open it and fix it; empty when the problem is the folder itself).
    pub broken: Vec<(String, String)>,
    pub jobs: Vec<crate::content::Job>,
    pub audit: Vec<crate::content::AuditEntry>,
    /// Manuals deleted and not restored: (id, deleted by, at), each with its history.
    pub deleted: Vec<(String, String, String)>,
}

pub struct FindingRow {
    pub line: usize,
    pub message: String,
}

/// One chunk of the preview.
pub struct ChunkRow {
    pub section: String,
    pub line: usize,
    pub tokens: usize,
    pub audiences: String,
    pub start: String,
}

#[derive(Template)]
#[template(path = "admin_manual_edit.html")]
pub struct ManualEditPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub original: String,
    /// A file of the folder that is not a usable manual, opened to be fixed (relative to the
    /// folder; empty otherwise): publishing writes there.
    pub fixing: String,
    /// The version of the text the editor started from (`content::text_version`).
    pub base: String,
    pub markdown: String,
    pub was_checked: bool,
    pub clean: bool,
    pub findings: Vec<FindingRow>,
    pub chunks: Vec<ChunkRow>,
    pub message: String,
    /// After a check: which machines' pages and chats will include the manual (or that none will).
    pub reach: String,
    /// After a check: the text's sections rendered as its page will show them, each with who may
    /// read it.
    pub preview: Vec<PreviewSection>,
    /// A publish refused because the file changed since the editor opened it: (heading, diff, id)
    /// of what changed meanwhile and of this text against the file now.
    pub conflict: Vec<(String, crate::text_diff::LineDiff, String)>,
    /// What points at the manual being edited (other manuals' links, registry entries): a deletion
    /// or a rename leaves them pointing at nothing. Said, not refused.
    pub references: Vec<String>,
    /// After a check that gives the manual another id: that id (the references then break).
    pub renamed_to: String,
}

/// A section of the editor's preview.
pub struct PreviewSection {
    pub title: String,
    pub anchor: String,
    pub audiences: String,
    pub html: String,
}

#[derive(Template)]
#[template(path = "admin_job.html")]
pub struct JobPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub job: crate::content::Job,
    pub progress: crate::content::Progress,
    pub running: bool,
    pub can_roll_back: bool,
    /// Rolled back by publishing the previous text again (`content::RolledBack::Republished`).
    pub can_republish_previous: bool,
    pub can_override: bool,
    /// A publish the gate stopped or that failed: its text can be opened in the editor again.
    pub can_reopen_text: bool,
}

#[derive(Template)]
#[template(path = "admin_tokens.html")]
pub struct TokensPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub message: String,
    /// A token just created, shown this once.
    pub new_token: String,
    pub tokens: Vec<crate::api_tokens::TokenRow>,
}

#[derive(Template)]
#[template(path = "admin_gaps.html")]
pub struct GapsPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub days: u32,
    /// As far back as chat turns are kept.
    pub max_days: u64,
    pub groups: Vec<crate::gaps::GapGroup>,
    /// Patients' questions in the period: a count only, their words are never shown.
    pub patient_questions: i64,
    /// When only the newest this many questions were grouped.
    pub truncated: Option<i64>,
    /// The latest "Mark handled" clicks in the period, newest first, each with an undo.
    pub handled: Vec<crate::gaps::HandledBatch>,
}

#[derive(Template)]
#[template(path = "admin_scans.html")]
pub struct ScansPage {
    pub lang: String,
    pub csrf: String,
    pub me: crate::views::Me,
    pub days: u32,
    pub f: crate::scans_view::ScanFigures,
    /// Server-drawn SVG (labels escaped where drawn).
    pub asset_chart: String,
    pub placement_chart: String,
    pub role_chart: String,
    pub hour_chart: String,
    pub escalation_rate: f64,
}

/// The signed-in member of staff a page is drawn for: shown as their username, with the pages
/// their role works with (the staff navigation bar, `staff_header.html`).
#[derive(Debug, Clone)]
pub struct Me {
    pub username: String,
    pub role: crate::roles::Role,
}

impl Me {
    pub fn of(user: &crate::auth::SignedIn) -> Self {
        Self {
            username: user.username.clone(),
            role: user.role,
        }
    }

    /// (address, label) of each page the role works with, its start page first.
    pub fn nav(&self) -> &'static [(&'static str, &'static str)] {
        use crate::roles::Role;
        match self.role {
            Role::Admin => &[
                ("/admin", "Administration"),
                ("/support", "Support"),
                ("/admin/manuals", "Manuals"),
                ("/admin/gaps", "Unanswered"),
                ("/admin/scans", "Scans"),
                ("/admin/rules", "Rules"),
                ("/admin/codes", "Codes"),
                ("/admin/webhooks", "Webhooks"),
                ("/admin/tokens", "Tokens"),
                ("/admin/users", "Users"),
            ],
            Role::Agent => &[("/support", "Support queue")],
            Role::Clinician => &[("/patients", "Discharge packets")],
            Role::Editor => &[
                ("/admin/manuals", "Manuals"),
                ("/admin/gaps", "Unanswered"),
                ("/admin/scans", "Scans"),
            ],
            Role::Anonymous | Role::Operator | Role::Technician | Role::Biomed | Role::Patient => {
                &[("/", "Find equipment")]
            }
        }
    }
}

impl std::fmt::Display for Me {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.username)
    }
}
