//! The store: one SQLite file under the data directory, migrated at start. Queries are plain SQL through
//! sqlx so that a PostgreSQL backend can follow for deployments with several replicas.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::error::{Result, ServerError};
use crate::registry::Registry;

pub const DATABASE_FILE: &str = "scanaid.db";

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The database file, for the scan-event writer's own connection.
    path: PathBuf,
    /// Every code resolved, loaded on first use and dropped by any write to codes or assets: a scan
    /// then costs no query. (With several replicas on PostgreSQL this needs a change notification.)
    resolved: Arc<RwLock<CodeCache>>,
}

/// The code table and how many times it was forgotten (so a table built across a change is not
/// installed over it).
#[derive(Default)]
struct CodeCache {
    table: Option<Arc<CodeTable>>,
    epoch: u64,
}

/// Codes were added or changed, in the change's transaction `conn`: every other server on the
/// store reloads its code table once it sees the version move (`changes.rs`); this one, when the
/// caller calls `forget_resolved` after the commit.
pub(crate) async fn codes_changed_in(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    sqlx::query("UPDATE registry_version SET version = version + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// Every code's resolution, by code.
type CodeTable = HashMap<String, Arc<ResolvedCode>>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SiteRecord {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub address: String,
    pub contact: String,
    pub on_call: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssetRecord {
    pub id: String,
    pub name: String,
    pub model: String,
    pub serial: String,
    pub site_id: String,
    pub location: String,
    pub queue_id: String,
    /// JSON array; see [`AssetRecord::manual_ids`].
    pub manuals: String,
}

impl AssetRecord {
    pub fn manual_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.manuals).unwrap_or_default()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueueRecord {
    pub id: String,
    pub name: String,
    pub site_id: String,
    pub hours: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRecord {
    pub code: String,
    pub kind: String,
    pub asset_id: Option<String>,
    pub placement: String,
    pub retired_at: Option<String>,
}

/// Everything a scan needs to know about its code, read in one place.
#[derive(Debug, Clone)]
pub struct ResolvedCode {
    pub code: CodeRecord,
    pub asset: Option<AssetRecord>,
    pub site: Option<SiteRecord>,
    pub queue: Option<QueueRecord>,
    /// The time zone of the queue's own site, which its hours are in (a desk at one site may serve
    /// machines at another).
    pub queue_timezone: Option<String>,
    /// The queue's opening hours as rules read them (`None`: no queue, or hours that cannot be
    /// read), parsed once here rather than on every scan.
    pub queue_windows: Option<Vec<crate::rules::TimeWindow>>,
    /// The asset's manuals (`AssetRecord::manual_ids`), parsed once here rather than on every scan.
    pub manual_ids: Vec<String>,
}

fn now() -> String {
    stored_time(chrono::Utc::now())
}

/// `at` as the store keeps times: RFC 3339 UTC with milliseconds, so text order is time order.
pub fn stored_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What `Store::sync_registry` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrySync {
    /// The store had no sites: everything was added.
    pub first_start: bool,
    pub sites_added: i64,
    pub assets_added: i64,
    pub codes_added: i64,
    /// Asset codes the file no longer lists, retired now.
    pub codes_retired: u64,
    /// Codes the registry had retired that the file lists again: live again.
    pub codes_restored: u64,
    /// Sites, queues and assets the file no longer lists, marked dropped now.
    pub dropped: u64,
    /// Open tickets let go because their asset moved to another queue.
    pub tickets_released: u64,
    /// Codes the file lists that were retired deliberately: they stay retired.
    pub relisted_retired: Vec<String>,
    /// Codes the file lists that the store holds as another kind (a discharge code): skipped.
    pub not_asset_codes: Vec<String>,
    /// The file lists no code at all: nothing was retired.
    pub no_codes_listed: bool,
}

impl RegistrySync {
    /// One line for the log, or `None` when nothing was added, retired or refused.
    pub fn summary(&self) -> Option<String> {
        let mut said = Vec::new();
        for (n, what) in [
            (self.sites_added, "site(s) added"),
            (self.assets_added, "asset(s) added"),
            (self.codes_added, "code(s) added"),
            (
                self.codes_retired as i64,
                "code(s) no longer listed retired",
            ),
            (self.codes_restored as i64, "code(s) listed again restored"),
            (
                self.dropped as i64,
                "site(s), queue(s) or asset(s) no longer listed dropped",
            ),
            (
                self.tickets_released as i64,
                "open ticket(s) of assets moved to another queue let go",
            ),
        ] {
            if n > 0 {
                said.push(format!("{n} {what}"));
            }
        }
        if !self.relisted_retired.is_empty() {
            said.push(format!(
                "assets.toml lists retired code(s) {} (they stay retired: print new codes)",
                self.relisted_retired.join(", ")
            ));
        }
        if !self.not_asset_codes.is_empty() {
            said.push(format!(
                "assets.toml lists code(s) {} that are not asset codes here: skipped",
                self.not_asset_codes.join(", ")
            ));
        }
        if self.no_codes_listed {
            said.push("assets.toml lists no code: none was retired".to_string());
        }
        (!said.is_empty()).then(|| format!("registry: {}", said.join("; ")))
    }
}

impl Store {
    /// Opens (creating if needed) `data_dir/scanaid.db` and runs the migrations.
    pub async fn open(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|source| ServerError::Io {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            // WAL lets page reads go on while the event writer commits.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // Deleted rows (a patient's, on request) are overwritten, not left in free pages.
            .pragma("secure_delete", "on");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self {
            pool,
            path,
            resolved: Arc::new(RwLock::new(CodeCache::default())),
        })
    }

    /// Brings the store's sites, queues, assets and asset codes in line with `registry`
    /// (`assets.toml`), at every server start: a machine, label, phone number or manual list added
    /// or changed in the file is served from that start on. What the file no longer lists is
    /// marked dropped (`dropped_at`) and kept for the tickets and scans that name it; an asset code
    /// it no longer lists is retired by the registry (`retired_by = 'registry'`), which the file
    /// listing it again undoes, so a replica started with an older file does no lasting harm. A
    /// code retired deliberately stays retired even if the file lists it. A file that lists no
    /// code at all retires none, nor does one listing no site, queue or asset drop them (a truncated
    /// file is a mistake, not an intent). Open tickets of an
    /// asset moved to another queue go back to nobody (their agent may not work the new queue).
    /// Discharge codes are the store's own and are left alone.
    pub async fn sync_registry(&self, registry: &Registry) -> Result<RegistrySync> {
        let mut tx = self.pool.begin().await?;
        // A write first, so the whole sync holds the write lock (two servers starting at once
        // take turns instead of one failing), and replicas reload the codes it changes.
        sqlx::query("UPDATE registry_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let counts = "SELECT (SELECT COUNT(*) FROM sites), (SELECT COUNT(*) FROM assets),
                             (SELECT COUNT(*) FROM codes WHERE kind = 'asset')";
        let before: (i64, i64, i64) = sqlx::query_as(counts).fetch_one(&mut *tx).await?;
        let at = now();
        for s in &registry.sites {
            sqlx::query(
                "INSERT INTO sites (id, name, timezone, address, contact, on_call) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, timezone = excluded.timezone,
                   address = excluded.address, contact = excluded.contact, on_call = excluded.on_call,
                   dropped_at = NULL",
            )
            .bind(&s.id).bind(&s.name).bind(&s.timezone).bind(&s.address).bind(&s.contact).bind(&s.on_call)
            .execute(&mut *tx)
            .await?;
        }
        for q in &registry.queues {
            sqlx::query(
                "INSERT INTO queues (id, name, site_id, hours, webhook_url, webhook_secret) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, site_id = excluded.site_id,
                   hours = excluded.hours, webhook_url = excluded.webhook_url,
                   webhook_secret = excluded.webhook_secret, dropped_at = NULL",
            )
            .bind(&q.id)
            .bind(&q.name)
            .bind(&q.site)
            .bind(&q.hours)
            .bind(&q.webhook_url)
            .bind(&q.webhook_secret)
            .execute(&mut *tx)
            .await?;
        }
        let mut tickets_released = 0;
        for a in &registry.assets {
            tickets_released += sqlx::query(
                // A ticket an agent moved to a queue of its own keeps it, and its agent.
                "UPDATE tickets SET assigned_to = NULL
                 WHERE status != 'closed' AND assigned_to IS NOT NULL AND asset_id = ?1
                   AND queue_id IS NULL
                   AND EXISTS (SELECT 1 FROM assets WHERE id = ?1 AND queue_id != ?2)",
            )
            .bind(&a.id)
            .bind(&a.queue)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let manuals = serde_json::to_string(&a.manuals).expect("strings serialise");
            sqlx::query(
                "INSERT INTO assets (id, name, model, serial, site_id, location, queue_id, manuals) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, model = excluded.model,
                   serial = excluded.serial, site_id = excluded.site_id, location = excluded.location,
                   queue_id = excluded.queue_id, manuals = excluded.manuals, dropped_at = NULL",
            )
            .bind(&a.id).bind(&a.name).bind(&a.model).bind(&a.serial).bind(&a.site).bind(&a.location).bind(&a.queue).bind(manuals)
            .execute(&mut *tx)
            .await?;
        }
        let mut relisted_retired = Vec::new();
        let mut not_asset_codes = Vec::new();
        let mut codes_restored = 0;
        for c in &registry.codes {
            let existing: Option<(String, Option<String>, Option<String>)> =
                sqlx::query_as("SELECT kind, retired_at, retired_by FROM codes WHERE code = ?")
                    .bind(&c.code)
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                Some((kind, _, _)) if kind != "asset" => {
                    not_asset_codes.push(c.code.clone());
                    continue;
                }
                Some((_, Some(_), Some(by))) if by == "registry" => codes_restored += 1,
                Some((_, Some(_), _)) => relisted_retired.push(c.code.clone()),
                _ => {}
            }
            sqlx::query(
                "INSERT INTO codes (code, kind, asset_id, placement, created_at) VALUES (?, 'asset', ?, ?, ?)
                 ON CONFLICT(code) DO UPDATE SET asset_id = excluded.asset_id, placement = excluded.placement,
                   retired_at = CASE WHEN codes.retired_by = 'registry' THEN NULL ELSE codes.retired_at END,
                   retired_by = CASE WHEN codes.retired_by = 'registry' THEN NULL ELSE codes.retired_by END
                 WHERE codes.kind = 'asset'",
            )
            .bind(&c.code)
            .bind(&c.asset)
            .bind(&c.placement)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        let json = |ids: Vec<&str>| serde_json::to_string(&ids).expect("strings serialise");
        let codes_retired = if registry.codes.is_empty() {
            0
        } else {
            sqlx::query(
                "UPDATE codes SET retired_at = ?, retired_by = 'registry'
                 WHERE kind = 'asset' AND retired_at IS NULL
                   AND code NOT IN (SELECT value FROM json_each(?))",
            )
            .bind(&at)
            .bind(json(
                registry.codes.iter().map(|c| c.code.as_str()).collect(),
            ))
            .execute(&mut *tx)
            .await?
            .rows_affected()
        };
        let mut dropped = 0;
        for (table, ids) in [
            (
                "sites",
                registry
                    .sites
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>(),
            ),
            (
                "queues",
                registry.queues.iter().map(|q| q.id.as_str()).collect(),
            ),
            (
                "assets",
                registry.assets.iter().map(|a| a.id.as_str()).collect(),
            ),
        ] {
            // A file that lists none of them is cut short or wrong, not a site closing everything.
            if ids.is_empty() {
                continue;
            }
            let ids = json(ids);
            dropped += sqlx::query(&format!(
                "UPDATE {table} SET dropped_at = ?
                 WHERE dropped_at IS NULL AND id NOT IN (SELECT value FROM json_each(?))"
            ))
            .bind(&at)
            .bind(ids)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        // A ticket an agent moved to a queue the file no longer lists goes back to its asset's
        // queue, and to nobody: the dropped queue's agents no longer see it.
        tickets_released += sqlx::query(
            "UPDATE tickets SET queue_id = NULL, assigned_to = NULL
             WHERE status != 'closed'
               AND queue_id IN (SELECT id FROM queues WHERE dropped_at IS NOT NULL)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let after: (i64, i64, i64) = sqlx::query_as(counts).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        self.forget_resolved();
        Ok(RegistrySync {
            first_start: before.0 == 0,
            sites_added: after.0 - before.0,
            assets_added: after.1 - before.1,
            codes_added: after.2 - before.2,
            codes_retired,
            codes_restored,
            dropped,
            tickets_released,
            relisted_retired,
            not_asset_codes,
            no_codes_listed: registry.codes.is_empty(),
        })
    }

    /// `sync_registry` on a store that has no sites yet (a fresh data directory), for the
    /// command-line tools: they read the store and must not change a running site's registry
    /// with whatever `assets.toml` sits beside them. False when the store was not empty.
    pub async fn seed_if_empty(&self, registry: &Registry) -> Result<bool> {
        let (sites,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sites")
            .fetch_one(&self.pool)
            .await?;
        if sites > 0 {
            return Ok(false);
        }
        self.sync_registry(registry).await?;
        Ok(true)
    }

    /// The registry's version and the newest saved rule set's id (0 when none): what another server
    /// changing the codes or the rules moves.
    pub async fn change_marks(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT (SELECT version FROM registry_version WHERE id = 1),
                    (SELECT COALESCE(MAX(id), 0) FROM rule_sets)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Drops the code table: call after committing a change to codes or assets (with
    /// `codes_changed_in` inside the change's transaction, for the other servers on the store).
    pub(crate) fn forget_resolved(&self) {
        let mut cache = self.resolved.write().expect("cache lock");
        cache.table = None;
        cache.epoch += 1;
    }

    /// A code with its asset, site and queue, from the in-memory table of every code.
    /// Shared, not copied: a scan reads it, and copying its strings was a dozen allocations a scan.
    pub async fn resolve_code(&self, code: &str) -> Result<Option<Arc<ResolvedCode>>> {
        let mut table = None;
        // A table built while a change was committed may lack it: it is installed only if nothing
        // was forgotten meanwhile, and built again otherwise (a few times at most; the last one
        // still answers this scan).
        for _ in 0..3 {
            let epoch = {
                let cache = self.resolved.read().expect("cache lock");
                if let Some(table) = &cache.table {
                    return Ok(table.get(code).cloned());
                }
                cache.epoch
            };
            let mut built = HashMap::new();
            for c in self.codes().await? {
                if let Some(r) = self.resolve_code_uncached(&c.code).await? {
                    built.insert(c.code.clone(), Arc::new(r));
                }
            }
            let built = Arc::new(built);
            let mut cache = self.resolved.write().expect("cache lock");
            if cache.epoch == epoch {
                cache.table = Some(built.clone());
                return Ok(built.get(code).cloned());
            }
            table = Some(built);
        }
        Ok(table.and_then(|t| t.get(code).cloned()))
    }

    async fn resolve_code_uncached(&self, code: &str) -> Result<Option<ResolvedCode>> {
        let Some(code) = sqlx::query_as::<_, CodeRecord>(
            "SELECT code, kind, asset_id, placement, retired_at FROM codes WHERE code = ?",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let asset = match &code.asset_id {
            Some(id) => self.asset(id).await?,
            None => None,
        };
        let (site, queue) = match &asset {
            Some(a) => (self.site(&a.site_id).await?, self.queue(&a.queue_id).await?),
            None => (None, None),
        };
        let manual_ids = asset
            .as_ref()
            .map(AssetRecord::manual_ids)
            .unwrap_or_default();
        let queue_timezone = match (&queue, &site) {
            (Some(q), Some(s)) if q.site_id == s.id => Some(s.timezone.clone()),
            (Some(q), _) => self.site(&q.site_id).await?.map(|s| s.timezone),
            (None, _) => None,
        };
        let queue_windows = queue
            .as_ref()
            .and_then(|q| crate::rules::parse_opening_hours(&q.hours).ok());
        Ok(Some(ResolvedCode {
            code,
            asset,
            site,
            queue,
            queue_timezone,
            queue_windows,
            manual_ids,
        }))
    }

    pub async fn asset(&self, id: &str) -> Result<Option<AssetRecord>> {
        Ok(sqlx::query_as::<_, AssetRecord>(
            "SELECT id, name, model, serial, site_id, location, queue_id, manuals FROM assets WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn site(&self, id: &str) -> Result<Option<SiteRecord>> {
        Ok(sqlx::query_as::<_, SiteRecord>(
            "SELECT id, name, timezone, address, contact, on_call FROM sites WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The sites `assets.toml` lists now (not dropped), for the public contact lists.
    pub async fn listed_sites(&self) -> Result<Vec<SiteRecord>> {
        Ok(sqlx::query_as::<_, SiteRecord>(
            "SELECT id, name, timezone, address, contact, on_call FROM sites
             WHERE dropped_at IS NULL ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// An asset `assets.toml` lists now (not dropped): what a new conversation may be about.
    /// A live label code of a listed asset and the asset's name: where a page without the scanned
    /// code (the chat's and search's pages, reached by a form that names the asset) links back to.
    pub async fn page_code_of(&self, asset_id: &str) -> Result<Option<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT c.code, a.name FROM codes c JOIN assets a ON a.id = c.asset_id
             WHERE c.asset_id = ? AND c.kind = 'asset' AND c.retired_at IS NULL AND a.dropped_at IS NULL
             ORDER BY c.created_at, c.rowid LIMIT 1",
        )
        .bind(asset_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The one live label code that `typed` names when case is ignored (`None` when none does, or
    /// when two do: then what was typed cannot be told apart). Never a discharge packet's code: its
    /// patient scans it, and its full case is part of what makes it hard to guess.
    pub async fn live_code_ignoring_case(&self, typed: &str) -> Result<Option<String>> {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT code FROM codes WHERE code = ? COLLATE NOCASE AND kind = 'asset' AND retired_at IS NULL LIMIT 2",
        )
        .bind(typed)
        .fetch_all(&self.pool)
        .await?;
        Ok(match found.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        })
    }

    pub async fn listed_asset(&self, id: &str) -> Result<Option<AssetRecord>> {
        Ok(sqlx::query_as::<_, AssetRecord>(
            "SELECT id, name, model, serial, site_id, location, queue_id, manuals FROM assets
             WHERE id = ? AND dropped_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn sites(&self) -> Result<Vec<SiteRecord>> {
        Ok(sqlx::query_as::<_, SiteRecord>(
            "SELECT id, name, timezone, address, contact, on_call FROM sites ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn queue(&self, id: &str) -> Result<Option<QueueRecord>> {
        Ok(sqlx::query_as::<_, QueueRecord>(
            "SELECT id, name, site_id, hours FROM queues WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every asset's id.
    pub async fn asset_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT id FROM assets ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Every code with its asset, for `scanaid codes` and label printing.
    pub async fn codes(&self) -> Result<Vec<CodeRecord>> {
        Ok(sqlx::query_as::<_, CodeRecord>(
            "SELECT code, kind, asset_id, placement, retired_at FROM codes ORDER BY asset_id, placement, code",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn retire_code(&self, code: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done =
            sqlx::query("UPDATE codes SET retired_at = ? WHERE code = ? AND retired_at IS NULL")
                .bind(now())
                .bind(code)
                .execute(&mut *tx)
                .await?;
        codes_changed_in(&mut tx).await?;
        tx.commit().await?;
        self.forget_resolved();
        Ok(done.rows_affected() == 1)
    }

    /// The database file (the scan-event writer opens its own connection to it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rule set admins saved last, if any: (TOML, saved at, saved by).
    pub async fn saved_rules(&self) -> Result<Option<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT toml, saved_at, saved_by FROM rule_sets ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The newest saved rule sets, newest first: (id, saved at, saved by).
    pub async fn rule_history(&self, limit: i64) -> Result<Vec<(i64, String, String)>> {
        Ok(
            sqlx::query_as("SELECT id, saved_at, saved_by FROM rule_sets ORDER BY id DESC LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One saved rule set's TOML.
    pub async fn rule_version(&self, id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT toml FROM rule_sets WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The id of the rule set saved last (0: none): an editor's page sends it back as its `base`.
    pub async fn rules_version(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM rule_sets")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Keeps a rule set (already validated by the caller) as the one in force; earlier ones stay as
    /// history. With a `base` (the `rules_version` the editor's page was drawn with), only if no
    /// one saved since: false, nothing saved, when someone did.
    pub async fn save_rules(&self, toml: &str, saved_by: &str, base: Option<i64>) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO rule_sets (toml, saved_at, saved_by)
             SELECT ?1, ?2, ?3 WHERE ?4 IS NULL OR ?4 = (SELECT COALESCE(MAX(id), 0) FROM rule_sets)",
        )
        .bind(toml)
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .bind(saved_by)
        .bind(base)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Starts a conversation about an asset; `id` is random and says nothing about the person.
    pub async fn create_conversation(
        &self,
        id: &str,
        asset_id: &str,
        code: Option<&str>,
        role: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO conversations (id, asset_id, code, role, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(asset_id)
        .bind(code)
        .bind(role)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A conversation's asset and code, if it exists.
    pub async fn conversation(&self, id: &str) -> Result<Option<(String, Option<String>)>> {
        Ok(
            sqlx::query_as("SELECT asset_id, code FROM conversations WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A conversation's turns, oldest first: (question, answer).
    pub async fn chat_turns(&self, conversation: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT question, answer FROM chat_turns WHERE conversation_id = ? ORDER BY id",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A conversation's turns as the person's chat showed them, oldest first.
    pub async fn shown_turns(&self, conversation: &str) -> Result<Vec<ShownTurn>> {
        Ok(sqlx::query_as(
            "SELECT id, at, question, answer, citations, shown FROM chat_turns WHERE conversation_id = ? ORDER BY id",
        )
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn add_chat_turn(
        &self,
        conversation: &str,
        question: &str,
        answer: &str,
        citations_json: &str,
        shown_json: &str,
        confidence: f64,
        escalated: bool,
        kind: &str,
        request_id: Option<&str>,
    ) -> Result<Option<i64>> {
        // `None`: a turn with this request id was stored first (the same message sent twice at once).
        Ok(sqlx::query_scalar(
            "INSERT INTO chat_turns (conversation_id, at, question, answer, citations, shown, confidence, escalated, kind, request_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .bind(conversation)
        .bind(now_rfc3339())
        .bind(question)
        .bind(answer)
        .bind(citations_json)
        .bind(shown_json)
        .bind(confidence)
        .bind(escalated)
        .bind(kind)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The turn a chat message with request id `request_id` stored, if one did.
    pub async fn turn_of_request(&self, request_id: &str) -> Result<Option<RequestedTurn>> {
        Ok(sqlx::query_as(
            "SELECT id, conversation_id, question, answer, citations, shown, confidence, escalated != 0 AS escalated
             FROM chat_turns WHERE request_id = ?",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records thumbs up (1) or down (-1) on a turn of a conversation; false when there is no such turn.
    pub async fn set_chat_feedback(
        &self,
        conversation: &str,
        turn: i64,
        vote: i64,
    ) -> Result<bool> {
        let done =
            sqlx::query("UPDATE chat_turns SET feedback = ? WHERE id = ? AND conversation_id = ?")
                .bind(vote)
                .bind(turn)
                .bind(conversation)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The ticket of a conversation not closed yet, if any (one conversation, one live ticket).
    pub async fn open_ticket(&self, conversation: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM tickets WHERE conversation_id = ? AND status != 'closed' ORDER BY id LIMIT 1",
        )
        .bind(conversation)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether an agent has taken or answered the conversation's live ticket: the conversation is
    /// theirs, and the assistant no longer answers on it.
    pub async fn agent_engaged(&self, conversation: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tickets t WHERE t.conversation_id = ? AND t.status != 'closed'
               AND (t.assigned_to IS NOT NULL
                    OR EXISTS (SELECT 1 FROM ticket_messages m WHERE m.ticket_id = t.id)))",
        )
        .bind(conversation)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The role a conversation was started under.
    pub async fn conversation_role(&self, conversation: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT role FROM conversations WHERE id = ?")
                .bind(conversation)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A conversation's newest ticket and its status, if it ever had one.
    pub async fn latest_ticket(&self, conversation: &str) -> Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, status FROM tickets WHERE conversation_id = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(conversation)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Opens a ticket for a conversation, or finds the live one it already has: the store allows one
    /// ticket not closed per conversation, so two escalations at the same moment share one. The flag
    /// says whether this call opened it.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_ticket(
        &self,
        conversation: &str,
        asset_id: &str,
        code: Option<&str>,
        role: &str,
        language: &str,
        confidence: f64,
        reason: &str,
    ) -> Result<(i64, bool)> {
        let at = now_rfc3339();
        let done = sqlx::query("INSERT INTO tickets (conversation_id, asset_id, code, role, language, confidence, reason, status, created_at, waiting_since) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?) ON CONFLICT DO NOTHING")
            .bind(conversation)
            .bind(asset_id)
            .bind(code)
            .bind(role)
            .bind(language)
            .bind(confidence)
            .bind(reason)
            .bind(&at)
            .bind(&at)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            return Ok((done.last_insert_rowid(), true));
        }
        match self.open_ticket(conversation).await? {
            Some(id) => Ok((id, false)),
            // Closed between the insert and the look-up: open a fresh one.
            None => {
                Box::pin(self.create_ticket(
                    conversation,
                    asset_id,
                    code,
                    role,
                    language,
                    confidence,
                    reason,
                ))
                .await
            }
        }
    }

    pub async fn count_scan_events(&self) -> Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scan_events")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A stored turn: (turn, when, question, answer text, citations JSON, shown JSON or NULL for
/// turns stored before `shown` was).
pub type ShownTurn = (i64, String, String, String, String, Option<String>);

/// A stored turn as a repeated chat message is answered with it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestedTurn {
    pub id: i64,
    pub conversation_id: String,
    pub question: String,
    pub answer: String,
    pub citations: String,
    pub shown: Option<String>,
    pub confidence: f64,
    pub escalated: bool,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
