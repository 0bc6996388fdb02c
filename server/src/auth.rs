//! Staff sign-in: argon2id password hashes, sessions in the store (only a hash of the cookie's token is
//! kept), CSRF tokens for forms. The limits on failed sign-ins are in `signin_limits`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::roles::Role;
use crate::store::Store;

pub const SESSION_COOKIE: &str = "scanaid_session";
/// Double-submit cookie protecting the sign-in form, which has no session yet.
pub const SIGNIN_CSRF_COOKIE: &str = "scanaid_csrf";
/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

/// argon2 (about 19 MiB and tens of milliseconds per hash) runs at most this many at a time, one
/// per core: a burst of sign-ins or PIN tries waits here, holding no thread, instead of filling the
/// blocking pool (and gigabytes of memory) and starving the chat, which runs on the same pool.
static PASSWORD_WORK: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    });

/// Runs password hashing or checking off the async workers, a bounded number at a time.
pub async fn password_work<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let _slot = PASSWORD_WORK
        .acquire()
        .await
        .expect("the password work semaphore is never closed");
    Ok(tokio::task::spawn_blocking(work).await?)
}

pub fn hash_password(password: &str) -> String {
    use rand::RngCore;
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// 256 random bits as hex: session tokens, CSRF tokens, demo passwords.
pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The CSRF token of a session's forms: derived from the session token, so nothing more is stored and
/// a page from another origin cannot know it.
/// Whether a presented secret equals the expected one, comparing their SHA-256 digests: how long the
/// comparison takes says nothing about the secret itself.
pub fn same_secret(expected: &[u8], given: &[u8]) -> bool {
    Sha256::digest(expected) == Sha256::digest(given)
}

pub fn csrf_for_session(session_token: &str) -> String {
    hex::encode(&Sha256::digest(format!("csrf:{session_token}").as_bytes())[..16])
}

/// Constant-time comparison of two tokens.
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub csrf: String,
}

/// How stale a session's `last_seen` may be before a request refreshes it: the idle limit is hours,
/// so a minute's precision costs nothing, and most signed-in requests (every scan, every page)
/// then write nothing.
const LAST_SEEN_PRECISION: chrono::Duration = chrono::Duration::seconds(60);

/// Looks up the session behind a cookie token and refreshes its idle timer (at most once a
/// minute, and only as well as the store allows: a busy store does not fail the request).
pub async fn session_user(store: &Store, token: &str) -> Result<Option<SignedIn>> {
    let Some((user, last_seen)) = session_row(store, token).await? else {
        return Ok(None);
    };
    let now = chrono::Utc::now();
    let fresh = chrono::DateTime::parse_from_rfc3339(&last_seen)
        .is_ok_and(|seen| now.signed_duration_since(seen) < LAST_SEEN_PRECISION);
    if !fresh {
        let refreshed = sqlx::query("UPDATE sessions SET last_seen = ? WHERE token_hash = ?")
            .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .bind(token_hash(token))
            .execute(store.pool())
            .await;
        if let Err(error) = refreshed {
            tracing::warn!(%error, "refreshing a session's idle timer; the next request will");
        }
    }
    Ok(Some(user))
}

/// The user behind a session that has not been signed out, ended or left idle too long, without
/// refreshing its idle timer: what a long-lived stream checks, since a console left open is not
/// someone at work.
pub async fn live_session(store: &Store, token: &str) -> Result<Option<SignedIn>> {
    Ok(session_row(store, token).await?.map(|(user, _)| user))
}

/// A live session's user and when it was last seen.
async fn session_row(store: &Store, token: &str) -> Result<Option<(SignedIn, String)>> {
    let cutoff = (chrono::Utc::now() - chrono::Duration::from_std(SESSION_IDLE).expect("fits"))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let row: Option<(i64, String, String, String)> = sqlx::query_as(
        "SELECT u.id, u.username, u.role, s.last_seen FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ? AND s.last_seen > ?",
    )
    .bind(token_hash(token))
    .bind(&cutoff)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|(user_id, username, role, last_seen)| {
        (
            SignedIn {
                user_id,
                username,
                role: role.parse().unwrap_or(Role::Anonymous),
                csrf: csrf_for_session(token),
            },
            last_seen,
        )
    }))
}

