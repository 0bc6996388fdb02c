//! Which support queues an agent works. A hospital's biomedical engineers and its facilities team
//! answer different people: each sees only their own queues' tickets in the console, on ticket
//! pages and in the live stream. An agent given no queue works every queue (a small site with one
//! team needs no set-up); administrators see every queue.

use std::collections::BTreeSet;

use crate::auth::SignedIn;
use crate::error::Result;
use crate::roles::Role;
use crate::store::Store;

/// The queues a signed-in console user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueScope {
    Every,
    Only(BTreeSet<String>),
}

impl QueueScope {
    /// The scope of an agent given `queues`: none given means every queue.
    pub fn of(queues: impl IntoIterator<Item = String>) -> Self {
        let queues: BTreeSet<String> = queues.into_iter().collect();
        if queues.is_empty() {
            QueueScope::Every
        } else {
            QueueScope::Only(queues)
        }
    }

    pub fn sees(&self, queue: &str) -> bool {
        match self {
            QueueScope::Every => true,
            QueueScope::Only(queues) => queues.contains(queue),
        }
    }
}

impl Store {
    /// What `user` sees of the support queues.
    pub async fn queue_scope(&self, user: &SignedIn) -> Result<QueueScope> {
        if user.role == Role::Admin {
            return Ok(QueueScope::Every);
        }
        Ok(QueueScope::of(self.agent_queues(user.user_id).await?))
    }

    /// The queues given to a user that still exist, by id (none: every queue). A queue dropped
    /// from `assets.toml` is not counted: an agent left with none of theirs works every queue, as
    /// the users page then shows.
    pub async fn agent_queues(&self, user_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT queue_id FROM agent_queues
             WHERE user_id = ? AND queue_id IN (SELECT id FROM queues WHERE dropped_at IS NULL) ORDER BY queue_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every agent's queues at once (the users page), by user id.
    pub async fn all_agent_queues(
        &self,
    ) -> Result<std::collections::HashMap<i64, BTreeSet<String>>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT user_id, queue_id FROM agent_queues WHERE queue_id IN (SELECT id FROM queues WHERE dropped_at IS NULL)",
        )
        .fetch_all(self.pool())
        .await?;
        let mut by_user = std::collections::HashMap::<i64, BTreeSet<String>>::new();
        for (user, queue) in rows {
            by_user.entry(user).or_default().insert(queue);
        }
        Ok(by_user)
    }

    /// The ids of tickets not closed that `username` has in queues outside `scope`: an agent
    /// moved off a queue lets go of them, or colleagues would see them held by someone who can no
    /// longer answer.
    pub async fn held_outside(&self, username: &str, scope: &QueueScope) -> Result<Vec<i64>> {
        let held: Vec<(i64, String)> = sqlx::query_as(
            "SELECT t.id, a.queue_id FROM tickets t JOIN assets a ON a.id = t.asset_id
             WHERE t.assigned_to = ? AND t.status != 'closed'",
        )
        .bind(username)
        .fetch_all(self.pool())
        .await?;
        Ok(held
            .into_iter()
            .filter(|(_, queue)| !scope.sees(queue))
            .map(|(id, _)| id)
            .collect())
    }

    /// Gives a user exactly `queues` (empty: every queue), replacing what they had.
    pub async fn set_agent_queues(&self, user_id: i64, queues: &[String]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM agent_queues WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for queue in queues {
            // Nothing for a user removed meanwhile (not a foreign-key failure).
            sqlx::query(
                "INSERT OR IGNORE INTO agent_queues (user_id, queue_id)
                 SELECT id, ? FROM users WHERE id = ?",
            )
            .bind(queue)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every support queue as (id, name), by name.
    pub async fn queue_names(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as(
                "SELECT id, name FROM queues WHERE dropped_at IS NULL ORDER BY name, id",
            )
            .fetch_all(self.pool())
            .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sees_all_and_only_sees_its_own() {
        assert!(QueueScope::Every.sees("biomed"));
        let only = QueueScope::Only(["biomed".to_string()].into_iter().collect());
        assert!(only.sees("biomed"));
        assert!(!only.sees("mercy-facilities"));
        assert!(!only.sees(""));
    }
}
