//! Limits on failed sign-ins (staff passwords, patient PINs), counted in the store rather than in
//! memory: every server replica on one store sees the same failures, so spreading guesses over
//! replicas gains nothing, and a restart does not lift a lockout early.
//!
//! A key (an account, a client address prefix) that fails `max_failures` times within `window` is
//! locked for `lockout`; a failure while locked extends the lock. Only a SHA-256 of the scope and
//! key is kept: what was typed into a username field is sometimes a password.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::store::Store;

#[derive(Debug, Clone, Copy)]
pub struct SigninLimit {
    /// Keeps the limits apart in the one table: the same key under two limits is two rows.
    scope: &'static str,
    max_failures: u32,
    window: Duration,
    lockout: Duration,
}

/// Five wrong passwords for one account in 15 minutes lock it for 15 minutes.
pub const PER_ACCOUNT: SigninLimit = SigninLimit::new("account", 5, 15 * 60, 15 * 60);
/// Per client address prefix, for staff sign-ins: higher, since a ward or a plant shares one
/// address.
pub const PER_CLIENT: SigninLimit = SigninLimit::new("client", 30, 15 * 60, 15 * 60);
/// Per client address prefix, for patients: tries on 10 different packets in 15 minutes that did
/// not open them lock the address for 15 minutes. Each packet locks itself after its own five wrong
/// tries, so a packet counts here once however often it is tried, and not at all once it opens: a
/// patient's typos, or someone holding one label, never lock everyone behind a ward's or a
/// hospital's shared address out of their papers.
pub const PER_CLIENT_PACKETS: SigninLimit =
    SigninLimit::new("client-packets", 10, 15 * 60, 15 * 60);
/// Which packets a client has tried within the window (never locks anything).
const CLIENT_PACKET_TRIED: SigninLimit = SigninLimit::new("client-packet", u32::MAX, 15 * 60, 0);

fn client_packet_key(client: &str, packet: &str) -> String {
    format!("{client}\0{packet}")
}

/// Counts a PIN try on `packet` from `client` against `PER_CLIENT_PACKETS` before it is checked
/// (as `count_attempt`: a burst over many packets cannot pass the limit while the first checks
/// run), once per packet per window. Returns how long the client is locked when this try is past
/// the limit, and then it must not be checked.
pub async fn count_packet_attempt(
    store: &Store,
    client: &str,
    packet: &str,
    now: DateTime<Utc>,
) -> Result<Option<Duration>> {
    let tries_on_this_packet = CLIENT_PACKET_TRIED
        .count(store, &client_packet_key(client, packet), now)
        .await?;
    if tries_on_this_packet > 1 {
        return Ok(None);
    }
    PER_CLIENT_PACKETS.count_attempt(store, client, now).await
}

/// The right PIN for `packet`: it no longer counts against `client` (earlier typos on it included).
pub async fn packet_opened(store: &Store, client: &str, packet: &str) -> Result<()> {
    let forgotten = sqlx::query("DELETE FROM signin_attempts WHERE key_hash = ?")
        .bind(CLIENT_PACKET_TRIED.key_hash(&client_packet_key(client, packet)))
        .execute(store.pool())
        .await?
        .rows_affected();
    if forgotten > 0 {
        PER_CLIENT_PACKETS.take_back(store, client).await?;
    }
    Ok(())
}

/// Whether the row being updated counts afresh from this failure: its lockout has ended, or it
/// is not locked and its window has passed (?2 is now, ?3 the window, both in ms).
const STARTS_OVER: &str = "(signin_attempts.locked_until_ms <= ?2
     OR (signin_attempts.locked_until_ms IS NULL AND signin_attempts.window_start_ms + ?3 <= ?2))";

