//! Routing rules: what a scan gets, decided by ordered, human-readable rules per code, asset or site.
//! The first rule whose scope covers the code and whose condition holds decides; with none, the person
//! gets the page for their role. Every decision can be explained: which rule fired and why each earlier
//! one did not. `analyse` reports rules that can never fire or that an earlier rule shadows.
//!
//! ```toml
//! [[rule]]
//! id = "mercy-after-hours"
//! description = "While the machine's support desk is closed, people who are not staff see who is on call"
//! site = "mercy-general"
//! when = { all = [ { role = ["anonymous", "operator"] }, { queue_open = false } ] }
//! then = { page = "on-call" }
//!
//! [[rule]]
//! id = "christmas"
//! when = { all = [ { dates = { from = 2026-12-24, to = 2026-12-26 } },
//!                  { not = { time = { days = ["Mon-Fri"], hours = "07:00-18:00" } } } ] }
//! then = { page = "on-call" }
//! ```

use std::collections::HashSet;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

/// One value or a list, so `role = "technician"` and `role = ["technician", "biomed"]` both read.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(v) => vec![v.to_ascii_lowercase()],
            OneOrMany::Many(v) => v.iter().map(|s| s.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `have` is one of the values, compared as `values()` compares (lowercased), without
    /// building that list: the scan path asks this for every rule in scope.
    pub fn contains(&self, have: &str) -> bool {
        let is = |wanted: &String| {
            wanted.len() == have.len()
                && wanted
                    .bytes()
                    .zip(have.bytes())
                    .all(|(w, h)| w.to_ascii_lowercase() == h)
        };
        match self {
            OneOrMany::One(v) => is(v),
            OneOrMany::Many(v) => v.iter().any(is),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    Role(OneOrMany),
    Language(OneOrMany),
    Device(OneOrMany),
    Placement(OneOrMany),
    /// true: the browser scanned this code before; false: a first scan.
    Returning(bool),
    /// A weekly window in the site's time zone: days like `Mon-Fri`, `Sat`, hours like `07:00-18:00`
    /// (`18:00-07:00` wraps past midnight and belongs to the day it starts on).
    Time(TimeWindow),
    /// Calendar dates in the site's time zone, both ends included.
    Dates(DateRange),
    /// true: the scanned asset's support queue is open now, by its opening hours in its own site's
    /// time zone (`assets.toml`); false: it is closed. So an on-call rule follows the hours the
    /// page shows instead of repeating them (and drifting from them). An asset without a queue
    /// whose hours can be read matches neither.
    QueueOpen(bool),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    #[serde(default)]
    pub days: Vec<String>,
    #[serde(default)]
    pub hours: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    /// TOML dates (`from = 2026-12-01`), read as calendar dates.
    pub from: Option<toml::value::Datetime>,
    pub to: Option<toml::value::Datetime>,
}

/// A TOML value that is a plain date (no time), as a calendar date.
fn calendar_date(value: &toml::value::Datetime) -> Option<NaiveDate> {
    match (value.date, value.time) {
        (Some(d), None) => NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32),
        _ => None,
    }
}

impl DateRange {
    fn bounds(&self) -> (Option<NaiveDate>, Option<NaiveDate>) {
        (
            self.from.as_ref().and_then(calendar_date),
            self.to.as_ref().and_then(calendar_date),
        )
    }
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A page variant: a role's page (`technician`, `operator`, ...) or `on-call`.
    Page(String),
    /// A temporary redirect to another address.
    Redirect(String),
    /// A temporary redirect into an installed app (e.g. `vendorapp://asset/VP3-22-004417`).
    DeepLink(String),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Page(page) => write!(f, "the {page} page"),
            Action::Redirect(url) => write!(f, "a temporary redirect to {url}"),
            Action::DeepLink(url) => write!(f, "a temporary redirect into the app at {url}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// Scope: at most one of code, asset, site; none means every code.
    pub code: Option<String>,
    pub asset: Option<String>,
    pub site: Option<String>,
    /// No condition: the rule always fires within its scope.
    pub when: Option<Condition>,
    pub then: Action,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
    /// The TOML these rules were parsed from, for the admin page's editor.
    #[serde(skip)]
    pub source: String,
}

/// Page variants a rule may name besides the roles.
pub const PAGE_VARIANTS: &[&str] = &["on-call"];

/// What is known about one scan, as rules see it. Borrowed from the resolved code and the scan's
/// context: deciding a scan copies nothing.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub code: &'a str,
    pub asset: &'a str,
    pub site: &'a str,
    pub placement: &'a str,
    pub role: &'a str,
    pub language: &'a str,
    pub device: &'a str,
    pub returning: bool,
    /// The moment of the scan; rules read it in `timezone`.
    pub at: DateTime<Utc>,
    pub timezone: Tz,
    /// The scanned asset's support queue, for `queue_open`.
    pub queue: Option<QueueHours<'a>>,
}

/// A support queue's opening hours as the registry writes them, and the time zone they are in
/// (its own site's, which may not be the scanned asset's).
#[derive(Debug, Clone, Copy)]
pub struct QueueHours<'a> {
    pub name: &'a str,
    /// As written, for `explain`.
    pub hours: &'a str,
    /// `hours` read by `parse_opening_hours` once, when the code was resolved (a scan allocates
    /// nothing for it); `None` when they cannot be read.
    pub windows: Option<&'a [TimeWindow]>,
    pub timezone: Tz,
}

impl QueueHours<'_> {
    /// Whether the queue is open at `at`; `None` when its hours cannot be read.
    pub fn open_at(&self, at: DateTime<Utc>) -> Option<bool> {
        let windows = self.windows?;
        let local = at.with_timezone(&self.timezone);
        Some(
            windows
                .iter()
                .any(|w| in_window(w, local.weekday(), local.time())),
        )
    }
}

