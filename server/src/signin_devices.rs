//! Device cookies for staff sign-in (OWASP, "Slow down online guessing attacks with device
//! cookies"): a browser that signed in to an account before carries a random token for it, and a
//! sign-in from that browser is counted apart. Strangers guessing at the account, or everyone behind
//! the ward's shared address, then cannot lock its owner out, while guesses from anywhere else stay
//! limited as before. The cookie opens nothing by itself: the password is always checked.

use chrono::{DateTime, Utc};

use crate::auth::{random_token, token_hash};
use crate::error::Result;
use crate::store::Store;

/// The cookie's path: it is sent only to the sign-in page.
pub const DEVICE_COOKIE_PATH: &str = "/signin";

/// The cookie for `username`'s device token: one per account, so on a ward PC where several
/// people sign in, each keeps their own (one shared name would keep only the last person's).
pub fn device_cookie_name(username: &str) -> String {
    let hash = token_hash(username);
    format!("scanaid_device_{}", &hash[..12.min(hash.len())])
}

/// The key a known device's failures count under (`signin_limits::PER_ACCOUNT`).
pub fn device_account_key(username: &str, device_hash: &str) -> String {
    format!("user:{username}:device:{device_hash}")
}
/// How long a browser stays known without signing in again.
pub const DEVICE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Whether `token` is a live device cookie of `username`'s; its hash, which names it.
pub async fn known_device(
    store: &Store,
    username: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let hash = token_hash(token);
    let known: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM signin_devices d JOIN users u ON u.id = d.user_id
         WHERE d.token_hash = ? AND u.username = ? AND d.expires_ms > ?",
    )
    .bind(&hash)
    .bind(username)
    .bind(now.timestamp_millis())
    .fetch_optional(store.pool())
    .await?;
    Ok(known.map(|_| hash))
}

/// A new device cookie for `username`, after a right password; its value to set.
pub async fn remember_device(store: &Store, username: &str, now: DateTime<Utc>) -> Result<String> {
    let token = random_token(32);
    let lifetime = i64::try_from(DEVICE_LIFETIME.as_millis()).unwrap_or(i64::MAX / 4);
    sqlx::query(
        "INSERT INTO signin_devices (token_hash, user_id, created_at, expires_ms)
         SELECT ?, id, ?, ? FROM users WHERE username = ?",
    )
    .bind(token_hash(&token))
    .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    .bind(now.timestamp_millis().saturating_add(lifetime))
    .bind(username)
    .execute(store.pool())
    .await?;
    Ok(token)
}

/// Forgets a device: its tries count as any stranger's again. Done when it reaches its own lockout
/// (a copied cookie must not be a source of fresh guesses, lockout after lockout).
pub async fn forget_device(store: &Store, device_hash: &str) -> Result<()> {
    sqlx::query("DELETE FROM signin_devices WHERE token_hash = ?")
        .bind(device_hash)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Lifts the lockouts of `username`'s known devices (an admin's Unlock, a password reset), as the
/// account-wide one is lifted.
pub async fn clear_device_locks(store: &Store, username: &str) -> Result<()> {
    let devices: Vec<String> = sqlx::query_scalar(
        "SELECT d.token_hash FROM signin_devices d JOIN users u ON u.id = d.user_id WHERE u.username = ?",
    )
    .bind(username)
    .fetch_all(store.pool())
    .await?;
    for device in devices {
        crate::signin_limits::PER_ACCOUNT
            .record_success(store, &device_account_key(username, &device))
            .await?;
    }
    Ok(())
}

/// Deletes expired device cookies; returns how many.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM signin_devices WHERE expires_ms <= ?")
            .bind(now.timestamp_millis())
            .execute(store.pool())
            .await?
            .rows_affected(),
    )
}