/// Counts a failure for key ?1 at ?2 with window ?3 and returns the count.
static FAILURE_UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO signin_attempts (key_hash, failures, window_start_ms, locked_until_ms, expires_ms)
         VALUES (?1, 1, ?2, NULL, ?2 + ?3)
         ON CONFLICT (key_hash) DO UPDATE SET
           failures = CASE WHEN {STARTS_OVER} THEN 1 ELSE signin_attempts.failures + 1 END,
           window_start_ms = CASE WHEN {STARTS_OVER} THEN ?2 ELSE signin_attempts.window_start_ms END,
           locked_until_ms = CASE WHEN {STARTS_OVER} THEN NULL ELSE signin_attempts.locked_until_ms END,
           expires_ms = CASE WHEN {STARTS_OVER} THEN ?2 + ?3 ELSE signin_attempts.expires_ms END
         RETURNING failures"
    )
});

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl SigninLimit {
    pub const fn new(
        scope: &'static str,
        max_failures: u32,
        window_secs: u64,
        lockout_secs: u64,
    ) -> Self {
        Self {
            scope,
            max_failures,
            window: Duration::from_secs(window_secs),
            lockout: Duration::from_secs(lockout_secs),
        }
    }

    fn key_hash(&self, key: &str) -> String {
        crate::auth::token_hash(&format!("{}\0{key}", self.scope))
    }

    /// How much longer `key` stays locked, if it is locked at `now`.
    pub async fn locked_for(
        &self,
        store: &Store,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>> {
        let now_ms = millis(now);
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT locked_until_ms FROM signin_attempts WHERE key_hash = ? AND locked_until_ms > ?",
        )
        .bind(self.key_hash(key))
        .bind(now_ms)
        .fetch_optional(store.pool())
        .await?;
        Ok(until.map(|until| Duration::from_millis((until - now_ms) as u64)))
    }

    /// Counts one failure for `key` at `now`; returns how long the key is now locked, if it is.
    pub async fn record_failure(
        &self,
        store: &Store,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>> {
        let failures = self.count(store, key, now).await?;
        Ok((failures >= i64::from(self.max_failures)).then_some(self.lockout))
    }

    /// Counts an attempt as a failure *before* it is checked, so a burst of guesses sent at once
    /// cannot all pass the lock check while the first of them are still being checked: at most
    /// `max_failures` attempts per window are ever checked. Returns how long the key is locked when
    /// this attempt is past the limit, and then it must not be checked. A right attempt takes its
    /// count back with `record_success` (forgetting every failure) or `take_back` (only its own).
    pub async fn count_attempt(
        &self,
        store: &Store,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>> {
        let failures = self.count(store, key, now).await?;
        Ok((failures > i64::from(self.max_failures)).then_some(self.lockout))
    }

    /// Takes back one attempt `count_attempt` counted, which turned out right; lifts the lock it
    /// set when it was the one that reached the limit.
    pub async fn take_back(&self, store: &Store, key: &str) -> Result<()> {
        sqlx::query(
            "UPDATE signin_attempts SET failures = failures - 1,
               locked_until_ms = CASE WHEN failures - 1 < ?2 THEN NULL ELSE locked_until_ms END
             WHERE key_hash = ?1 AND failures > 0",
        )
        .bind(self.key_hash(key))
        .bind(i64::from(self.max_failures))
        .execute(store.pool())
        .await?;
        Ok(())
    }

    /// Counts one failure and locks the key when it reaches the limit; returns the count.
    async fn count(&self, store: &Store, key: &str, now: DateTime<Utc>) -> Result<i64> {
        let hash = self.key_hash(key);
        let now_ms = millis(now);
        let window_ms = duration_ms(self.window);
        // One statement, so replicas counting the same key at once never lose a failure.
        let failures: i64 = sqlx::query_scalar(&FAILURE_UPSERT)
            .bind(&hash)
            .bind(now_ms)
            .bind(window_ms)
            .fetch_one(store.pool())
            .await?;
        if failures < i64::from(self.max_failures) {
            return Ok(failures);
        }
        // Setting the lock twice (two replicas reaching the limit together) only moves its end by
        // the time between them.
        let until_ms = now_ms.saturating_add(duration_ms(self.lockout));
        sqlx::query(
            "UPDATE signin_attempts SET locked_until_ms = ?2,
               expires_ms = CASE WHEN expires_ms > ?2 THEN expires_ms ELSE ?2 END
             WHERE key_hash = ?1",
        )
        .bind(&hash)
        .bind(until_ms)
        .execute(store.pool())
        .await?;
        Ok(failures)
    }

    /// A success forgets the key's failures.
    pub async fn record_success(&self, store: &Store, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM signin_attempts WHERE key_hash = ?")
            .bind(self.key_hash(key))
            .execute(store.pool())
            .await?;
        Ok(())
    }
}

/// Deletes the rows that no longer count (window and lockout both over); returns how many.
pub async fn purge_expired(store: &Store, now: DateTime<Utc>) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM signin_attempts WHERE expires_ms <= ?")
            .bind(millis(now))
            .execute(store.pool())
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::open(dir.path()).await.unwrap(), dir)
    }

    const LIMIT: SigninLimit = SigninLimit::new("test", 3, 60, 120);

    #[tokio::test]
    async fn locks_at_the_limit_for_the_lockout_and_success_clears_it() {
        let (store, _dir) = store().await;
        assert_eq!(
            LIMIT.record_failure(&store, "alice", at(0)).await.unwrap(),
            None
        );
        assert_eq!(
            LIMIT.record_failure(&store, "alice", at(1)).await.unwrap(),
            None
        );
        assert_eq!(
            LIMIT.locked_for(&store, "alice", at(2)).await.unwrap(),
            None
        );
        assert_eq!(
            LIMIT.record_failure(&store, "alice", at(2)).await.unwrap(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            LIMIT.locked_for(&store, "alice", at(12)).await.unwrap(),
            Some(Duration::from_secs(110))
        );
        assert_eq!(LIMIT.locked_for(&store, "bob", at(12)).await.unwrap(), None);
        // Another scope's limit on the same key is separate.
        let other = SigninLimit::new("other", 3, 60, 120);
        assert_eq!(
            other.locked_for(&store, "alice", at(12)).await.unwrap(),
            None
        );
        // The lock ends on time.
        assert_eq!(
            LIMIT.locked_for(&store, "alice", at(122)).await.unwrap(),
            None
        );
        LIMIT.record_failure(&store, "bob", at(0)).await.unwrap();
        LIMIT.record_success(&store, "bob").await.unwrap();
        assert_eq!(
            LIMIT.record_failure(&store, "bob", at(1)).await.unwrap(),
            None
        );
        assert_eq!(
            LIMIT.record_failure(&store, "bob", at(2)).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn attempts_counted_before_their_check_refuse_past_the_limit_and_a_right_one_is_taken_back(
    ) {
        let (store, _dir) = store().await;
        // LIMIT allows 3: those three are checked, a fourth at once is not.
        for second in 0..3 {
            assert_eq!(
                LIMIT
                    .count_attempt(&store, "ward", at(second))
                    .await
                    .unwrap(),
                None
            );
        }
        assert_eq!(
            LIMIT.count_attempt(&store, "ward", at(3)).await.unwrap(),
            Some(LIMIT.lockout)
        );
        assert!(LIMIT
            .locked_for(&store, "ward", at(4))
            .await
            .unwrap()
            .is_some());

        // Two attempts; the second, which reached the limit and set the lock, was right.
        let (store, _dir) = self::store().await;
        for second in 0..2 {
            LIMIT
                .count_attempt(&store, "desk", at(second))
                .await
                .unwrap();
        }
        assert!(LIMIT
            .locked_for(&store, "desk", at(2))
            .await
            .unwrap()
            .is_none());
        LIMIT.count_attempt(&store, "desk", at(2)).await.unwrap();
        assert!(LIMIT
            .locked_for(&store, "desk", at(2))
            .await
            .unwrap()
            .is_some());
        LIMIT.take_back(&store, "desk").await.unwrap();
        assert!(LIMIT
            .locked_for(&store, "desk", at(3))
            .await
            .unwrap()
            .is_none());
        // Its own count only: the next attempt is the third again, checked and locking.
        assert_eq!(
            LIMIT.count_attempt(&store, "desk", at(4)).await.unwrap(),
            None
        );
        assert!(LIMIT
            .locked_for(&store, "desk", at(5))
            .await
            .unwrap()
            .is_some());
        // Taking back a key with no row changes nothing.
        LIMIT.take_back(&store, "nobody").await.unwrap();
    }

    #[tokio::test]
    async fn failures_outside_the_window_start_over() {
        let (store, _dir) = store().await;
        LIMIT.record_failure(&store, "k", at(0)).await.unwrap();
        LIMIT.record_failure(&store, "k", at(30)).await.unwrap();
        // 60 s after the first failure the window is over: this is the first of a new window.
        assert_eq!(
            LIMIT.record_failure(&store, "k", at(60)).await.unwrap(),
            None
        );
        assert_eq!(
            LIMIT.record_failure(&store, "k", at(61)).await.unwrap(),
            None
        );
        assert!(LIMIT
            .record_failure(&store, "k", at(62))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_failure_while_locked_extends_the_lock_and_one_after_it_starts_over() {
        let (store, _dir) = store().await;
        for s in 0..3 {
            LIMIT.record_failure(&store, "k", at(s)).await.unwrap();
        }
        // Locked until 122; a failure at 100 moves the end to 220.
        assert!(LIMIT
            .record_failure(&store, "k", at(100))
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            LIMIT.locked_for(&store, "k", at(200)).await.unwrap(),
            Some(Duration::from_secs(20))
        );
        // After the lock a failure counts from one again.
        assert_eq!(
            LIMIT.record_failure(&store, "k", at(230)).await.unwrap(),
            None
        );
        assert_eq!(LIMIT.locked_for(&store, "k", at(231)).await.unwrap(), None);
    }

    #[tokio::test]
    async fn keys_are_kept_only_as_hashes_and_expired_rows_are_purged() {
        let (store, _dir) = store().await;
        LIMIT
            .record_failure(&store, "typed-a-password-here", at(0))
            .await
            .unwrap();
        for s in 0..3 {
            LIMIT.record_failure(&store, "locked", at(s)).await.unwrap();
        }
        let keys: Vec<String> = sqlx::query_scalar("SELECT key_hash FROM signin_attempts")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys
            .iter()
            .all(|k| k.len() == 64 && !k.contains("password")));
        // At 61 s the first row's window is over; the locked one lasts until 122 s.
        assert_eq!(purge_expired(&store, at(61)).await.unwrap(), 1);
        assert!(LIMIT
            .locked_for(&store, "locked", at(61))
            .await
            .unwrap()
            .is_some());
        assert_eq!(purge_expired(&store, at(122)).await.unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_failures_from_two_stores_on_one_file_are_all_counted() {
        let (first, dir) = store().await;
        let second = Store::open(dir.path()).await.unwrap();
        let limit = SigninLimit::new("test", 1_000, 60, 60);
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tasks.push(tokio::spawn(async move {
                limit.record_failure(&store, "k", at(1)).await.unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), None);
        }
        let failures: i64 = sqlx::query_scalar("SELECT failures FROM signin_attempts")
            .fetch_one(first.pool())
            .await
            .unwrap();
        assert_eq!(failures, 40);
    }
}
