//! Picks up what another server on the same store changed: the code table and the routing rules are
//! held in memory per process, so each process polls two marks in the store (the registry's
//! version, the newest saved rule set's id) and reloads what moved. A change made here is already
//! in force here; another server sees it within `EVERY`.

use std::sync::Arc;
use std::time::Duration;

use crate::AppState;

/// How often the marks are read: one small query, so cheap; the bound on how stale a replica is.
pub const EVERY: Duration = Duration::from_secs(2);

/// Polls until aborted. `marks` are the values in force when the server opened.
pub fn start(app: AppState, mut marks: (i64, i64)) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match app.store.change_marks().await {
                Ok(now) => {
                    apply(&app, marks, now).await;
                    marks = now;
                }
                Err(error) => tracing::warn!(%error, "reading the store's change marks failed"),
            }
        }
    })
}

async fn apply(
    app: &AppState,
    (registry, rules): (i64, i64),
    (registry_now, rules_now): (i64, i64),
) {
    if registry_now != registry {
        app.store.forget_resolved();
        tracing::info!(
            version = registry_now,
            "codes changed in the store; reloading them"
        );
    }
    if rules_now != rules {
        match crate::saved_rule_set(&app.store).await {
            Ok(Some(saved)) => *app.rules.write().expect("rules lock") = Arc::new(saved),
            // None saved, or not parseable (reported): keep serving what is in force.
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "reading the saved routing rules failed"),
        }
    }
}
