//! The asset registry (`manuals/assets.toml`): sites, support queues, assets and the codes printed
//! on them. Parsed and cross-checked here; the server brings the store in line with it at every
//! start (`Store::sync_registry`).

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Result, ServerError};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// IANA time zone, e.g. `America/Chicago`; rules and opening hours are read in it.
    pub timezone: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub contact: String,
    #[serde(default)]
    pub on_call: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub site: String,
    /// Opening hours as people read them, e.g. `Mon-Fri 07:00-18:00`.
    #[serde(default)]
    pub hours: String,
    /// Where ticket events are POSTed (optional). Plain `http://`: this build has no TLS client, so
    /// an HTTPS receiver is reached through a relay on the site's network.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The key signing each delivery; `env:NAME` reads it from the environment at load, so it need
    /// not be written in the file.
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub id: String,
    pub name: String,
    pub model: String,
    #[serde(default)]
    pub serial: String,
    pub site: String,
    #[serde(default)]
    pub location: String,
    /// Manual ids (front matter `id`), the asset's own first.
    #[serde(default)]
    pub manuals: Vec<String>,
    pub queue: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub code: String,
    pub asset: String,
    /// Where the label is stuck: nameplate, service-panel, brochure...
    pub placement: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default, rename = "site")]
    pub sites: Vec<Site>,
    #[serde(default, rename = "queue")]
    pub queues: Vec<Queue>,
    #[serde(default, rename = "asset")]
    pub assets: Vec<Asset>,
    #[serde(default, rename = "code")]
    pub codes: Vec<Code>,
}

/// A queue's webhook must be a plain HTTP URL with a secret to sign with; an `env:NAME` secret is
/// read from the environment here.
fn check_webhook(queue: &mut Queue, problems: &mut Vec<String>) {
    let Some(url) = queue.webhook_url.as_deref() else {
        if queue.webhook_secret.is_some() {
            problems.push(format!(
                "queue {}: webhook_secret without webhook_url",
                queue.id
            ));
        }
        return;
    };
    if url.starts_with("https://") {
        problems.push(format!(
            "queue {}: webhook_url {url:?} is https, which this build cannot send; point it at an http:// relay on the site's network",
            queue.id
        ));
    } else if !url.starts_with("http://") || url.len() <= "http://".len() {
        problems.push(format!(
            "queue {}: webhook_url {url:?} is not an http:// URL",
            queue.id
        ));
    }
    match queue.webhook_secret.as_deref() {
        None | Some("") => problems.push(format!(
            "queue {}: a webhook needs webhook_secret (the receiver checks each delivery's signature with it)",
            queue.id
        )),
        Some(secret) => {
            if let Some(name) = secret.strip_prefix("env:") {
                match std::env::var(name) {
                    Ok(value) if !value.is_empty() => queue.webhook_secret = Some(value),
                    _ => problems.push(format!(
                        "queue {}: webhook_secret names environment variable {name}, which is not set",
                        queue.id
                    )),
                }
            }
        }
    }
}

/// Characters a printed code may use: no 0/O/1/l/I, which people misread off a worn label.
pub const CODE_ALPHABET: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
pub const CODE_LEN: usize = 8;

