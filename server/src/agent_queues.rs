//! Which support queues an agent works. A hospital's biomedical engineers and its facilities team
//! answer different people: each sees only their own queues' tickets in the console, on ticket
//! pages and in the live stream. An agent given no queue works every queue (a small site with one
//! team needs no set-up); an agent whose queues were all dropped from `assets.toml` works none
//! until given another; administrators see every queue.

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

/// The queues an administrator gave an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenQueues {
    /// Whether any queue was ever given (false: the agent works every queue).
    pub any_given: bool,
    /// Those given that `assets.toml` still lists.
    pub live: Vec<String>,
}

impl Store {
    /// What `user` sees of the support queues. An agent given queues that have all since been
    /// dropped from `assets.toml` sees none, not every queue: losing a queue must never widen
    /// what someone may read (the users page says so, and an administrator decides again).
    pub async fn queue_scope(&self, user: &SignedIn) -> Result<QueueScope> {
        if user.role == Role::Admin {
            return Ok(QueueScope::Every);
        }
        let given = self.agent_queues(user.user_id).await?;
        if given.any_given {
            Ok(QueueScope::Only(given.live.into_iter().collect()))
        } else {
            Ok(QueueScope::Every)
        }
    }

    /// The queues given to a user: whether any were (none: every queue), and those that still
    /// exist, by id. A queue dropped from `assets.toml` is not counted among the live ones.
    pub async fn agent_queues(&self, user_id: i64) -> Result<GivenQueues> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT a.queue_id, EXISTS (SELECT 1 FROM queues q WHERE q.id = a.queue_id AND q.dropped_at IS NULL)
             FROM agent_queues a WHERE a.user_id = ? ORDER BY a.queue_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(GivenQueues {
            any_given: !rows.is_empty(),
            live: rows
                .into_iter()
                .filter(|(_, live)| *live)
                .map(|(queue, _)| queue)
                .collect(),
        })
    }

    /// Every agent's live queues at once (the users page), by user id. A user given queues that
    /// were all dropped has an empty set here; a user never given one has no entry.
    pub async fn all_agent_queues(
        &self,
    ) -> Result<std::collections::HashMap<i64, BTreeSet<String>>> {
        let rows: Vec<(i64, String, bool)> = sqlx::query_as(
            "SELECT a.user_id, a.queue_id, EXISTS (SELECT 1 FROM queues q WHERE q.id = a.queue_id AND q.dropped_at IS NULL)
             FROM agent_queues a",
        )
        .fetch_all(self.pool())
        .await?;
        let mut by_user = std::collections::HashMap::<i64, BTreeSet<String>>::new();
        for (user, queue, live) in rows {
            let queues = by_user.entry(user).or_default();
            if live {
                queues.insert(queue);
            }
        }
        Ok(by_user)
    }

    /// The ids of tickets not closed that `username` has in queues outside `scope`: an agent
    /// moved off a queue lets go of them, or colleagues would see them held by someone who can no
    /// longer answer.
    pub async fn held_outside(&self, username: &str, scope: &QueueScope) -> Result<Vec<i64>> {
        let held: Vec<(i64, String)> = sqlx::query_as(
            "SELECT t.id, COALESCE(t.queue_id, a.queue_id) FROM tickets t JOIN assets a ON a.id = t.asset_id
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

    fn registry(queues: &[&str]) -> crate::registry::Registry {
        let mut text = "[[site]]\nid = \"s\"\nname = \"Site\"\ntimezone = \"Europe/Madrid\"\ncontact = \"ext. 1\"\n\n".to_string();
        for queue in queues {
            text.push_str(&format!(
                "[[queue]]\nid = \"{queue}\"\nname = \"{queue}\"\nsite = \"s\"\n\n"
            ));
        }
        text.push_str(&format!(
            "[[asset]]\nid = \"a\"\nname = \"a\"\nmodel = \"M\"\nsite = \"s\"\nqueue = \"{}\"\nmanuals = []\n\n\
             [[code]]\ncode = \"AAAAaaaa1\"\nasset = \"a\"\nplacement = \"nameplate\"\n",
            queues[0]
        ));
        crate::registry::Registry::parse(&text).unwrap()
    }

    #[tokio::test]
    async fn a_ticket_moved_to_a_queue_the_registry_drops_goes_back_to_its_assets_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store
            .sync_registry(&registry(&["biomed", "facilities"]))
            .await
            .unwrap();
        store
            .create_conversation("conv", "a", None, "anonymous")
            .await
            .unwrap();
        let (ticket, _) = store
            .create_ticket(
                "conv",
                "a",
                None,
                "anonymous",
                "en",
                0.0,
                "asked for a person",
            )
            .await
            .unwrap();
        assert!(store
            .move_ticket(ticket, "biomed", "facilities")
            .await
            .unwrap());
        assert!(store
            .assign_ticket(ticket, Some("fac.agent"), None)
            .await
            .unwrap());
        let queue_and_agent = || async {
            let t = store.ticket(ticket).await.unwrap().unwrap();
            (t.queue_id, t.assigned_to)
        };
        assert_eq!(
            queue_and_agent().await,
            ("facilities".to_string(), Some("fac.agent".to_string()))
        );
        // The file stops listing the queue it was moved to: back to the asset's, and to nobody.
        let synced = store.sync_registry(&registry(&["biomed"])).await.unwrap();
        assert_eq!(synced.tickets_released, 1);
        assert_eq!(queue_and_agent().await, ("biomed".to_string(), None));
        store.close().await;
    }

    #[tokio::test]
    async fn an_agent_whose_queues_are_all_dropped_sees_none_until_given_another() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        store
            .sync_registry(&registry(&["biomed", "facilities"]))
            .await
            .unwrap();
        for name in ["bio.agent", "any.agent"] {
            assert!(
                crate::auth::create_user(&store, name, "a long enough password", Role::Agent)
                    .await
                    .unwrap()
            );
        }
        let user = |name: &str, user_id: i64| SignedIn {
            user_id,
            username: name.to_string(),
            role: Role::Agent,
            csrf: String::new(),
        };
        let id_of = |name: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE username = ?")
                    .bind(name)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
            }
        };
        let bio = user("bio.agent", id_of("bio.agent").await);
        let any = user("any.agent", id_of("any.agent").await);
        store
            .set_agent_queues(bio.user_id, &["biomed".to_string()])
            .await
            .unwrap();
        assert_eq!(
            store.queue_scope(&bio).await.unwrap(),
            QueueScope::of(["biomed".to_string()])
        );
        assert_eq!(store.queue_scope(&any).await.unwrap(), QueueScope::Every);

        // assets.toml drops the biomedical queue: bio.agent sees no queue, not every queue.
        store
            .sync_registry(&registry(&["facilities"]))
            .await
            .unwrap();
        let scope = store.queue_scope(&bio).await.unwrap();
        assert_eq!(scope, QueueScope::Only(BTreeSet::new()));
        assert!(!scope.sees("facilities"));
        assert_eq!(
            store.all_agent_queues().await.unwrap().get(&bio.user_id),
            Some(&BTreeSet::new()),
            "the users page can tell them from an agent never given a queue"
        );
        assert_eq!(
            store.all_agent_queues().await.unwrap().get(&any.user_id),
            None
        );
        assert_eq!(store.queue_scope(&any).await.unwrap(), QueueScope::Every);

        // The queue listed again brings their scope back; an administrator's choice replaces it.
        store
            .sync_registry(&registry(&["biomed", "facilities"]))
            .await
            .unwrap();
        assert!(store.queue_scope(&bio).await.unwrap().sees("biomed"));
        store.set_agent_queues(bio.user_id, &[]).await.unwrap();
        assert_eq!(store.queue_scope(&bio).await.unwrap(), QueueScope::Every);
        store.close().await;
    }
}