/// Opening hours as the registry writes them, `Mon-Fri 07:00-18:00, Sat 08:00-12:00` (parts split
/// by commas, each days then hours, or days alone for the whole day), as weekly windows.
pub fn parse_opening_hours(spec: &str) -> Result<Vec<TimeWindow>, String> {
    let wrong = || {
        format!(
            "opening hours {spec:?}: write days and hours, e.g. Mon-Fri 07:00-18:00, Sat 08:00-12:00"
        )
    };
    if spec.trim().is_empty() {
        return Err(wrong());
    }
    spec.split(',')
        .map(|part| {
            let mut words = part.split_whitespace();
            let days = words.next().ok_or_else(wrong)?.to_string();
            let hours = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(wrong());
            }
            parse_days(std::slice::from_ref(&days)).map_err(|_| wrong())?;
            if let Some(h) = &hours {
                parse_hours(h).map_err(|_| wrong())?;
            }
            Ok(TimeWindow {
                days: vec![days],
                hours,
            })
        })
        .collect()
}

/// The outcome: the action to take (None: the person's role page) and the rule that decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub rule: Option<String>,
    pub action: Option<Action>,
    /// One line per rule considered, in order: why it did not fire, or that it fired.
    pub trace: Vec<String>,
}

impl RuleSet {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut set: RuleSet = toml::from_str(text).map_err(|e| e.to_string())?;
        set.validate()?;
        set.source = text.to_string();
        Ok(set)
    }

    /// Checks what TOML cannot: unique ids, one scope at most, well-formed days/hours, known pages and
    /// devices, redirects that are absolute http(s) URLs.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut ids = HashSet::new();
        for rule in &self.rules {
            if rule.id.trim().is_empty() {
                problems.push("a rule has an empty id".to_string());
            }
            if !ids.insert(rule.id.as_str()) {
                problems.push(format!("rule {:?} is defined twice", rule.id));
            }
            let scopes = [&rule.code, &rule.asset, &rule.site]
                .iter()
                .filter(|s| s.is_some())
                .count();
            if scopes > 1 {
                problems.push(format!(
                    "rule {}: give at most one of code, asset, site",
                    rule.id
                ));
            }
            if let Some(when) = &rule.when {
                check_condition(when, &rule.id, &mut problems);
            }
            match &rule.then {
                Action::Page(page) => {
                    let known = page.parse::<crate::roles::Role>().is_ok()
                        || PAGE_VARIANTS.contains(&page.as_str());
                    if !known {
                        problems.push(format!(
                            "rule {}: unknown page {page:?} (a role name or one of {PAGE_VARIANTS:?})",
                            rule.id
                        ));
                    }
                }
                Action::Redirect(url) | Action::DeepLink(url) if !fits_a_header(url) => {
                    problems.push(format!(
                        "rule {}: {url:?} holds a line break, a control character or a non-ASCII \
                         one; a URL sent in a Location header cannot (percent-encode it)",
                        rule.id
                    ));
                }
                Action::Redirect(url) => {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        problems.push(format!(
                            "rule {}: a redirect needs an http(s) URL, got {url:?}",
                            rule.id
                        ));
                    }
                }
                Action::DeepLink(url) => {
                    let scheme_ok = url.split_once("://").is_some_and(|(s, _)| {
                        !s.is_empty()
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    });
                    if !scheme_ok || url.starts_with("javascript") || url.starts_with("data") {
                        problems.push(format!(
                            "rule {}: a deep link needs an app scheme, got {url:?}",
                            rule.id
                        ));
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The rule that decides this scan (None: the person's role page). What `decide` finds, without
    /// writing its explanation: the scan path calls this, `explain` calls `decide`.
    pub fn choose(&self, facts: &Facts) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            out_of_scope_of(rule, facts).is_none()
                && rule.when.as_ref().is_none_or(|c| holds(c, facts))
        })
    }

    /// The first rule in scope whose condition holds, with the reasons for every rule before it.
    pub fn decide(&self, facts: &Facts) -> Decision {
        let mut trace = Vec::new();
        for rule in &self.rules {
            if let Some(out) = out_of_scope(rule, facts) {
                trace.push(format!("{}: not for this code ({out})", rule.id));
                continue;
            }
            match rule.when.as_ref().map(|c| eval(c, facts)) {
                None => {
                    trace.push(format!("{}: fired (no condition)", rule.id));
                    return Decision {
                        rule: Some(rule.id.clone()),
                        action: Some(rule.then.clone()),
                        trace,
                    };
                }
                Some(Ok(why)) => {
                    trace.push(format!("{}: fired ({why})", rule.id));
                    return Decision {
                        rule: Some(rule.id.clone()),
                        action: Some(rule.then.clone()),
                        trace,
                    };
                }
                Some(Err(why)) => trace.push(format!("{}: did not match ({why})", rule.id)),
            }
        }
        trace.push("default: the page for the person's role".to_string());
        Decision {
            rule: None,
            action: None,
            trace,
        }
    }

    /// Rules that can never fire: their condition is unsatisfiable, or an earlier rule with a scope at
    /// least as wide and no condition catches every scan first.
    pub fn analyse(&self) -> Vec<String> {
        let mut findings = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(when) = &rule.when {
                if let Some(why) = never(when) {
                    findings.push(format!("{} can never fire: {why}", rule.id));
                    continue;
                }
            }
            for earlier in &self.rules[..i] {
                if earlier.when.is_none() && covers(earlier, rule) {
                    findings.push(format!(
                        "{} is shadowed by {}, which has no condition and covers its scope",
                        rule.id, earlier.id
                    ));
                    break;
                }
                if earlier.when.is_some() && earlier.when == rule.when && covers(earlier, rule) {
                    findings.push(format!(
                        "{} is shadowed by {}, which has the same condition and covers its scope",
                        rule.id, earlier.id
                    ));
                    break;
                }
            }
        }
        findings
    }
}

