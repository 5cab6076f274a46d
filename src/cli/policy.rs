//! `milvus-backup policy …`: backup policies from the command line, stored
//! in the backup storage where every server's scheduler finds them.

use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Policy, PolicyInput, PolicyName, PolicyUpdate, RetentionInput};
use crate::policy::RunState;

/// The policy fields and the flags that set them (errors name the flags).
pub const FLAGS: &[(&str, &str)] = &[
    ("schedule", "--schedule"),
    ("time_zone", "--time_zone"),
    ("collection_names", "--collections"),
    ("database_names", "--databases"),
    ("all_collections", "--all"),
    ("name_template", "--name_template"),
    ("retention.keep_last", "--keep_last"),
    ("retention.keep_hourly", "--keep_hourly"),
    ("retention.keep_daily", "--keep_daily"),
    ("retention.keep_weekly", "--keep_weekly"),
    ("retention.keep_monthly", "--keep_monthly"),
    ("max_age", "--max_age"),
];

/// What `policy` does.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Store a new policy.
    Create(PolicyArgs),
    /// Every policy with its status (JSON).
    List,
    /// One policy with its status (JSON).
    Get {
        /// The policy's name.
        #[arg(short, long)]
        name: String,
    },
    /// Replace a policy's settings (its runs and backups stay).
    Update(PolicyArgs),
    /// Remove a policy and its run records (its backups stay).
    Delete {
        /// The policy's name.
        #[arg(short, long)]
        name: String,
    },
    /// Run a policy now, with its retention, and wait for the end.
    Run {
        /// The policy's name.
        #[arg(short, long)]
        name: String,
    },
    /// What the retention rules would delete now, with the reasons.
    Preview {
        /// The policy's name.
        #[arg(short, long)]
        name: String,
    },
}

/// A policy's settings.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy's name.
    #[arg(short, long)]
    name: String,
    /// A cron expression of 5 fields, or 6 with leading seconds.
    #[arg(long)]
    schedule: String,
    /// The schedule's IANA time zone (default UTC).
    #[arg(long = "time_zone", default_value = "")]
    time_zone: String,
    /// Collections (`coll` or `db.coll`), comma separated.
    #[arg(short = 'c', long, value_delimiter = ',')]
    collections: Vec<String>,
    /// Whole databases, comma separated.
    #[arg(short = 'd', long, value_delimiter = ',')]
    databases: Vec<String>,
    /// Every collection of every database.
    #[arg(long)]
    all: bool,
    /// Copy only what earlier backups do not hold.
    #[arg(long)]
    incremental: bool,
    /// The backups' names, e.g. `nightly_{yyyyMMdd_HHmm}` (default `{policy}_{yyyyMMdd_HHmmss}`).
    #[arg(long = "name_template", default_value = "")]
    name_template: String,
    /// Keep the N newest backups.
    #[arg(long = "keep_last", default_value_t = 0, allow_negative_numbers = true)]
    keep_last: i64,
    /// Keep the newest backup of each of the last N hours with backups.
    #[arg(
        long = "keep_hourly",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_hourly: i64,
    /// Keep the newest backup of each of the last N days with backups.
    #[arg(
        long = "keep_daily",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_daily: i64,
    /// Keep the newest backup of each of the last N ISO weeks with backups.
    #[arg(
        long = "keep_weekly",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_weekly: i64,
    /// Keep the newest backup of each of the last N months with backups.
    #[arg(
        long = "keep_monthly",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    keep_monthly: i64,
    /// Keep every backup younger than this (`36h`, `7d`, `2w`).
    #[arg(long = "max_age", default_value = "")]
    max_age: String,
    /// Store it without running its schedule.
    #[arg(long, conflicts_with = "enabled")]
    disabled: bool,
    /// Run its schedule (the default of `create`; `update` without either
    /// flag keeps what the policy had).
    #[arg(long)]
    enabled: bool,
}

impl PolicyArgs {
    /// The flags as the model's raw input (checked by `Policy::parse` or
    /// `PolicyUpdate::parse`).
    fn input(self) -> Result<PolicyInput> {
        Ok(PolicyInput {
            name: self.name,
            schedule: self.schedule,
            time_zone: self.time_zone,
            collection_names: super::split_list("--collections", &self.collections)?,
            database_names: super::split_list("--databases", &self.databases)?,
            all_collections: self.all,
            incremental: self.incremental,
            name_template: self.name_template,
            retention: RetentionInput {
                keep_last: self.keep_last,
                keep_hourly: self.keep_hourly,
                keep_daily: self.keep_daily,
                keep_weekly: self.keep_weekly,
                keep_monthly: self.keep_monthly,
                max_age: self.max_age,
            },
            enabled: match (self.enabled, self.disabled) {
                (_, true) => Some(false),
                (true, _) => Some(true),
                _ => None,
            },
        })
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Runs one `policy` command.
pub async fn run(engine: &Arc<Engine>, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Create(args) => {
            let policy = Policy::parse(args.input()?)?;
            print_json(&engine.create_policy(policy).await?)
        }
        PolicyCommand::Update(args) => {
            let update = PolicyUpdate::parse(args.input()?)?;
            print_json(&engine.update_policy(update).await?)
        }
        PolicyCommand::List => print_json(&engine.list_policies().await?),
        PolicyCommand::Get { name } => {
            print_json(&engine.get_policy(&PolicyName::parse(&name)?).await?)
        }
        PolicyCommand::Delete { name } => {
            engine.delete_policy(&PolicyName::parse(&name)?).await?;
            println!("deleted policy {name} (its backups stay)");
            Ok(())
        }
        PolicyCommand::Run { name } => {
            // The run's backup jobs are shown as they go, then retention runs.
            let (tx, started) = tokio::sync::oneshot::channel();
            let policy = PolicyName::parse(&name)?;
            let run = engine.run_policy_and_wait(&policy, |backup| {
                let _ = tx.send(backup);
            });
            let shown = async {
                match started.await {
                    Ok(backup) => super::show_backup_jobs(engine, &backup).await,
                    Err(_) => std::future::pending().await,
                }
            };
            let run = tokio::select! {
                run = run => run?,
                () = shown => unreachable!("shown until the run ends"),
            };
            print_json(&run)?;
            if run.state == RunState::Succeeded {
                return Ok(());
            }
            // Exits with the code of the run's own error.
            Err(Error::recorded(
                run.error_kind.as_deref().unwrap_or("failed_precondition"),
                format!(
                    "policy {name}: the run for backup {} ended {:?}: {}",
                    run.backup,
                    run.state,
                    run.error.unwrap_or_default()
                ),
            ))
        }
        PolicyCommand::Preview { name } => {
            for d in engine.preview_retention(&PolicyName::parse(&name)?).await? {
                let verdict = if d.keep { "keep" } else { "delete" };
                println!(
                    "{verdict:<6} {:<40} {} {}",
                    d.name,
                    d.time.to_rfc3339(),
                    d.reason
                );
            }
            Ok(())
        }
    }
}