/// Checks a password and opens a session; returns the cookie token.
pub async fn sign_in(store: &Store, username: &str, password: &str) -> Result<Option<String>> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(store.pool())
            .await?;
    // Verify against a dummy hash for unknown users so timing does not tell which usernames exist.
    let (user_id, hash) = match row {
        Some((id, hash)) => (id, Some(hash)),
        None => (-1, None),
    };
    let password = password.to_string();
    let checked = hash.clone().unwrap_or_default();
    let ok =
        password_work(move || verify_password(&password, &hash.unwrap_or_else(dummy_hash))).await?;
    if !ok || user_id < 0 {
        return Ok(None);
    }
    let token = random_token(32);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    // Only while the password checked is still theirs: one reset or changed during the argon2
    // work (whose transaction ends every session) must not be outlived by a session it opened.
    let opened = sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, created_at, last_seen)
         SELECT ?, id, ?, ? FROM users WHERE id = ? AND password_hash = ?",
    )
    .bind(token_hash(&token))
    .bind(&now)
    .bind(&now)
    .bind(user_id)
    .bind(&checked)
    .execute(store.pool())
    .await?;
    Ok((opened.rows_affected() == 1).then_some(token))
}

/// Whether user `username` has a live session (signed in, not idle past `SESSION_IDLE`) at `now`:
/// someone at work, who can answer the tickets they hold.
pub async fn has_live_session(
    store: &Store,
    username: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let cutoff = (now - chrono::Duration::from_std(SESSION_IDLE).expect("fits"))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
                        WHERE u.username = ? AND s.last_seen > ?)",
    )
    .bind(username)
    .bind(cutoff)
    .fetch_one(store.pool())
    .await?)
}

pub async fn sign_out(store: &Store, token: &str) -> Result<()> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
        .bind(token_hash(token))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Creates a staff user. Returns false when the username is taken.
pub async fn create_user(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<bool> {
    let password = password.to_string();
    let hash = password_work(move || hash_password(&password)).await?;
    let done = sqlx::query(
        "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(username) DO NOTHING",
    )
    .bind(username)
    .bind(hash)
    .bind(role.as_str())
    .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces `username`'s password with `new` when `current` is right (false, and nothing
/// changes, when it is not). Every other session of the user ends: whoever knew the old password
/// is signed out; `keep_token`'s session, the one asking, stays.
pub async fn change_password(
    store: &Store,
    username: &str,
    current: &str,
    new: &str,
    keep_token: &str,
) -> Result<bool> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(store.pool())
            .await?;
    let Some((user_id, hash)) = row else {
        return Ok(false);
    };
    let (current, new) = (current.to_string(), new.to_string());
    let checked = hash.clone();
    let new_hash =
        password_work(move || verify_password(&current, &hash).then(|| hash_password(&new)))
            .await?;
    let Some(new_hash) = new_hash else {
        return Ok(false);
    };
    let mut tx = store.pool().begin().await?;
    // Only over the password that was checked: an administrator's reset meanwhile wins.
    let changed =
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?")
            .bind(new_hash)
            .bind(user_id)
            .bind(&checked)
            .execute(&mut *tx)
            .await?;
    if changed.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM sessions WHERE user_id = ? AND token_hash != ?")
        .bind(user_id)
        .bind(token_hash(keep_token))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Gives `username` a new random password, without the current one (an administrator's reset,
/// or `scanaid users reset-password` for a sole administrator locked out), ends every session
/// they have and lifts a sign-in lock. The password to hand over, once; `None`: no such user.
pub async fn reset_password(store: &Store, username: &str) -> Result<Option<String>> {
    let password = random_token(9);
    let hash = {
        let password = password.clone();
        password_work(move || hash_password(&password)).await?
    };
    let mut tx = store.pool().begin().await?;
    let changed = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
        .bind(hash)
        .bind(username)
        .execute(&mut *tx)
        .await?;
    if changed.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = ?)")
        .bind(username)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    crate::signin_limits::PER_ACCOUNT
        .record_success(store, &format!("user:{username}"))
        .await?;
    crate::signin_devices::clear_device_locks(store, username).await?;
    Ok(Some(password))
}

/// Changes a staff user's role. Their sessions stay: every request reads the role afresh.
/// False when there is no such user.
pub async fn set_role(store: &Store, username: &str, role: Role) -> Result<bool> {
    let changed = sqlx::query("UPDATE users SET role = ? WHERE username = ?")
        .bind(role.as_str())
        .bind(username)
        .execute(store.pool())
        .await?;
    Ok(changed.rows_affected() == 1)
}

/// Deletes `username` and ends their sessions; false when there is no such user.
pub async fn remove_user(store: &Store, username: &str) -> Result<bool> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE username = ?)")
        .bind(username)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM users WHERE username = ?")
        .bind(username)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Every staff account as (id, username, role, created at), by username.
pub async fn list_users(store: &Store) -> Result<Vec<(i64, String, String, String)>> {
    Ok(
        sqlx::query_as("SELECT id, username, role, created_at FROM users ORDER BY username")
            .fetch_all(store.pool())
            .await?,
    )
}

pub async fn count_users(store: &Store) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(store.pool())
        .await?;
    Ok(n)
}