/// The sites, assets and codes a rule's scope may name (the registry as the store holds it).
#[derive(Debug, Clone, Default)]
pub struct KnownScopes {
    pub sites: std::collections::BTreeSet<String>,
    pub assets: std::collections::BTreeSet<String>,
    pub codes: std::collections::BTreeSet<String>,
    /// Queues whose opening hours `queue_open` cannot read (id, hours as written): on their
    /// machines such a condition matches neither way.
    pub unreadable_hours: Vec<(String, String)>,
}

impl KnownScopes {
    /// From the store: every site, every asset and every code, retired ones included (a rule for
    /// a retired code is not a typo), and the queues whose hours cannot be read.
    pub async fn of(store: &crate::store::Store) -> crate::error::Result<Self> {
        let queues: Vec<(String, String)> =
            sqlx::query_as("SELECT id, hours FROM queues ORDER BY id")
                .fetch_all(store.pool())
                .await?;
        Ok(Self {
            sites: store.sites().await?.into_iter().map(|s| s.id).collect(),
            assets: store.asset_ids().await?.into_iter().collect(),
            codes: store.codes().await?.into_iter().map(|c| c.code).collect(),
            unreadable_hours: queues
                .into_iter()
                .filter(|(_, hours)| parse_opening_hours(hours).is_err())
                .collect(),
        })
    }
}

/// Whether a condition asks `queue_open` anywhere in it.
fn asks_queue_open(c: &Condition) -> bool {
    match c {
        Condition::QueueOpen(_) => true,
        Condition::All(list) | Condition::Any(list) => list.iter().any(asks_queue_open),
        Condition::Not(inner) => asks_queue_open(inner),
        _ => false,
    }
}

impl RuleSet {
    /// Rules scoped to a site, asset or code the registry does not have: a typo there means the
    /// rule silently never fires.
    pub fn unknown_scopes(&self, known: &KnownScopes) -> Vec<String> {
        let mut findings = Vec::new();
        for rule in &self.rules {
            let (kind, id, ids) = match (&rule.code, &rule.asset, &rule.site) {
                (Some(c), _, _) => ("code", c, &known.codes),
                (_, Some(a), _) => ("asset", a, &known.assets),
                (_, _, Some(s)) => ("site", s, &known.sites),
                _ => continue,
            };
            if !ids.contains(id) {
                findings.push(format!(
                    "{} can never fire: it is scoped to {kind} {id:?}, which the registry does not have",
                    rule.id
                ));
            }
        }
        for rule in &self.rules {
            if !rule.when.as_ref().is_some_and(asks_queue_open) {
                continue;
            }
            for (queue, hours) in &known.unreadable_hours {
                findings.push(format!(
                    "{} asks queue_open, but queue {queue}'s hours {hours:?} cannot be read (write days and hours, e.g. Mon-Fri 07:00-18:00, Sat 08:00-12:00): on its machines the condition matches neither way",
                    rule.id
                ));
            }
        }
        findings
    }
}

fn out_of_scope(rule: &Rule, facts: &Facts) -> Option<String> {
    out_of_scope_of(rule, facts).map(|(what, id)| format!("{what} {id}"))
}

/// Which scope (kind and id) of `rule` this scan is outside, if any.
fn out_of_scope_of<'r>(rule: &'r Rule, facts: &Facts) -> Option<(&'static str, &'r str)> {
    match (&rule.code, &rule.asset, &rule.site) {
        (Some(c), _, _) if c != facts.code => Some(("code", c)),
        (_, Some(a), _) if a != facts.asset => Some(("asset", a)),
        (_, _, Some(s)) if s != facts.site => Some(("site", s)),
        _ => None,
    }
}

/// Whether `wide`'s scope includes everything `narrow`'s does. Without the registry, only the
/// certain cases: everything covers all; equal scopes cover each other.
fn covers(wide: &Rule, narrow: &Rule) -> bool {
    let unscoped = wide.code.is_none() && wide.asset.is_none() && wide.site.is_none();
    unscoped || (wide.code == narrow.code && wide.asset == narrow.asset && wide.site == narrow.site)
}

/// Whether `condition` holds: `eval(..).is_ok()` without the words (a test checks they agree).
fn holds(condition: &Condition, facts: &Facts) -> bool {
    match condition {
        Condition::Role(r) => r.contains(facts.role),
        Condition::Language(l) => l.contains(facts.language),
        Condition::Device(d) => d.contains(facts.device),
        Condition::Placement(p) => p.contains(facts.placement),
        Condition::Returning(want) => *want == facts.returning,
        Condition::Time(window) => {
            let local = facts.at.with_timezone(&facts.timezone);
            in_window(window, local.weekday(), local.time())
        }
        Condition::Dates(range) => {
            let day = facts.at.with_timezone(&facts.timezone).date_naive();
            let (from, to) = range.bounds();
            from.is_none_or(|f| day >= f) && to.is_none_or(|t| day <= t)
        }
        Condition::QueueOpen(want) => facts.queue.and_then(|q| q.open_at(facts.at)) == Some(*want),
        Condition::All(list) => list.iter().all(|c| holds(c, facts)),
        Condition::Any(list) => list.iter().any(|c| holds(c, facts)),
        Condition::Not(inner) => !holds(inner, facts),
    }
}

