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
        let queues = self.agent_queues(user.user_id).await?;
        Ok(if queues.is_empty() {
            QueueScope::Every
        } else {
            QueueScope::Only(queues.into_iter().collect())
        })
    }

    /// The queues given to a user, by id (none: every queue).
    pub async fn agent_queues(&self, user_id: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT queue_id FROM agent_queues WHERE user_id = ? ORDER BY queue_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Gives a user exactly `queues` (empty: every queue), replacing what they had.
    pub async fn set_agent_queues(&self, user_id: i64, queues: &[String]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM agent_queues WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for queue in queues {
            sqlx::query("INSERT OR IGNORE INTO agent_queues (user_id, queue_id) VALUES (?, ?)")
                .bind(user_id)
                .bind(queue)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every support queue as (id, name), by name.
    pub async fn queue_names(&self) -> Result<Vec<(String, String)>> {
        Ok(
            sqlx::query_as("SELECT id, name FROM queues ORDER BY name, id")
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
