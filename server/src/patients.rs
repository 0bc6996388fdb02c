//! Discharge packets: a patient's own instructions behind a code on their papers and a second factor
//! only they have (date of birth and a PIN from a separate slip). The code is unguessable (about 134
//! bits) and says nothing about the patient; the factors are kept only as one argon2id hash; wrong
//! attempts lock the packet until a clinician resets it; every access and failure is audited.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::auth::{hash_password, random_token, token_hash, verify_password};
use crate::error::{Result, ServerError};
use crate::store::Store;

/// The patient's session cookie (separate from staff sessions).
pub const PATIENT_COOKIE: &str = "scanaid_patient";
/// A patient session ends after this long without a request.
pub const PATIENT_IDLE: Duration = Duration::from_secs(30 * 60);
/// A patient session ends this long after it opened however busy it is: a phone left signed in
/// (a shared one, a lost one) is not a way into the packet for ever.
pub const PATIENT_SESSION_MAX: Duration = Duration::from_secs(12 * 60 * 60);
/// The earliest year of birth a date of birth may have (see `normalise_dob`).
const MIN_BIRTH_YEAR: i32 = 1900;
/// Wrong attempts before a packet locks.
pub const MAX_FAILURES: i64 = 5;
/// Characters of a packet code: 23 from the 57-letter label alphabet is about 134 bits.
pub const PACKET_CODE_LEN: usize = 23;
pub const PIN_DIGITS: usize = 6;
/// The demo packets' second factors, under the data directory (never in logs or pages).
pub const DEMO_FILE: &str = "demo-patients.txt";