/// Ok(why it holds) or Err(why it does not), in words a person reads.
fn eval(condition: &Condition, facts: &Facts) -> Result<String, String> {
    let within = |name: &str, wanted: &OneOrMany, have: &str| {
        let wanted = wanted.values();
        if wanted.iter().any(|w| w == have) {
            Ok(format!("{name} is {have}"))
        } else {
            Err(format!(
                "{name} is {have}, rule wants {}",
                wanted.join(" or ")
            ))
        }
    };
    match condition {
        Condition::Role(r) => within("role", r, facts.role),
        Condition::Language(l) => within("language", l, facts.language),
        Condition::Device(d) => within("device", d, facts.device),
        Condition::Placement(p) => within("placement", p, facts.placement),
        Condition::Returning(want) => {
            let have = if facts.returning {
                "returning"
            } else {
                "first"
            };
            if *want == facts.returning {
                Ok(format!("a {have} scan"))
            } else {
                Err(format!(
                    "a {have} scan, rule wants {}",
                    if *want { "returning" } else { "first" }
                ))
            }
        }
        Condition::Time(window) => {
            let local = facts.at.with_timezone(&facts.timezone);
            let when = format!(
                "{} {:02}:{:02} {}",
                local.weekday(),
                local.hour(),
                local.minute(),
                facts.timezone
            );
            if in_window(window, local.weekday(), local.time()) {
                Ok(format!("{when} is in {}", describe_window(window)))
            } else {
                Err(format!("{when} is outside {}", describe_window(window)))
            }
        }
        Condition::Dates(range) => {
            let day = facts.at.with_timezone(&facts.timezone).date_naive();
            let (from, to) = range.bounds();
            let after_start = from.is_none_or(|f| day >= f);
            let before_end = to.is_none_or(|t| day <= t);
            let span = format!(
                "{} to {}",
                from.map_or("any date".to_string(), |d| d.to_string()),
                to.map_or("any date".to_string(), |d| d.to_string())
            );
            if after_start && before_end {
                Ok(format!("{day} is within {span}"))
            } else {
                Err(format!("{day} is outside {span}"))
            }
        }
        Condition::QueueOpen(want) => {
            let Some(queue) = facts.queue else {
                return Err("the asset has no support queue".to_string());
            };
            let local = facts.at.with_timezone(&queue.timezone);
            let when = format!(
                "{} {:02}:{:02} {}",
                local.weekday(),
                local.hour(),
                local.minute(),
                queue.timezone
            );
            let state = |open: bool| if open { "open" } else { "closed" };
            match queue.open_at(facts.at) {
                None => Err(format!(
                    "{}'s opening hours {:?} cannot be read",
                    queue.name, queue.hours
                )),
                Some(open) => {
                    let said = format!(
                        "{} is {} at {when} (hours {})",
                        queue.name,
                        state(open),
                        queue.hours
                    );
                    if open == *want {
                        Ok(said)
                    } else {
                        Err(format!("{said}, rule wants it {}", state(*want)))
                    }
                }
            }
        }
        Condition::All(list) => {
            let mut reasons = Vec::new();
            for c in list {
                reasons.push(eval(c, facts)?);
            }
            Ok(reasons.join(", "))
        }
        Condition::Any(list) => {
            let mut reasons = Vec::new();
            for c in list {
                match eval(c, facts) {
                    Ok(why) => return Ok(why),
                    Err(why) => reasons.push(why),
                }
            }
            Err(if reasons.is_empty() {
                "an empty any".to_string()
            } else {
                reasons.join("; and ")
            })
        }
        Condition::Not(inner) => match eval(inner, facts) {
            Ok(why) => Err(format!("not wanted: {why}")),
            Err(why) => Ok(why),
        },
    }
}

fn describe_window(window: &TimeWindow) -> String {
    let days = if window.days.is_empty() {
        "every day".to_string()
    } else {
        window.days.join(",")
    };
    match &window.hours {
        Some(h) => format!("{days} {h}"),
        None => days,
    }
}

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

