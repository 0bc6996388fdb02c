//! `scanaid users list` and `scanaid users reset-password`: the staff accounts from the command
//! line, for whoever runs the machine. The way back in when the only administrator has forgotten
//! their password (the web page needs another administrator): shell access to the data directory
//! is already full access, so it asks for nothing more.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::serve::{runtime, DataOpts};

#[derive(Args)]
pub struct UsersCmd {
    #[command(subcommand)]
    pub action: UsersAction,
}

#[derive(Subcommand)]
pub enum UsersAction {
    /// Every staff account: username, role, created.
    List(UsersListCmd),
    /// Give an account a new random password (printed once), end its sessions and lift a sign-in
    /// lock. For a locked-out sole administrator too.
    ResetPassword(ResetPasswordCmd),
}

#[derive(Args)]
pub struct UsersListCmd {
    #[command(flatten)]
    pub data: DataOpts,
}

#[derive(Args)]
pub struct ResetPasswordCmd {
    /// The account's username.
    #[arg(long)]
    pub username: String,
    #[command(flatten)]
    pub data: DataOpts,
}

pub fn run(cmd: UsersCmd) -> Result<ExitCode> {
    match cmd.action {
        UsersAction::List(cmd) => list(cmd.data),
        UsersAction::ResetPassword(cmd) => reset_password(cmd),
    }
}

/// The store of `data`, which must exist: these commands manage a server's accounts, they do not
/// start a new store.
fn existing_store(data: &DataOpts) -> Result<()> {
    let file = data.data_dir.join(scanaid_server::store::DATABASE_FILE);
    if !file.exists() {
        bail!(
            "no store at {} (start the server once with `scanaid serve --data {}`, or give --data)",
            file.display(),
            data.data_dir.display()
        );
    }
    Ok(())
}

fn list(data: DataOpts) -> Result<ExitCode> {
    existing_store(&data)?;
    let users = runtime()?.block_on(async {
        let store = scanaid_server::store::Store::open(&data.data_dir).await?;
        let users = scanaid_server::auth::list_users(&store).await;
        store.close().await;
        anyhow::Ok(users?)
    })?;
    for (_, username, role, created) in users {
        println!("{username}\t{role}\t{created}");
    }
    Ok(ExitCode::SUCCESS)
}

fn reset_password(cmd: ResetPasswordCmd) -> Result<ExitCode> {
    existing_store(&cmd.data)?;
    let username = cmd.username.trim().to_ascii_lowercase();
    let password = runtime()?.block_on(async {
        let store = scanaid_server::store::Store::open(&cmd.data.data_dir).await?;
        let password = scanaid_server::auth::reset_password(&store, &username).await;
        // Audited as an administrator's reset is (who can read patients' data may have changed).
        let audited = match &password {
            Ok(Some(_)) => {
                store
                    .audit(
                        "command line",
                        "account.password_reset",
                        None,
                        &username,
                        None,
                    )
                    .await
            }
            _ => Ok(()),
        };
        store.close().await;
        audited?;
        anyhow::Ok(password?)
    })?;
    match password {
        Some(password) => {
            println!("new password for {username}: {password}");
            println!(
                "(shown only now; their sessions ended. They can change it at /account/password.)"
            );
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("there is no user {username:?} (list them: scanaid users list)"),
    }
}
