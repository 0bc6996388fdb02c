//! `scanaid rules check` and `scanaid rules explain`: which rule fires for a scan, and why each earlier
//! rule did not; rules that can never fire.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use scanaid_server::device::DeviceClass;
use scanaid_server::roles::Role;

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
    let mut findings = rules.analyse();
    findings.extend(rules.unknown_scopes(&cmd.data.known_scopes()?));
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
    let resolved = cmd.data.resolve_code(&cmd.code)?;
    let query = scanaid_server::rules_admin::ExplainQuery {
        code: cmd.code.clone(),
        role: cmd.role.as_str().to_string(),
        lang: cmd.lang.clone(),
        at: cmd.at.clone().unwrap_or_default(),
        device: cmd.device.as_str().to_string(),
        returning: cmd.returning.then(String::new),
        ..Default::default()
    };
    match scanaid_server::rules_admin::explain(
        &rules,
        &cmd.code,
        resolved.as_ref(),
        &query,
        chrono::Utc::now(),
    ) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => bail!("{problem} (list codes with `scanaid codes`)"),
    }
}