const DAY_PREFIXES: [&[u8]; 7] = [b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"];

/// A day by its first three letters, any case (`Mon`, `monday`, `TUE`).
fn parse_day(s: &str) -> Option<Weekday> {
    let s = s.trim().as_bytes();
    let prefix = s.get(..3)?;
    DAY_PREFIXES
        .iter()
        .position(|p| prefix.eq_ignore_ascii_case(p))
        .map(|i| WEEK[i])
}

/// The days one spec names, in order: `Mon`, `Mon-Fri`, or `Fri-Mon` (wrapping past Sunday).
fn day_range(spec: &str) -> Option<impl Iterator<Item = Weekday>> {
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let (start, end) = (parse_day(a)?, parse_day(b)?);
    let n = (end.num_days_from_monday() + 7 - start.num_days_from_monday()) % 7 + 1;
    Some(std::iter::successors(Some(start), |d| Some(d.succ())).take(n as usize))
}

/// `parse_days` as a set of bits (bit 0 Monday), without allocating: what a scan checks.
fn day_set(specs: &[String]) -> Option<u8> {
    specs.iter().try_fold(0u8, |set, spec| {
        Some(day_range(spec)?.fold(set, |set, d| set | 1 << d.num_days_from_monday()))
    })
}

/// `Mon-Fri`, `Sat`, `Fri-Mon` (wrapping) into a set of days.
/// Whether `url` can go into a `Location` header as it is: visible ASCII only, as a URI's text is.
fn fits_a_header(url: &str) -> bool {
    url.bytes().all(|b| b.is_ascii_graphic())
}

pub fn parse_days(specs: &[String]) -> Result<Vec<Weekday>, String> {
    let mut days = Vec::new();
    for spec in specs {
        let range = day_range(spec)
            .ok_or_else(|| format!("days {spec:?}: use Mon..Sun or a range like Mon-Fri"))?;
        for d in range {
            if !days.contains(&d) {
                days.push(d);
            }
        }
    }
    Ok(days)
}

/// `07:00-18:00` into (start, end); `24:00` is the end of the day.
pub fn parse_hours(spec: &str) -> Result<(NaiveTime, Option<NaiveTime>), String> {
    hours_of(spec)
        .ok_or_else(|| format!("hours {spec:?}: use HH:MM-HH:MM, e.g. 07:00-18:00 or 18:00-07:00"))
}

/// `parse_hours` without the error text (a scan reads windows that were validated at load).
fn hours_of(spec: &str) -> Option<(NaiveTime, Option<NaiveTime>)> {
    let (a, b) = spec.split_once('-')?;
    let start = clock_time(a.trim())?;
    let end = if b.trim() == "24:00" {
        None
    } else {
        Some(clock_time(b.trim())?)
    };
    Some((start, end))
}

/// `HH:MM`, 00:00 to 23:59, read as chrono's `%H:%M` reads it (which rule files were first checked
/// with): each number one or two digits, whitespace allowed before a number, nothing else.
fn clock_time(s: &str) -> Option<NaiveTime> {
    fn number(s: &str) -> Option<(u32, &str)> {
        let s = s.trim_start();
        let digits = s.bytes().take(2).take_while(u8::is_ascii_digit).count();
        let value = s.get(..digits).filter(|d| !d.is_empty())?.parse().ok()?;
        Some((value, &s[digits..]))
    }
    let (h, rest) = number(s)?;
    let (m, rest) = number(rest.strip_prefix(':')?)?;
    if !rest.is_empty() {
        return None;
    }
    NaiveTime::from_hms_opt(h, m, 0)
}

fn in_window(window: &TimeWindow, day: Weekday, time: NaiveTime) -> bool {
    // Validated at load; an unparsable window never matches.
    let Some(days) = day_set(&window.days) else {
        return false;
    };
    let day_ok = |d: Weekday| days == 0 || days & (1 << d.num_days_from_monday()) != 0;
    let Some(hours) = &window.hours else {
        return day_ok(day);
    };
    let Some((start, end)) = hours_of(hours) else {
        return false;
    };
    match end {
        None => day_ok(day) && time >= start,
        Some(end) if start < end => day_ok(day) && time >= start && time < end,
        // Wraps midnight: the late part belongs to today, the early part to the day before.
        Some(end) => (day_ok(day) && time >= start) || (day_ok(day.pred()) && time < end),
    }
}

fn check_condition(c: &Condition, rule: &str, problems: &mut Vec<String>) {
    match c {
        Condition::Role(r) => {
            for v in r.values() {
                if v.parse::<crate::roles::Role>().is_err() {
                    problems.push(format!("rule {rule}: unknown role {v:?}"));
                }
            }
        }
        Condition::Device(d) => {
            for v in d.values() {
                if v.parse::<crate::device::DeviceClass>().is_err() {
                    problems.push(format!(
                        "rule {rule}: unknown device {v:?} (ios, android, desktop)"
                    ));
                }
            }
        }
        Condition::Time(w) => {
            if let Err(e) = parse_days(&w.days) {
                problems.push(format!("rule {rule}: {e}"));
            }
            if let Some(h) = &w.hours {
                if let Err(e) = parse_hours(h) {
                    problems.push(format!("rule {rule}: {e}"));
                }
            }
        }
        Condition::All(list) | Condition::Any(list) => {
            for c in list {
                check_condition(c, rule, problems);
            }
        }
        Condition::Not(inner) => check_condition(inner, rule, problems),
        Condition::Dates(range) => {
            for value in [&range.from, &range.to].into_iter().flatten() {
                if calendar_date(value).is_none() {
                    problems.push(format!(
                        "rule {rule}: dates take a plain date like 2026-12-01, got {value}"
                    ));
                }
            }
        }
        Condition::Language(_)
        | Condition::Placement(_)
        | Condition::Returning(_)
        | Condition::QueueOpen(_) => {}
    }
}

/// Why a condition can never hold, when that is certain from the rule alone.
fn never(c: &Condition) -> Option<String> {
    match c {
        Condition::Role(v)
        | Condition::Language(v)
        | Condition::Device(v)
        | Condition::Placement(v)
            if v.values().is_empty() =>
        {
            Some("an empty list matches nothing".to_string())
        }
        Condition::Dates(range) => match range.bounds() {
            (Some(f), Some(t)) if f > t => {
                Some(format!("its dates end ({t}) before they start ({f})"))
            }
            _ => None,
        },
        Condition::Time(w) => match w.hours.as_deref().map(parse_hours) {
            Some(Ok((s, Some(e)))) if s == e => Some("its hours are empty".to_string()),
            _ => None,
        },
        Condition::Any(list) if list.is_empty() => Some("an empty any matches nothing".to_string()),
        Condition::Any(list) => {
            let reasons: Vec<String> = list.iter().filter_map(never).collect();
            (reasons.len() == list.len()).then(|| reasons.join("; "))
        }
        Condition::All(list) => {
            if let Some(why) = list.iter().find_map(never) {
                return Some(why);
            }
            // Two single-valued facts asked for disjoint values: role = a and role = b.
            for kind in ["role", "language", "device", "placement"] {
                let sets: Vec<HashSet<String>> = list
                    .iter()
                    .filter_map(|c| match (kind, c) {
                        ("role", Condition::Role(v))
                        | ("language", Condition::Language(v))
                        | ("device", Condition::Device(v))
                        | ("placement", Condition::Placement(v)) => {
                            Some(v.values().into_iter().collect())
                        }
                        _ => None,
                    })
                    .collect();
                if sets.len() > 1 {
                    let common = sets.iter().skip(1).fold(sets[0].clone(), |acc, s| &acc & s);
                    if common.is_empty() {
                        return Some(format!("it asks for {kind}s that exclude each other"));
                    }
                }
            }
            let returning: HashSet<bool> = list
                .iter()
                .filter_map(|c| match c {
                    Condition::Returning(b) => Some(*b),
                    _ => None,
                })
                .collect();
            (returning.len() > 1)
                .then(|| "it asks for a first and a returning scan at once".to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(role: &'a str, at: &str) -> Facts<'a> {
        Facts {
            code: "tJ6bpUpB",
            asset: "pump-icu-07",
            site: "mercy-general",
            placement: "nameplate",
            role,
            language: "en",
            device: "ios",
            returning: false,
            at: at.parse().unwrap(),
            timezone: "America/Chicago".parse().unwrap(),
            queue: Some(QueueHours {
                name: "Biomedical Engineering",
                hours: "Mon-Fri 07:00-18:00, Sat 08:00-12:00",
                windows: Some(Box::leak(
                    parse_opening_hours("Mon-Fri 07:00-18:00, Sat 08:00-12:00")
                        .unwrap()
                        .into_boxed_slice(),
                )),
                timezone: "America/New_York".parse().unwrap(),
            }),
        }
    }

    #[test]
    fn opening_hours_read_as_the_registry_writes_them() {
        let windows = parse_opening_hours("Mon-Fri 07:00-18:00, Sat 06:00-14:00").unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1].days, vec!["Sat".to_string()]);
        assert_eq!(windows[1].hours.as_deref(), Some("06:00-14:00"));
        assert_eq!(parse_opening_hours("Mon-Sun 00:00-24:00").unwrap().len(), 1);
        assert_eq!(parse_opening_hours("Sat-Sun").unwrap()[0].hours, None);
        for bad in [
            "",
            "24/7",
            "Mon-Fri 7am-6pm",
            "Mon-Fri 07:00-18:00 extra",
            "Someday 07:00-18:00",
            "Mon-Fri 07:00-18:00,",
        ] {
            assert!(parse_opening_hours(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn queue_open_follows_the_queues_hours_in_its_own_sites_time_zone() {
        let open = |want: bool, at: &str| {
            let rule = Condition::QueueOpen(want);
            let f = facts("operator", at);
            assert_eq!(holds(&rule, &f), eval(&rule, &f).is_ok(), "{at}");
            holds(&rule, &f)
        };
        // Tue 17:30 in Chicago is 18:30 in New York, where the queue works: closed.
        assert!(open(false, "2026-12-01T23:30:00Z"));
        assert!(!open(true, "2026-12-01T23:30:00Z"));
        // Tue 12:00 New York: open.
        assert!(open(true, "2026-12-01T17:00:00Z"));
        // Sat 10:00 New York: open by the second part; Sun: closed.
        assert!(open(true, "2026-12-05T15:00:00Z"));
        assert!(open(false, "2026-12-06T15:00:00Z"));
        let said = eval(
            &Condition::QueueOpen(true),
            &facts("operator", "2026-12-06T15:00:00Z"),
        )
        .unwrap_err();
        assert_eq!(
            said,
            "Biomedical Engineering is closed at Sun 10:00 America/New_York (hours Mon-Fri 07:00-18:00, Sat 08:00-12:00), rule wants it open"
        );
        // No queue, or hours nobody can read: neither open nor closed.
        let mut f = facts("operator", "2026-12-01T17:00:00Z");
        f.queue = None;
        assert!(!holds(&Condition::QueueOpen(true), &f));
        assert!(!holds(&Condition::QueueOpen(false), &f));
        f.queue = Some(QueueHours {
            name: "Odd",
            hours: "when someone is in",
            windows: None,
            timezone: chrono_tz::UTC,
        });
        assert!(!holds(&Condition::QueueOpen(false), &f));
        assert!(eval(&Condition::QueueOpen(false), &f)
            .unwrap_err()
            .contains("cannot be read"));
        // As a rule file writes it.
        let set = RuleSet::parse(
            "[[rule]]\nid = \"closed\"\nwhen = { queue_open = false }\nthen = { page = \"on-call\" }\n",
        )
        .unwrap();
        assert_eq!(set.rules[0].when, Some(Condition::QueueOpen(false)));
    }

    const RULES: &str = r#"
[[rule]]
id = "other-site"
site = "kestrel-plant-2"
then = { page = "technician" }

[[rule]]
id = "recall-notice"
asset = "pump-icu-07"
when = { dates = { from = 2026-12-01, to = 2026-12-31 } }
then = { redirect = "https://vendor.example/recall/vp300" }

[[rule]]
id = "after-hours"
site = "mercy-general"
when = { all = [ { role = ["anonymous", "operator"] }, { not = { time = { days = ["Mon-Fri"], hours = "07:00-18:00" } } } ] }
then = { page = "on-call" }

[[rule]]
id = "android-app"
when = { all = [ { device = "android" }, { returning = true } ] }
then = { deep_link = "vendorapp://asset" }
"#;

    #[test]
    fn the_first_matching_rule_decides_and_the_trace_says_why_others_did_not() {
        let set = RuleSet::parse(RULES).unwrap();
        // Tuesday 2026-11-24 20:30 in Chicago = 02:30 UTC on the 25th: after hours.
        let d = set.decide(&facts("anonymous", "2026-11-25T02:30:00Z"));
        assert_eq!(d.rule.as_deref(), Some("after-hours"));
        assert_eq!(d.action, Some(Action::Page("on-call".into())));
        assert_eq!(
            d.trace[0],
            "other-site: not for this code (site kestrel-plant-2)"
        );
        assert_eq!(
            d.trace[1],
            "recall-notice: did not match (2026-11-24 is outside 2026-12-01 to 2026-12-31)"
        );
        assert!(d.trace[2].starts_with("after-hours: fired (role is anonymous, Tue 20:30 America/Chicago is outside Mon-Fri 07:00-18:00)"), "{}", d.trace[2]);

        // The same person at 10:00 local on a weekday gets their role page.
        let d = set.decide(&facts("anonymous", "2026-11-24T16:00:00Z"));
        assert_eq!(d.rule, None);
        assert!(
            d.trace.iter().any(|t| t.contains("not wanted: Tue 10:00")),
            "{:?}",
            d.trace
        );
        // A technician after hours is not an operator: role page.
        assert_eq!(
            set.decide(&facts("technician", "2026-11-25T02:30:00Z"))
                .rule,
            None
        );
        // In December the recall notice wins over everything after it.
        assert_eq!(
            set.decide(&facts("anonymous", "2026-12-02T02:30:00Z"))
                .rule
                .as_deref(),
            Some("recall-notice")
        );
    }

    #[test]
    fn devices_and_returning_scans() {
        let set = RuleSet::parse(RULES).unwrap();
        let mut f = facts("technician", "2026-11-24T16:00:00Z");
        f.device = "android";
        assert_eq!(set.decide(&f).rule, None, "a first scan");
        f.returning = true;
        assert_eq!(set.decide(&f).rule.as_deref(), Some("android-app"));
    }

    #[test]
    fn windows_past_midnight_belong_to_the_day_they_start() {
        let w = TimeWindow {
            days: vec!["Fri".into()],
            hours: Some("22:00-06:00".into()),
        };
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(in_window(&w, Weekday::Fri, t(23, 0)));
        assert!(in_window(&w, Weekday::Sat, t(5, 59)));
        assert!(!in_window(&w, Weekday::Sat, t(6, 0)));
        assert!(
            !in_window(&w, Weekday::Fri, t(5, 0)),
            "Friday early morning belongs to Thursday night"
        );
        let all_day = TimeWindow {
            days: vec!["Sat-Sun".into()],
            hours: Some("00:00-24:00".into()),
        };
        assert!(in_window(&all_day, Weekday::Sun, t(23, 59)));
        assert!(!in_window(&all_day, Weekday::Mon, t(0, 0)));
        assert_eq!(
            parse_days(&["Fri-Mon".into()]).unwrap(),
            vec![Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Mon]
        );
    }

    #[test]
    fn bad_rules_are_all_reported_with_their_ids() {
        let text = r#"
[[rule]]
id = "a"
site = "s"
asset = "x"
when = { all = [ { role = "janitor" }, { time = { days = ["Funday"], hours = "25:00-26:00" } }, { device = "toaster" } ] }
then = { page = "nowhere" }

[[rule]]
id = "a"
then = { redirect = "javascript:alert(1)" }
"#;
        let err = RuleSet::parse(text).unwrap_err();
        for want in [
            "at most one of code, asset, site",
            "unknown role \"janitor\"",
            "days \"Funday\"",
            "hours \"25:00-26:00\"",
            "unknown device \"toaster\"",
            "unknown page \"nowhere\"",
            "defined twice",
            "needs an http(s) URL",
        ] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        assert!(RuleSet::parse("[[rule]]\nid = 1").is_err());
    }

    #[test]
    fn a_redirect_or_deep_link_that_cannot_be_a_location_header_is_refused() {
        for url in [
            "https://vendor.example/recall\n",
            "https://vendor.example/re call",
            "https://vendor.example/\u{1}",
            "vendorapp://asset/é",
        ] {
            let action = if url.starts_with("https") {
                "redirect"
            } else {
                "deep_link"
            };
            let text = format!(
                "[[rule]]\nid = \"r\"\nthen = {{ {action} = {} }}\n",
                toml::Value::from(url)
            );
            let err = RuleSet::parse(&text).unwrap_err();
            assert!(err.contains("cannot (percent-encode it)"), "{url:?}: {err}");
        }
        // Every redirect and deep link that passes validation makes a header value.
        for rule in RuleSet::parse(RULES).unwrap().rules {
            if let Action::Redirect(url) | Action::DeepLink(url) = &rule.then {
                assert!(axum::http::HeaderValue::from_str(url).is_ok());
            }
        }
    }

    #[test]
    fn rules_that_can_never_fire_or_are_shadowed_are_reported() {
        let text = r#"
[[rule]]
id = "contradiction"
when = { all = [ { role = "technician" }, { role = "operator" } ] }
then = { page = "technician" }

[[rule]]
id = "backwards-dates"
when = { dates = { from = 2027-01-01, to = 2026-01-01 } }
then = { page = "operator" }

[[rule]]
id = "catch-all"
site = "mercy-general"
then = { page = "operator" }

[[rule]]
id = "never-reached"
site = "mercy-general"
when = { role = "technician" }
then = { page = "technician" }

[[rule]]
id = "other-site-still-fine"
site = "kestrel-plant-2"
when = { role = "technician" }
then = { page = "technician" }
"#;
        let set = RuleSet::parse(text).unwrap();
        let findings = set.analyse();
        assert_eq!(findings.len(), 3, "{findings:?}");
        assert!(findings[0].starts_with(
            "contradiction can never fire: it asks for roles that exclude each other"
        ));
        assert!(findings[1].starts_with("backwards-dates can never fire"));
        assert!(findings[2].starts_with("never-reached is shadowed by catch-all"));
    }

    #[test]
    fn rules_scoped_to_what_the_registry_lacks_are_reported() {
        let text = r#"
[[rule]]
id = "typo-site"
site = "mercy-generl"
then = { page = "technician" }

[[rule]]
id = "good-site"
site = "mercy-general"
then = { page = "technician" }

[[rule]]
id = "typo-asset"
asset = "pump-icu-99"
then = { page = "operator" }

[[rule]]
id = "typo-code"
code = "ZZZZZZZZ"
then = { page = "operator" }

[[rule]]
id = "everywhere"
then = { page = "operator" }
"#;
        let set = RuleSet::parse(text).unwrap();
        let known = KnownScopes {
            sites: ["mercy-general".to_string()].into(),
            assets: ["pump-icu-07".to_string()].into(),
            codes: ["tJ6bpUpB".to_string()].into(),
            unreadable_hours: vec![("night-desk".to_string(), "24/7".to_string())],
        };
        assert_eq!(
            set.unknown_scopes(&known),
            vec![
                "typo-site can never fire: it is scoped to site \"mercy-generl\", which the registry does not have",
                "typo-asset can never fire: it is scoped to asset \"pump-icu-99\", which the registry does not have",
                "typo-code can never fire: it is scoped to code \"ZZZZZZZZ\", which the registry does not have",
            ],
            "hours nobody reads are no finding"
        );
        // A rule that reads them is told which queue's hours it cannot read.
        let asks = RuleSet::parse(
            "[[rule]]\nid = \"closed\"\nwhen = { not = { queue_open = true } }\nthen = { page = \"on-call\" }\n",
        )
        .unwrap();
        assert_eq!(
            asks.unknown_scopes(&known),
            vec!["closed asks queue_open, but queue night-desk's hours \"24/7\" cannot be read (write days and hours, e.g. Mon-Fri 07:00-18:00, Sat 08:00-12:00): on its machines the condition matches neither way"]
        );
    }

    #[test]
    fn the_bundled_rules_are_valid_and_have_no_dead_rules() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manuals/rules.toml");
        let set = RuleSet::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(set.rules.len() >= 3);
        assert_eq!(set.analyse(), Vec::<String>::new());
    }

    #[test]
    fn clock_times_and_day_sets_read_what_validation_accepts() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(parse_hours("07:00-18:30"), Ok((t(7, 0), Some(t(18, 30)))));
        assert_eq!(parse_hours(" 7:05 - 24:00 "), Ok((t(7, 5), None)));
        assert_eq!(parse_hours("7:5-18: 30"), Ok((t(7, 5), Some(t(18, 30)))));
        for bad in [
            "7-18",
            "24:00-07:00",
            "07:60-08:00",
            "aa:bb-cc:dd",
            "07:00",
            "é:00-1:00",
            "007:00-08:00",
            "07 :00-08:00",
            "07:00x-08:00",
        ] {
            assert!(parse_hours(bad).is_err(), "{bad:?} should be refused");
        }
        // What chrono's `%H:%M` accepts, `clock_time` accepts, and the other way round.
        for text in [
            "07:00",
            "7:5",
            "07: 30",
            " 7:05",
            "23:59",
            "24:00",
            "00:60",
            "7",
            ":30",
            "07:",
            "1:2:3",
            "007:00",
            "07:000",
            "+7:00",
            "07 :00",
            "\u{663}:00",
            "07:\t30",
        ] {
            assert_eq!(
                clock_time(text),
                NaiveTime::parse_from_str(text, "%H:%M").ok(),
                "{text:?}"
            );
        }
        assert_eq!(day_set(&["Mon-Fri".into()]), Some(0b001_1111));
        assert_eq!(day_set(&["sunday".into(), "Sat".into()]), Some(0b110_0000));
        assert_eq!(day_set(&["Fri-Mon".into()]), Some(0b111_0001));
        assert_eq!(day_set(&[]), Some(0));
        for bad in ["Mo", "Funday", "Mé-Fri", ""] {
            assert_eq!(day_set(&[bad.into()]), None, "{bad:?} should be refused");
            assert!(parse_days(&[bad.into()]).is_err());
        }
    }

    /// Every condition of a rule set, nested ones included.
    fn conditions(set: &RuleSet) -> Vec<&Condition> {
        fn walk<'c>(c: &'c Condition, out: &mut Vec<&'c Condition>) {
            out.push(c);
            match c {
                Condition::All(list) | Condition::Any(list) => {
                    list.iter().for_each(|c| walk(c, out))
                }
                Condition::Not(inner) => walk(inner, out),
                _ => {}
            }
        }
        let mut out = Vec::new();
        set.rules
            .iter()
            .filter_map(|r| r.when.as_ref())
            .for_each(|c| walk(c, &mut out));
        out
    }

    /// Values written in any case, and `any` / `not` nests: `contains` must lowercase as `values()` does.
    const MIXED_CASE_RULES: &str = r#"
[[rule]]
id = "mixed-case-roles"
when = { any = [ { all = [ { role = ["Technician", "AGENT"] }, { placement = "Service-Panel" } ] }, { not = { device = ["IOS", "Desktop"] } } ] }
then = { page = "technician" }

[[rule]]
id = "weekend-nights"
when = { time = { days = ["SAT-sun"], hours = "20:00-6:00" } }
then = { page = "on-call" }
"#;

    proptest::proptest! {
        #[test]
        fn day_sets_agree_with_the_day_lists(specs in proptest::collection::vec("(Mon|tue|WED|thursday|Fri|sat|Sun|xx|mo|é)(-(Mon|Tue|wed|Thu|FRI|Sat|sun|yy))?", 0..4)) {
            let listed = parse_days(&specs).ok().map(|days| {
                days.iter().fold(0u8, |set, d| set | 1 << d.num_days_from_monday())
            });
            proptest::prop_assert_eq!(day_set(&specs), listed);
        }

        /// The scan path's `choose` and `explain`'s `decide` are two ways of reading the same rules:
        /// they must pick the same rule, and `holds` must agree with `eval` on every condition.
        #[test]
        fn choosing_agrees_with_the_explained_decision(
            hour in 0u32..24, minute in 0u32..60, day in 1u32..31,
            role in 0usize..5, device in 0usize..3, placement in 0usize..3, site in 0usize..3,
            returning: bool, has_queue: bool,
        ) {
            let bundled = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manuals/rules.toml"),
            ).unwrap();
            let at = format!("2026-12-{day:02}T{hour:02}:{minute:02}:00Z");
            let mut f = facts(["anonymous", "technician", "operator", "clinician", "agent"][role], &at);
            f.device = ["ios", "android", "desktop"][device];
            f.placement = ["nameplate", "service-panel", "brochure"][placement];
            f.site = ["mercy-general", "kestrel-plant-2", "meridian-tower"][site];
            f.returning = returning;
            if !has_queue {
                f.queue = None;
            }
            for text in [RULES, bundled.as_str(), MIXED_CASE_RULES] {
                let set = RuleSet::parse(text).unwrap();
                let decided = set.decide(&f);
                proptest::prop_assert_eq!(set.choose(&f).map(|r| r.id.clone()), decided.rule.clone());
                proptest::prop_assert_eq!(set.choose(&f).map(|r| r.then.clone()), decided.action);
                for c in conditions(&set) {
                    proptest::prop_assert_eq!(holds(c, &f), eval(c, &f).is_ok(), "{:?}", c);
                }
            }
        }
    }
}