/// A real argon2id hash of a random password nobody knows, made once.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token(16)))
        .clone()
}

/// Events per key within a window, in memory: after `max_failures` within `window` the key is locked
/// for `lockout`. The chat's rate limits use it, where a restart forgetting costs nothing; sign-in
/// failures are counted in the store instead (`signin_limits`), shared by every replica.
pub struct AttemptLimiter {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    state: Mutex<HashMap<String, Attempts>>,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl AttemptLimiter {
    pub fn new(max_failures: u32, window: Duration, lockout: Duration) -> Self {
        Self {
            max_failures,
            window,
            lockout,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// How long the key stays locked, if it is.
    pub fn locked_for(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let state = self.state.lock().expect("limiter lock");
        state
            .get(key)
            .and_then(|a| a.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    pub fn record_failure(&self, key: &str) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("limiter lock");
        if state.len() > 100_000 {
            // Bounded memory under a flood of distinct keys: forget entries that no longer matter.
            state.retain(|_, a| {
                a.locked_until.is_some_and(|u| u > now) || now - a.first < self.window
            });
        }
        let entry = state.entry(key.to_string()).or_insert(Attempts {
            failures: 0,
            first: now,
            locked_until: None,
        });
        if now - entry.first > self.window || entry.locked_until.is_some_and(|u| u <= now) {
            *entry = Attempts {
                failures: 0,
                first: now,
                locked_until: None,
            };
        }
        entry.failures += 1;
        if entry.failures >= self.max_failures {
            entry.locked_until = Some(now + self.lockout);
        }
    }

    pub fn record_success(&self, key: &str) {
        self.state.lock().expect("limiter lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn the_limiter_locks_after_the_limit_and_success_clears_it() {
        let limiter = AttemptLimiter::new(3, Duration::from_secs(60), Duration::from_secs(60));
        for _ in 0..2 {
            limiter.record_failure("alice");
        }
        assert!(limiter.locked_for("alice").is_none());
        limiter.record_failure("alice");
        assert!(limiter.locked_for("alice").is_some());
        assert!(limiter.locked_for("bob").is_none());
        limiter.record_success("alice");
        assert!(limiter.locked_for("alice").is_none());
    }

    #[test]
    fn token_comparison() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("", ""));
        assert_eq!(csrf_for_session("t1"), csrf_for_session("t1"));
        assert_ne!(csrf_for_session("t1"), csrf_for_session("t2"));
    }
}