/// True when `code` could be a code at all (checked before any lookup, so junk never reaches the store).
pub fn is_well_formed_code(code: &str) -> bool {
    (6..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new random code: 8 characters from a 57-letter alphabet, about 46 bits.
pub fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

impl Registry {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ServerError::Registry {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses and cross-checks: every reference names something defined, ids are unique, time zones
    /// exist and codes are well formed.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut registry: Registry = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for queue in &mut registry.queues {
            check_webhook(queue, &mut problems);
        }
        let sites = unique_ids(registry.sites.iter().map(|s| &s.id), "site", &mut problems);
        for site in &registry.sites {
            if site.timezone.parse::<chrono_tz::Tz>().is_err() {
                problems.push(format!(
                    "site {}: unknown time zone {:?}",
                    site.id, site.timezone
                ));
            }
        }
        let queues = unique_ids(
            registry.queues.iter().map(|q| &q.id),
            "queue",
            &mut problems,
        );
        for queue in &registry.queues {
            if !sites.contains(queue.site.as_str()) {
                problems.push(format!("queue {}: unknown site {:?}", queue.id, queue.site));
            }
        }
        let assets = unique_ids(
            registry.assets.iter().map(|a| &a.id),
            "asset",
            &mut problems,
        );
        for asset in &registry.assets {
            if !sites.contains(asset.site.as_str()) {
                problems.push(format!("asset {}: unknown site {:?}", asset.id, asset.site));
            }
            if !queues.contains(asset.queue.as_str()) {
                problems.push(format!(
                    "asset {}: unknown queue {:?}",
                    asset.id, asset.queue
                ));
            }
        }
        unique_ids(
            registry.codes.iter().map(|c| &c.code),
            "code",
            &mut problems,
        );
        for code in &registry.codes {
            if !is_well_formed_code(&code.code) {
                problems.push(format!(
                    "code {:?}: 6-32 letters and digits expected",
                    code.code
                ));
            }
            if !assets.contains(code.asset.as_str()) {
                problems.push(format!(
                    "code {}: unknown asset {:?}",
                    code.code, code.asset
                ));
            }
        }
        if problems.is_empty() {
            Ok(registry)
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Whether `id` is a registry id: 1-64 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit (so never `.` or `..`, which a URL would read as a path step).
pub fn is_plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a String>,
    what: &str,
    problems: &mut Vec<String>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for id in ids {
        // Ids go into URLs (`/admin/webhooks/{queue}/send`) and metric labels unescaped.
        if !is_plain_id(id) {
            problems.push(format!(
                "{what} {id:?}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit, expected (ids go into addresses)"
            ));
        }
        if !seen.insert(id.as_str()) {
            problems.push(format!("{what} {id:?} is defined twice"));
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
[[site]]
id = "s"
name = "Site"
timezone = "Europe/Madrid"

[[queue]]
id = "q"
name = "Queue"
site = "s"

[[asset]]
id = "a"
name = "Asset"
model = "M-1"
site = "s"
queue = "q"

[[code]]
code = "abcd2345"
asset = "a"
placement = "nameplate"
"#;

    #[test]
    fn a_consistent_registry_parses() {
        let r = Registry::parse(SMALL).unwrap();
        assert_eq!(r.codes[0].asset, "a");
    }

    #[test]
    fn dangling_references_and_bad_zones_are_all_reported() {
        let text = SMALL
            .replace("Europe/Madrid", "Mars/Olympus")
            .replace("asset = \"a\"", "asset = \"ghost\"");
        let err = Registry::parse(&text).unwrap_err();
        assert!(err.contains("unknown time zone"), "{err}");
        assert!(err.contains("unknown asset \"ghost\""), "{err}");
    }

    #[test]
    fn opening_hours_are_free_text_to_the_registry() {
        // Shown as written; only rules read them (`queue_open`), and `rules check` says when one
        // cannot (`KnownScopes::unreadable_hours`). A registry that loaded before still loads.
        let with = |hours: &str| {
            SMALL.replace(
                "site = \"s\"\n\n[[asset]]",
                &format!("site = \"s\"\nhours = \"{hours}\"\n\n[[asset]]"),
            )
        };
        assert!(Registry::parse(&with("Mon-Fri 07:00-18:00, Sat 08:00-12:00")).is_ok());
        assert!(Registry::parse(&with("24/7")).is_ok());
    }

    #[test]
    fn the_bundled_registry_is_consistent() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manuals/assets.toml");
        let r = Registry::load(&path).unwrap();
        assert!(r.assets.len() >= 8 && r.codes.len() >= r.assets.len());
    }

    #[test]
    fn new_codes_are_well_formed_and_avoid_confusable_letters() {
        for _ in 0..100 {
            let c = new_code();
            assert!(is_well_formed_code(&c));
            assert!(!c.contains(['0', 'O', '1', 'l', 'I']));
        }
        assert!(!is_well_formed_code("../etc"));
        assert!(!is_well_formed_code("abc"));
    }
}
