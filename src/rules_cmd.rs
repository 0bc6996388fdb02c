//! `scanaid rules check` and `scanaid rules explain`: which rule fires for a scan, and why each earlier
//! rule did not; rules that can never fire.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use scanaid_server::device::DeviceClass;
use scanaid_server::roles::Role;
use scanaid_server::scan::ScanContext;

use crate::serve::DataOpts;

#[derive(Args)]
pub struct RulesCmd {
    #[command(subcommand)]
    pub action: RulesAction,
}

#[derive(Subcommand)]
pub enum RulesAction {
    /// Validate the rules and report rules that can never fire or are shadowed (exit 2 if any).
    Check(RulesCheckCmd),
    /// Show which rule fires for a scan of a code, and why each earlier rule did not.
    Explain(RulesExplainCmd),
}

#[derive(Args)]
pub struct RulesCheckCmd {
    #[command(flatten)]
    pub data: DataOpts,
}

#[derive(Args)]
pub struct RulesExplainCmd {
    /// The scanned code.
    #[arg(long)]
    pub code: String,
    /// Who scans: anonymous, operator, technician, biomed, clinician, patient, agent, admin.
    #[arg(long, default_value = "anonymous")]
    pub role: Role,
    /// The language served (primary subtag).
    #[arg(long, default_value = "en")]
    pub lang: String,
    /// When, as RFC 3339 (`2026-11-24T20:30:00-06:00`) or a local time at the code's site
    /// (`2026-11-24 20:30`); default now.
    #[arg(long)]
    pub at: Option<String>,
    /// ios, android or desktop.
    #[arg(long, default_value = "ios")]
    pub device: DeviceClass,
    /// A returning scan (the browser scanned this code before).
    #[arg(long)]
    pub returning: bool,
    #[command(flatten)]
    pub data: DataOpts,
}

pub fn run(cmd: RulesCmd) -> Result<ExitCode> {
    match cmd.action {
        RulesAction::Check(c) => check(c),
        RulesAction::Explain(c) => explain(c),
    }
}

fn check(cmd: RulesCheckCmd) -> Result<ExitCode> {
    let rules = cmd.data.rules()?;
    let findings = rules.analyse();
    println!("{} rule(s) valid", rules.rules.len());
    for f in &findings {
        println!("warning: {f}");
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn explain(cmd: RulesExplainCmd) -> Result<ExitCode> {
    let rules = cmd.data.rules()?;
    let Some(resolved) = cmd.data.resolve_code(&cmd.code)? else {
        bail!("unknown code {:?}: a scan of it gets the fallback page (list codes with `scanaid codes`)", cmd.code);
    };
    if resolved.code.retired_at.is_some() {
        println!(
            "code {} is retired: a scan of it gets the fallback page of its site",
            cmd.code
        );
        return Ok(ExitCode::SUCCESS);
    }
    let timezone: chrono_tz::Tz = resolved
        .site
        .as_ref()
        .and_then(|s| s.timezone.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let at = match &cmd.at {
        None => chrono::Utc::now(),
        Some(text) => parse_time(text, timezone)?,
    };
    let context = ScanContext {
        role: cmd.role,
        signed_in: cmd.role.is_staff(),
        language_query: Some(cmd.lang.clone()),
        accept_language: None,
        device: cmd.device,
        returning: cmd.returning,
    };
    let facts = scanaid_server::scan::facts(&resolved, &context, &cmd.lang, at);
    println!(
        "scan of {} ({}, {}, placement {}) by {} in {} on {} at {} ({})",
        cmd.code,
        facts.asset,
        facts.site,
        facts.placement,
        facts.role,
        facts.language,
        facts.device,
        at.with_timezone(&timezone).format("%a %Y-%m-%d %H:%M"),
        timezone
    );
    let decision = rules.decide(&facts);
    for line in &decision.trace {
        println!("  {line}");
    }
    match (&decision.rule, &decision.action) {
        (Some(rule), Some(action)) => println!("=> rule {rule}: {action}"),
        _ => println!("=> default: the {} page", facts.role),
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_time(text: &str, timezone: chrono_tz::Tz) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .with_context(|| {
            format!("--at {text:?}: use RFC 3339 or \"YYYY-MM-DD HH:MM\" (site time)")
        })?;
    timezone
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
        .with_context(|| format!("--at {text:?} does not exist in {timezone} (a clock change)"))
}