pub fn new_packet_code() -> String {
    use rand::Rng;
    let alphabet = crate::registry::CODE_ALPHABET;
    let mut rng = rand::rng();
    (0..PACKET_CODE_LEN)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

pub fn new_pin() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..PIN_DIGITS)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// A date of birth as typed (`YYYY-MM-DD`, what a date input sends, or `DD/MM/YYYY`), normalised;
/// `None` when it is not a real date, or when it is ambiguous (see `dob_is_ambiguous`).
pub fn normalise_dob(input: &str) -> Option<String> {
    let input = input.trim();
    if dob_is_ambiguous(input) {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(input, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(input, "%d/%m/%Y"))
        .ok()?;
    // `%Y` also reads a year of 1 to 3 digits: `14/03/58` would be the year 58, tied to a PIN that
    // then never opens the packet. A patient's year has four digits and is not before 1900.
    use chrono::Datelike;
    if date.year() < MIN_BIRTH_YEAR {
        return None;
    }
    Some(date.format("%Y-%m-%d").to_string())
}

/// A slashed date whose first two numbers could each be the day or the month (`02/11/1949`: 2
/// November, or February 11 as written in the US). Read one way it would cost a patient one of
/// their few attempts for a date they typed right, so they are asked for year-month-day instead.
pub fn dob_is_ambiguous(input: &str) -> bool {
    let parts: Vec<&str> = input.trim().split('/').collect();
    let [a, b, _year] = parts.as_slice() else {
        return false;
    };
    match (a.parse::<u32>(), b.parse::<u32>()) {
        (Ok(a), Ok(b)) => (1..=12).contains(&a) && (1..=12).contains(&b) && a != b,
        _ => false,
    }
}

/// A PIN as typed, digits only (spaces people type from the slip are dropped).
pub fn normalise_pin(input: &str) -> Option<String> {
    let digits: String = input.chars().filter(|c| !c.is_whitespace()).collect();
    (digits.len() == PIN_DIGITS && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

fn secret(dob: &str, pin: &str) -> String {
    format!("{dob}\n{pin}")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A document of a new packet.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub title: String,
    pub markdown: String,
    pub template: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewPacket {
    pub patient_name: String,
    /// Normalised (`normalise_dob`).
    pub dob: String,
    pub language: String,
    pub documents: Vec<NewDocument>,
    pub created_by: String,
    /// Whom the patient calls (the ward and its phone number); see `PacketRecord::contact`.
    pub contact: String,
}

/// What is printed: the code on the papers, the PIN on a separate slip. Shown once.
#[derive(Debug, Clone)]
pub struct CreatedPacket {
    pub packet_id: String,
    pub code: String,
    pub pin: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PacketRecord {
    pub id: String,
    pub code: String,
    pub patient_id: i64,
    pub display_name: String,
    pub language: String,
    pub secret_hash: String,
    pub created_by: String,
    pub created_at: String,
    pub failed_attempts: i64,
    pub locked_at: Option<String>,
    /// When the lock ends by itself (`None` with `locked_at`: a lock from before locks expired,
    /// which a clinician lifts).
    pub locked_until: Option<String>,
    /// The last wrong try (wrong tries a day older are forgotten).
    pub last_failed_at: Option<String>,
    /// When a clinician last kept it longer; `None`: never (see `retention_start`).
    pub kept_from: Option<String>,
    /// Whom the patient calls with questions, a lost PIN or a locked packet: the ward and its
    /// phone number. Empty for packets made before it was asked for.
    pub contact: String,
}

impl PacketRecord {
    /// Whether the packet is locked at `now`, and for how much longer (`Some(None)`: until a
    /// clinician lifts it).
    pub fn lock_at(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Option<std::time::Duration>> {
        self.locked_at.as_ref()?;
        match &self.locked_until {
            None => Some(None),
            Some(until) => {
                let until = chrono::DateTime::parse_from_rfc3339(until).ok()?;
                (until > now).then(|| (until.with_timezone(&chrono::Utc) - now).to_std().ok())
            }
        }
    }

    /// The wrong tries that still count at `now`: none once a lock has ended or a day has passed
    /// since the last one (the next try counts from one), else the stored count.
    pub fn failures_counting_at(&self, now: chrono::DateTime<chrono::Utc>) -> i64 {
        let forgotten = self.last_failed_at.as_deref().is_none_or(|last| {
            last < crate::store::stored_time(
                now - chrono::Duration::from_std(FORGET_FAILURES_AFTER).expect("fits"),
            )
            .as_str()
        });
        let lock_ended = self.locked_at.is_some() && self.lock_at(now).is_none();
        if lock_ended || (self.locked_at.is_none() && forgotten) {
            0
        } else {
            self.failed_attempts
        }
    }

    /// When its retention count starts (RFC 3339): the last time a clinician kept it longer, else
    /// when it was made.
    pub fn retention_start(&self) -> &str {
        self.kept_from.as_deref().unwrap_or(&self.created_at)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PacketDocument {
    pub id: i64,
    pub title: String,
    pub markdown: String,
    pub template: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub packet_id: Option<String>,
    pub detail: String,
    pub ip_prefix: Option<String>,
}

/// What keeping a packet longer came to (`Store::keep_packet`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    Kept,
    /// Its count already starts on that UTC day or later (made or kept longer today).
    Unchanged,
    /// Its last day has ended in every time zone: it is deleted, not kept.
    PastItsLimit,
    NoSuchPacket,
}

/// A short, one-way tag of a packet's second factor (`secret_hash`), put on the new-PIN form so
/// the form acts only on the PIN its page was drawn with.
pub fn pin_version(secret_hash: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(secret_hash.as_bytes())[..8])
}

/// The outcome of a second-factor attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Right: a new patient session's cookie token.
    Opened(String),
    /// Wrong; this many attempts are left before the packet locks.
    Wrong { left: i64 },
    /// Locked (now or before): until the lock ends by itself after `wait` (`None`: only a
    /// clinician lifts it), or a clinician lifts it sooner.
    Locked { wait: Option<std::time::Duration> },
}

/// How long each lock lasts: the first 15 min, then 1 h, 4 h, and 24 h for every lock after that.
/// A lock that ends by itself, however often someone holding the code sets it, never shuts the
/// patient out for good, and keeps guessing to 20 tries in the first five hours and 5 a day after
/// that (the PIN alone has 10^6 values, and the date of birth must match too).
pub const LOCK_STEPS: [std::time::Duration; 4] = [
    std::time::Duration::from_secs(15 * 60),
    std::time::Duration::from_secs(60 * 60),
    std::time::Duration::from_secs(4 * 60 * 60),
    std::time::Duration::from_secs(24 * 60 * 60),
];

/// Wrong tries older than this are forgotten: a patient's typos weeks apart never add up to a lock.
pub const FORGET_FAILURES_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

const PACKET_COLUMNS: &str = "k.id, k.code, k.patient_id, p.display_name, k.language, k.secret_hash, k.created_by, k.created_at, k.failed_attempts, k.locked_at, k.locked_until, k.last_failed_at, k.kept_from, k.contact";

impl Store {
    /// Creates a patient's packet with its code (kind `discharge`) and documents.
    pub async fn create_packet(&self, new: &NewPacket) -> Result<CreatedPacket> {
        Ok(self
            .create_packet_once(new, None)
            .await?
            .expect("without a form token a packet is always made"))
    }

    /// `create_packet` for a form sent with `form_token` (a random value on the form page): the
    /// same form sent again (a reload of the result page, a double click) makes nothing and
    /// gives `None`, instead of a second packet with another code and PIN for the same patient.
    pub async fn create_packet_once(
        &self,
        new: &NewPacket,
        form_token: Option<&str>,
    ) -> Result<Option<CreatedPacket>> {
        let code = new_packet_code();
        let pin = new_pin();
        let packet_id = random_token(12);
        let hash = {
            let secret = secret(&new.dob, &pin);
            crate::auth::password_work(move || hash_password(&secret)).await?
        };
        let at = now();
        let mut tx = self.pool().begin().await?;
        // A write first: the form-token check below then holds the write lock, so two sends of
        // one form at once cannot both pass it.
        let patient = sqlx::query("INSERT INTO patients (display_name, created_at) VALUES (?, ?)")
            .bind(&new.patient_name)
            .bind(&at)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        if let Some(token) = form_token {
            let used: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM packets WHERE form_token = ?")
                    .bind(token)
                    .fetch_optional(&mut *tx)
                    .await?;
            if used.is_some() {
                return Ok(None);
            }
        }
        sqlx::query("INSERT INTO codes (code, kind, asset_id, placement, created_at) VALUES (?, 'discharge', NULL, 'discharge-papers', ?)")
            .bind(&code)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO packets (id, code, patient_id, language, secret_hash, created_by, created_at, form_token, contact) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&packet_id)
            .bind(&code)
            .bind(patient)
            .bind(&new.language)
            .bind(&hash)
            .bind(&new.created_by)
            .bind(&at)
            .bind(form_token)
            .bind(&new.contact)
            .execute(&mut *tx)
            .await?;
        for (position, d) in new.documents.iter().enumerate() {
            sqlx::query("INSERT INTO packet_documents (packet_id, position, title, markdown, template) VALUES (?, ?, ?, ?, ?)")
                .bind(&packet_id)
                .bind(position as i64)
                .bind(&d.title)
                .bind(&d.markdown)
                .bind(&d.template)
                .execute(&mut *tx)
                .await?;
        }
        audit_in(
            &mut tx,
            &new.created_by,
            "packet.created",
            Some(&packet_id),
            &format!(
                "{} document(s), language {}",
                new.documents.len(),
                new.language
            ),
            None,
        )
        .await?;
        crate::store::codes_changed_in(&mut tx).await?;
        tx.commit().await?;
        self.forget_resolved();
        Ok(Some(CreatedPacket {
            packet_id,
            code,
            pin,
        }))
    }

    /// The contact `clinician` gave their last packet (empty: none yet): a ward's nurses make
    /// many packets, all with the ward's number.
    pub async fn last_packet_contact(&self, clinician: &str) -> Result<String> {
        Ok(sqlx::query_scalar(
            "SELECT contact FROM packets WHERE created_by = ? AND contact != ''
             ORDER BY created_at DESC, rowid DESC LIMIT 1",
        )
        .bind(clinician)
        .fetch_optional(self.pool())
        .await?
        .unwrap_or_default())
    }

    /// Gives a packet a new PIN, for a patient who lost the slip: the second factor becomes
    /// `dob` (normalised) with a new PIN, the old slip stops working, the lock and failed tries
    /// are cleared and the patient's open sessions end (they signed in with the old slip). Audited
    /// as `packet.new_pin` by `by`. The new PIN, or `None` when there is no such packet.
    /// Only while its second factor is still `seen_hash` (the one the clinician's page was drawn
    /// with): a form sent twice (a reload, a double click) would otherwise void the slip just
    /// handed over. `None` when there is no such packet or it changed meanwhile.
    pub async fn issue_new_pin(
        &self,
        packet: &str,
        dob: &str,
        by: &str,
        seen_hash: &str,
    ) -> Result<Option<String>> {
        let pin = new_pin();
        let hash = {
            let secret = secret(dob, &pin);
            crate::auth::password_work(move || hash_password(&secret)).await?
        };
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE packets SET secret_hash = ?, failed_attempts = 0, locked_at = NULL,
                 locked_until = NULL, times_locked = 0, last_failed_at = NULL
             WHERE id = ? AND secret_hash = ?",
        )
        .bind(&hash)
        .bind(packet)
        .bind(seen_hash)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM patient_sessions WHERE packet_id = ?")
            .bind(packet)
            .execute(&mut *tx)
            .await?;
        audit_in(
            &mut tx,
            by,
            "packet.new_pin",
            Some(packet),
            "new PIN issued; the old slip no longer opens it, its sessions ended",
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(pin))
    }

    pub async fn packet_by_code(&self, code: &str) -> Result<Option<PacketRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PACKET_COLUMNS} FROM packets k JOIN patients p ON p.id = k.patient_id WHERE k.code = ?"
        ))
        .bind(code)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn packet(&self, id: &str) -> Result<Option<PacketRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PACKET_COLUMNS} FROM packets k JOIN patients p ON p.id = k.patient_id WHERE k.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every packet, newest first (for clinicians).
    pub async fn packets(&self) -> Result<Vec<PacketRecord>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {PACKET_COLUMNS} FROM packets k JOIN patients p ON p.id = k.patient_id ORDER BY k.created_at DESC"
        ))
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn packet_documents(&self, packet: &str) -> Result<Vec<PacketDocument>> {
        Ok(sqlx::query_as(
            "SELECT id, title, markdown, template FROM packet_documents WHERE packet_id = ? ORDER BY position",
        )
        .bind(packet)
        .fetch_all(self.pool())
        .await?)
    }

    /// Checks a date of birth and PIN against a packet: opens a session, or counts a failure and
    /// locks the packet at `MAX_FAILURES`. Audited either way.
    ///
    /// The try is counted (and the packet locked at the limit) before the PIN is checked, in one
    /// statement that only an unlocked packet passes: guesses sent all at once cannot slip past the
    /// lock while the first checks run, so at most `MAX_FAILURES` tries are ever checked. A right
    /// one takes the count back, as a success always did.
    pub async fn try_packet(
        &self,
        packet: &PacketRecord,
        dob: &str,
        pin: &str,
        ip_prefix: Option<&str>,
    ) -> Result<Attempt> {
        let at = chrono::Utc::now();
        let counted: Option<(i64, Option<String>)> = if packet.lock_at(at).is_some() {
            None
        } else {
            let later = |d: std::time::Duration| {
                crate::store::stored_time(at + chrono::Duration::from_std(d).expect("fits"))
            };
            // The try's number (`try.n`): 1 after an ended lock or a day without a wrong try, else
            // one more. At the limit the packet locks until the next step's end. One statement, so
            // tries sent at once are counted one after another.
            sqlx::query_as(
                "UPDATE packets SET
                     failed_attempts = try.n,
                     last_failed_at = ?2,
                     locked_at = CASE WHEN try.n >= ?3 THEN ?2 END,
                     locked_until = CASE WHEN try.n >= ?3
                                         THEN (CASE times_locked WHEN 0 THEN ?4 WHEN 1 THEN ?5 WHEN 2 THEN ?6 ELSE ?7 END)
                                    END,
                     times_locked = times_locked + (try.n >= ?3)
                 FROM (SELECT CASE WHEN locked_at IS NOT NULL OR last_failed_at IS NULL OR last_failed_at < ?1
                                   THEN 1 ELSE failed_attempts + 1 END AS n
                       FROM packets WHERE id = ?8) AS try
                 WHERE packets.id = ?8
                   AND (packets.locked_at IS NULL OR (packets.locked_until IS NOT NULL AND packets.locked_until <= ?2))
                 RETURNING failed_attempts, locked_until",
            )
            .bind(crate::store::stored_time(
                at - chrono::Duration::from_std(FORGET_FAILURES_AFTER).expect("fits"),
            ))
            .bind(crate::store::stored_time(at))
            .bind(MAX_FAILURES)
            .bind(later(LOCK_STEPS[0]))
            .bind(later(LOCK_STEPS[1]))
            .bind(later(LOCK_STEPS[2]))
            .bind(later(LOCK_STEPS[3]))
            .bind(&packet.id)
            .fetch_optional(self.pool())
            .await?
        };
        let Some((tries, locked_until)) = counted else {
            self.audit(
                "anonymous",
                "access.refused_locked",
                Some(&packet.id),
                "",
                ip_prefix,
            )
            .await?;
            // Read again: the lock may be one another try set a moment ago.
            let wait = match self.packet(&packet.id).await? {
                Some(now) => now.lock_at(at).flatten(),
                None => None,
            };
            return Ok(Attempt::Locked { wait });
        };
        let (secret, hash) = (secret(dob, pin), packet.secret_hash.clone());
        let right = crate::auth::password_work(move || verify_password(&secret, &hash)).await?;
        // The PIN was checked against the hash read before the argon2 work; a clinician may have
        // issued a new PIN meanwhile. The session opens only if that hash is still the packet's,
        // in one transaction with the check, so an old slip never opens a session that outlives
        // the new PIN's (whose issue ends every session in its own transaction).
        if right {
            let mut tx = self.pool().begin().await?;
            // Lifts the lock this very try set when it was the last one allowed, and starts the
            // lock steps again: the patient has shown who they are.
            let current = sqlx::query(
                "UPDATE packets SET failed_attempts = 0, last_failed_at = NULL, times_locked = 0,
                     locked_at = NULL, locked_until = NULL
                 WHERE id = ? AND secret_hash = ?",
            )
            .bind(&packet.id)
            .bind(&packet.secret_hash)
            .execute(&mut *tx)
            .await?;
            if current.rows_affected() == 1 {
                let token = random_token(32);
                let at = now();
                sqlx::query("INSERT INTO patient_sessions (token_hash, packet_id, created_at, last_seen) VALUES (?, ?, ?, ?)")
                    .bind(token_hash(&token))
                    .bind(&packet.id)
                    .bind(&at)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.audit("patient", "access.granted", Some(&packet.id), "", ip_prefix)
                    .await?;
                return Ok(Attempt::Opened(token));
            }
            drop(tx);
            // Answered from the packet as it is now: the new PIN cleared its count and lock.
            let now_failed: Option<i64> = sqlx::query_scalar(
                "SELECT failed_attempts FROM packets WHERE id = ? AND (locked_at IS NULL OR locked_until <= ?)",
            )
            .bind(&packet.id)
            .bind(crate::store::stored_time(at))
            .fetch_optional(self.pool())
            .await?;
            self.audit(
                "anonymous",
                "access.failed",
                Some(&packet.id),
                "the PIN of a slip replaced while it was checked",
                ip_prefix,
            )
            .await?;
            return Ok(match now_failed {
                Some(failed) => Attempt::Wrong {
                    left: (MAX_FAILURES - failed).max(1),
                },
                // Locked meanwhile (by another try): for as long as that lock says.
                None => Attempt::Locked {
                    wait: match self.packet(&packet.id).await? {
                        Some(now) => now.lock_at(at).flatten(),
                        None => None,
                    },
                },
            });
        }
        self.audit(
            "anonymous",
            "access.failed",
            Some(&packet.id),
            &format!("attempt {tries} of {MAX_FAILURES}"),
            ip_prefix,
        )
        .await?;
        if tries >= MAX_FAILURES {
            let wait = locked_until
                .as_deref()
                .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
                .and_then(|u| (u.with_timezone(&chrono::Utc) - at).to_std().ok());
            let detail = match wait {
                Some(w) => format!("for {} min", w.as_secs().div_ceil(60)),
                None => String::new(),
            };
            self.audit(
                "system",
                "packet.locked",
                Some(&packet.id),
                &detail,
                ip_prefix,
            )
            .await?;
            return Ok(Attempt::Locked { wait });
        }
        Ok(Attempt::Wrong {
            left: MAX_FAILURES - tries,
        })
    }

    /// The packet a patient session may read, refreshing its idle timer; `None` when the session
    /// does not exist or has been idle longer than `PATIENT_IDLE`.
    pub async fn patient_session(&self, token: &str) -> Result<Option<String>> {
        let before = |age: Duration| {
            (chrono::Utc::now() - chrono::Duration::from_std(age).expect("fits"))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let hash = token_hash(token);
        let packet: Option<String> = sqlx::query_scalar(
            "SELECT packet_id FROM patient_sessions WHERE token_hash = ? AND last_seen > ? AND created_at > ?",
        )
        .bind(&hash)
        .bind(before(PATIENT_IDLE))
        .bind(before(PATIENT_SESSION_MAX))
        .fetch_optional(self.pool())
        .await?;
        if packet.is_some() {
            sqlx::query("UPDATE patient_sessions SET last_seen = ? WHERE token_hash = ?")
                .bind(now())
                .bind(&hash)
                .execute(self.pool())
                .await?;
        }
        Ok(packet)
    }

    pub async fn end_patient_session(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM patient_sessions WHERE token_hash = ?")
            .bind(token_hash(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Unlocks a packet and clears its failures; false when there is no such packet.
    pub async fn reset_packet(&self, packet: &str, by: &str) -> Result<bool> {
        let done =
            sqlx::query("UPDATE packets SET failed_attempts = 0, locked_at = NULL, locked_until = NULL, times_locked = 0, last_failed_at = NULL WHERE id = ?")
                .bind(packet)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 1 {
            self.audit(by, "packet.reset", Some(packet), "", None)
                .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a packet and everything about its patient (name, documents, sessions, the hash), and
    /// retires its code, which then scans to the fallback page. The audit log keeps the packet id and
    /// who deleted it, nothing personal. False when there is no such packet.
    pub async fn delete_packet(&self, packet: &str, by: &str) -> Result<bool> {
        self.remove_packet(
            packet,
            by,
            "packet.deleted",
            "patient data deleted on request",
            None,
        )
        .await
    }

    /// The ids of packets whose retention count started (`PacketRecord::retention_start`) before
    /// `cutoff` (RFC 3339 UTC, compared as text like every stored time): those the retention limit
    /// deletes.
    pub async fn packets_kept_from_before(&self, cutoff: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM packets WHERE COALESCE(kept_from, created_at) < ? ORDER BY created_at",
        )
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?)
    }

    /// Restarts a packet's retention count at `from` (RFC 3339 UTC), audited as `packet.kept` by
    /// `by` with `detail(old start)` (nothing personal). Only when that gives a later last day (never
    /// the same day again, never earlier), and never
    /// brings back a packet whose start is before `past_limit` (its last day has ended everywhere:
    /// the purge is about to delete it, as the patient was told).
    pub async fn keep_packet(
        &self,
        packet: &str,
        from: &str,
        past_limit: &str,
        by: &str,
        detail: impl FnOnce(&str) -> String,
    ) -> Result<Kept> {
        let mut tx = self.pool().begin().await?;
        // A write first, so reading the old start and writing the new one hold the write lock
        // together (two clinicians at once, or the purge).
        let found = sqlx::query("UPDATE packets SET kept_from = kept_from WHERE id = ?")
            .bind(packet)
            .execute(&mut *tx)
            .await?;
        if found.rows_affected() == 0 {
            return Ok(Kept::NoSuchPacket);
        }
        let start: String =
            sqlx::query_scalar("SELECT COALESCE(kept_from, created_at) FROM packets WHERE id = ?")
                .bind(packet)
                .fetch_one(&mut *tx)
                .await?;
        if start.as_str() < past_limit {
            return Ok(Kept::PastItsLimit);
        }
        // The last day counts from the UTC day of the start (the first ten characters of a
        // stored time): a start on the same day or later gives no later last day.
        if start.get(..10) >= from.get(..10) {
            return Ok(Kept::Unchanged);
        }
        sqlx::query("UPDATE packets SET kept_from = ? WHERE id = ?")
            .bind(from)
            .bind(packet)
            .execute(&mut *tx)
            .await?;
        audit_in(
            &mut tx,
            by,
            "packet.kept",
            Some(packet),
            &detail(&start),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(Kept::Kept)
    }

    /// `delete_packet`'s deletion, audited as `action` by `actor` with `detail` (nothing personal).
    /// With `kept_from_before`, only while the packet's retention count still started before that
    /// time: a clinician who keeps it longer between the purge's listing and this deletion wins.
    pub async fn remove_packet(
        &self,
        packet: &str,
        actor: &str,
        action: &str,
        detail: &str,
        kept_from_before: Option<&str>,
    ) -> Result<bool> {
        let Some(record) = self.packet(packet).await? else {
            return Ok(false);
        };
        let mut tx = self.pool().begin().await?;
        if let Some(cutoff) = kept_from_before {
            // A write first, so the check and the deletion hold the store's write lock together.
            let due = sqlx::query(
                "UPDATE packets SET kept_from = kept_from
                 WHERE id = ? AND COALESCE(kept_from, created_at) < ?",
            )
            .bind(packet)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            if due.rows_affected() == 0 {
                return Ok(false);
            }
        }
        for sql in [
            "DELETE FROM patient_sessions WHERE packet_id = ?",
            "DELETE FROM packet_documents WHERE packet_id = ?",
            "DELETE FROM packets WHERE id = ?",
        ] {
            let done = sqlx::query(sql).bind(packet).execute(&mut *tx).await?;
            if sql.starts_with("DELETE FROM packets") && done.rows_affected() == 0 {
                // Deleted meanwhile (a clinician and the retention limit at once): reported and
                // audited once, by whoever deleted it.
                return Ok(false);
            }
        }
        sqlx::query("DELETE FROM patients WHERE id = ?")
            .bind(record.patient_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE codes SET retired_at = ? WHERE code = ?")
            .bind(now())
            .bind(&record.code)
            .execute(&mut *tx)
            .await?;
        audit_in(&mut tx, actor, action, Some(packet), detail, None).await?;
        crate::store::codes_changed_in(&mut tx).await?;
        tx.commit().await?;
        self.forget_resolved();
        Ok(true)
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        packet: Option<&str>,
        detail: &str,
        ip_prefix: Option<&str>,
    ) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        audit_in(&mut conn, actor, action, packet, detail, ip_prefix).await
    }

    /// The newest `limit` audit entries about packets and patients, newest first (not the
    /// administrators' changes to staff accounts: `account_changes`).
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, packet_id, detail, ip_prefix FROM audit_log
             WHERE action NOT LIKE 'account.%' ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// The newest `limit` changes administrators made to staff accounts, newest first.
    pub async fn account_changes(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query_as(
            "SELECT id, at, actor, action, packet_id, detail, ip_prefix FROM audit_log
             WHERE action >= 'account.' AND action < 'account/' ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

/// Writes an audit entry on `conn`: inside a change's own transaction, the change and its entry
/// are stored together or not at all (a change whose entry failed after its commit would report
/// an error to a clinician for a packet that exists, and whose PIN was then never shown).
async fn audit_in(
    conn: &mut sqlx::SqliteConnection,
    actor: &str,
    action: &str,
    packet: Option<&str>,
    detail: &str,
    ip_prefix: Option<&str>,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, packet_id, detail, ip_prefix) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(packet)
        .bind(detail)
        .bind(ip_prefix)
        .execute(conn)
        .await?;
    Ok(())
}

/// The demo packets' ward (fictional, in the reserved 555-01xx range).
const DEMO_CONTACT: &str = "Ward 4B, (555) 010-4400";

/// The three demo patients: name, date of birth, language, the bundled leaflet their packet starts
/// from, and the personal note a clinician would add.
const DEMO: &[(&str, &str, &str, &str, &str)] = &[
    (
        "Ana García",
        "1958-03-14",
        "es",
        "rodilla-regreso-a-casa-es",
        "## Sus indicaciones personales\n\nOperada de prótesis de rodilla derecha. Revisión en la consulta de traumatología el día 10 tras el alta. Camine con el andador 5 minutos cada hora mientras esté despierta. Tome el anticoagulante cada noche a las 21:00 durante 28 días.\n",
    ),
    (
        "John Miller",
        "1949-11-02",
        "en",
        "heart-failure-daily-care",
        "## Your personal plan\n\nWeigh yourself every morning before breakfast. Your dry weight at discharge was 82.4 kg: call the heart failure nurse if you gain more than 1 kg in a day or 2 kg in a week. Keep fluids to 1.5 litres a day. Your follow-up appointment is with the heart failure clinic in 7 days.\n",
    ),
    (
        "Lily Chen",
        "2017-06-21",
        "en",
        "child-asthma-action-plan",
        "## Lily's personal plan\n\nGreen zone: preventer inhaler, 2 puffs morning and evening with the spacer. Yellow zone: reliever inhaler, 4 puffs every 4 hours and call the asthma nurse the same day. Red zone: reliever 10 puffs and call emergency services.\n",
    ),
];

/// On a store's first start (no packets, and never seeded: `store_marks`), creates the demo patients' packets from the bundled leaflets in
/// `manuals_dir/patient` and writes their codes and second factors to `data_dir/DEMO_FILE` (mode
/// 0600). Returns the file written and how many packets it lists, when any were made.
pub async fn seed_demo_packets(
    store: &Store,
    manuals_dir: &Path,
    data_dir: &Path,
    public_url: &str,
) -> Result<Option<(PathBuf, usize)>> {
    // Once per store: the mark is set whether or not the demo packets were made (a store with
    // packets of its own gets none), and never taken back.
    let first_time = sqlx::query(
        "INSERT INTO store_marks (name, at)
         SELECT 'demo_packets', ? WHERE NOT EXISTS (SELECT 1 FROM packets)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(now())
    .execute(store.pool())
    .await?
    .rows_affected()
        == 1;
    sqlx::query("INSERT INTO store_marks (name, at) VALUES ('demo_packets', ?) ON CONFLICT (name) DO NOTHING")
        .bind(now())
        .execute(store.pool())
        .await?;
    if !first_time {
        return Ok(None);
    }
    let mut lines = vec![
        "# Demo discharge packets: scan the URL, then enter the date of birth and PIN.".to_string(),
        "# Fictional patients. Keep this file private; it is not shown anywhere else.".to_string(),
    ];
    for (name, dob, language, template, note) in DEMO {
        let path = manuals_dir.join("patient").join(format!("{template}.md"));
        let Ok(bytes) = std::fs::read(&path) else {
            tracing::warn!(path = %path.display(), "demo packet template missing; skipped");
            continue;
        };
        // A broken leaflet is skipped, as the index build skips it: it must not stop the start.
        let leaflet = match scanaid_indexer::manual::parse_manual(&path, &bytes) {
            Ok(leaflet) => leaflet,
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "demo packet template unusable; skipped");
                continue;
            }
        };
        let created = store
            .create_packet(&NewPacket {
                patient_name: name.to_string(),
                dob: dob.to_string(),
                language: language.to_string(),
                documents: vec![
                    NewDocument {
                        title: if *language == "es" {
                            "Indicaciones de su equipo".to_string()
                        } else {
                            "From your care team".to_string()
                        },
                        markdown: note.to_string(),
                        template: None,
                    },
                    NewDocument {
                        title: leaflet.meta.title.clone(),
                        markdown: leaflet.body.clone(),
                        template: Some(leaflet.meta.id.clone()),
                    },
                ],
                created_by: "demo".to_string(),
                contact: DEMO_CONTACT.to_string(),
            })
            .await?;
        lines.push(format!(
            "{name}: {}/c/{}  date of birth {dob}  PIN {}  ({language})",
            public_url.trim_end_matches('/'),
            created.code,
            created.pin
        ));
    }
    let made = lines.len() - 2;
    if made == 0 {
        return Ok(None);
    }
    let file = data_dir.join(DEMO_FILE);
    write_private(&file, &(lines.join("\n") + "\n")).map_err(|source| ServerError::Io {
        path: file.clone(),
        source,
    })?;
    Ok(Some((file, made)))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_and_pins_are_six_digits() {
        let code = new_packet_code();
        assert_eq!(code.len(), PACKET_CODE_LEN);
        assert!(crate::registry::is_well_formed_code(&code));
        // 57^23 > 2^128.
        assert!(23.0 * 57f64.log2() > 128.0);
        assert!(normalise_pin(&new_pin()).is_some());
    }

    #[test]
    fn dates_and_pins_are_read_as_people_type_them() {
        assert_eq!(normalise_dob("1958-03-14").as_deref(), Some("1958-03-14"));
        assert_eq!(normalise_dob(" 14/03/1958 ").as_deref(), Some("1958-03-14"));
        assert_eq!(normalise_dob("1958-02-30"), None);
        // Day or month first? Not guessed: asked again.
        assert!(dob_is_ambiguous("02/11/1949"));
        assert_eq!(normalise_dob("02/11/1949"), None);
        assert_eq!(normalise_dob("11/11/1949").as_deref(), Some("1949-11-11"));
        assert!(!dob_is_ambiguous("1949-11-02"));
        assert_eq!(normalise_dob("yesterday"), None);
        // Two-digit (or shorter) years are not read as the years 58 or 5.
        assert_eq!(normalise_dob("14/03/58"), None);
        assert_eq!(normalise_dob("0058-03-14"), None);
        assert_eq!(normalise_dob("14/03/5"), None);
        assert_eq!(normalise_dob("1899-12-31"), None);
        assert_eq!(normalise_dob("1900-01-01").as_deref(), Some("1900-01-01"));
        assert_eq!(normalise_pin("123 456").as_deref(), Some("123456"));
        assert_eq!(normalise_pin("12345"), None);
        assert_eq!(normalise_pin("12345a"), None);
    }

    #[tokio::test]
    async fn an_old_slip_checked_while_a_new_pin_is_issued_opens_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let created = store
            .create_packet(&NewPacket {
                patient_name: "Test Patient".to_string(),
                dob: "1958-03-14".to_string(),
                language: "en".to_string(),
                documents: vec![NewDocument {
                    title: "Going home".to_string(),
                    markdown: "# Going home\n\nRest.".to_string(),
                    template: None,
                }],
                created_by: "nurse".to_string(),
                contact: "Ward 4B, (555) 010-4400".to_string(),
            })
            .await
            .unwrap();
        // The sign-in read the packet (and its hash) before the new PIN was issued...
        let read_before = store.packet(&created.packet_id).await.unwrap().unwrap();
        let new_pin = store
            .issue_new_pin(
                &created.packet_id,
                "1958-03-14",
                "nurse",
                &read_before.secret_hash,
            )
            .await
            .unwrap()
            .unwrap();
        // ...so its check of the old PIN succeeds against what it read, yet opens nothing.
        let old = store
            .try_packet(&read_before, "1958-03-14", &created.pin, None)
            .await
            .unwrap();
        assert_eq!(
            old,
            Attempt::Wrong {
                left: MAX_FAILURES - 1
            }
        );
        let sessions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patient_sessions")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sessions, 0);
        // The new slip opens it, and the try the old slip cost is taken back.
        let current = store.packet(&created.packet_id).await.unwrap().unwrap();
        assert!(matches!(
            store
                .try_packet(&current, "1958-03-14", &new_pin, None)
                .await
                .unwrap(),
            Attempt::Opened(_)
        ));
        let after = store.packet(&created.packet_id).await.unwrap().unwrap();
        assert_eq!(after.failed_attempts, 0);
        store.close().await;
    }
}
