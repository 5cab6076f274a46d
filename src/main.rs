//! The `milvus-backup` binary.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use milvus_backup::api::Server;
use milvus_backup::cli;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::jobs::JobStore;
use milvus_backup::model::{
    BackupInput, BackupName, BackupRequest, Caller, CollectionFilter, RestoreInput, RestoreRequest,
};
use milvus_backup::{Error, Result};
use tracing::warn;
use tracing_subscriber::EnvFilter;

/// How long an interrupted command is given to record how its work ended
/// (as long as the engine waits for its cancelled jobs).
const COMMAND_END_WAIT: Duration = Duration::from_secs(330);

/// Back up and restore Milvus collections.
#[derive(Debug, Parser)]
#[command(name = "milvus-backup", version, about)]
struct Cli {
    /// The configuration file (the Go tool's keys).
    #[arg(long, global = true, default_value = "configs/backup.yaml")]
    config: PathBuf,
    /// Log format (logs go to stderr; colours only on a terminal).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// One line per event.
    Text,
    /// One JSON object per event.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API and the Go tool's REST API on one port.
    Server {
        /// Port to listen on (gRPC and REST alike).
        #[arg(short, long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on: 0.0.0.0 is every interface, 127.0.0.1 this machine only.
        #[arg(long, default_value = "0.0.0.0")]
        address: std::net::IpAddr,
    },
    /// Back up collections and wait for the end.
    Create {
        /// The backup's name (none: `backup_<UTC time>`, as the Go tool names it).
        #[arg(short, long)]
        name: Option<String>,
        /// Collections, comma separated: `coll` or `db.coll`.
        #[arg(
            short = 'c',
            long = "colls",
            alias = "collections",
            value_delimiter = ','
        )]
        collections: Vec<String>,
        /// Whole databases, comma separated.
        #[arg(short = 'd', long, value_delimiter = ',')]
        databases: Vec<String>,
        /// Schemas, partitions and indexes only.
        #[arg(long = "meta_only", alias = "meta-only")]
        meta_only: bool,
        /// Copy only what no earlier complete backup holds (`--incremental=false`
        /// for a full one; unset: `backup.incremental`).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        incremental: Option<bool>,
    },
    /// List the backups: one name per line, as the Go tool prints them.
    List {
        /// Only backups holding this collection (`coll`: in any database).
        #[arg(short, long)]
        collection: Option<String>,
        /// Also each backup's state, size and collections (tab-separated).
        #[arg(short, long)]
        long: bool,
    },
    /// Show one backup's meta as JSON.
    Get {
        /// The backup's name.
        #[arg(short, long)]
        name: String,
        /// Include partitions and segments.
        #[arg(short, long)]
        detail: bool,
    },
    /// Restore a backup and wait for the end.
    Restore {
        /// The backup's name.
        #[arg(short, long)]
        name: String,
        /// Collections of the backup to restore, comma separated (default: all).
        #[arg(short = 'c', long, value_delimiter = ',')]
        collections: Vec<String>,
        /// Whole databases of the backup to restore, comma separated.
        #[arg(short = 'd', long, value_delimiter = ',')]
        databases: Vec<String>,
        /// Appended to each restored collection's name.
        #[arg(short, long, default_value = "")]
        suffix: String,
        /// Renames `a:b`, comma separated or repeated; `db.a:db2.b` moves databases.
        #[arg(short, long, value_delimiter = ',')]
        rename: Vec<String>,
        /// Drop a target collection that exists.
        #[arg(long = "drop_exist_collection", alias = "drop-existing")]
        drop_exist_collection: bool,
        /// Import into existing collections of the same schema.
        #[arg(long = "skip_create_collection", alias = "skip-create")]
        skip_create_collection: bool,
        /// Recreate the backed-up indexes.
        #[arg(long = "restore_index", alias = "restore-index")]
        restore_index: bool,
        /// Load the restored collections.
        #[arg(long)]
        load: bool,
        /// Collections, partitions and indexes only.
        #[arg(long = "meta_only", alias = "meta-only")]
        meta_only: bool,
    },
    /// Delete one backup.
    Delete {
        /// The backup's name.
        #[arg(short, long)]
        name: String,
    },
    /// Re-read a backup and check every object's size and checksum.
    Verify {
        /// The backup's name.
        #[arg(short, long)]
        name: String,
    },
    /// Check that Milvus and the storage answer.
    Check,
    /// Backup policies: scheduled backups with retention, run by the servers.
    Policy {
        #[command(subcommand)]
        action: cli::policy::PolicyCommand,
    },
}

/// Logs to stderr at `level`, or as `RUST_LOG` says; ANSI colours only when
/// stderr is a terminal (and `NO_COLOR` is not set).
fn init_logs(level: &str, format: LogFormat) {
    let default = || EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn"));
    let (filter, bad_rust_log) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (default(), Some((v, e))),
        },
        _ => (default(), None),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some((value, e)) = bad_rust_log {
        warn!("RUST_LOG={value:?} is not a log filter ({e}); using log.level {level:?}");
    }
}

/// What ends the process with a code of its own besides the core's errors.
enum Failure {
    Core(Error),
    /// The server's port is taken.
    PortInUse(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Core(e)
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let flags = match cli.command {
        Command::Create { .. } => cli::CREATE_FLAGS,
        Command::Restore { .. } => cli::RESTORE_FLAGS,
        Command::Policy { .. } => cli::policy::FLAGS,
        _ => &[],
    };
    match run(cli).await {
        Ok(()) => {}
        Err(Failure::Core(e)) => {
            eprintln!("error: {}", cli::in_flag_words(&e.to_string(), flags));
            std::process::exit(cli::exit_code(&e));
        }
        Err(Failure::PortInUse(msg)) => {
            eprintln!("error: {msg}");
            std::process::exit(cli::EXIT_PORT_IN_USE);
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Signals are caught from here on, before anything is read: a SIGTERM
    // during start-up stops the server gracefully once it serves (before, one
    // that came while the config was read ended the process at once); a CLI
    // command's job is cancelled.
    let signal = shutdown_signal();
    let cfg = Config::load(&cli.config)?;
    // The one-shot commands print their own progress: at the default
    // `info` their logs stay quiet; any other level is theirs too.
    let level = match (&cli.command, cfg.log.filter_level()) {
        (Command::Server { .. }, level) => level,
        (_, "info") => "warn",
        (_, level) => level,
    };
    init_logs(level, cli.log_format);
    for w in &cfg.warnings {
        warn!("{w}");
    }
    // Bad certificate files stop the server before it touches anything.
    let server_tls = match cli.command {
        Command::Server { .. } if cfg.security.tls.enabled() => Some(
            milvus_backup::tls::server_config(
                &cfg.security.tls.cert_path,
                &cfg.security.tls.key_path,
                &cfg.security.tls.client_ca_path,
            )
            .map_err(|e| cfg.locate_error(e))?,
        ),
        _ => None,
    };
    let is_server = matches!(cli.command, Command::Server { .. });
    let (stop, interrupted) = match is_server {
        true => (Some(signal), None),
        false => (None, Some(signal)),
    };
    // The port is taken before anything else starts (job records, recovery).
    let listener = match cli.command {
        Command::Server { port, address } => {
            if let Some(advice) = cli::exposure_warning(
                address,
                !cfg.security.token.expose().is_empty(),
                server_tls.is_some(),
            ) {
                warn!("{advice}");
            }
            Some(listen(SocketAddr::new(address, port)).await?)
        }
        _ => None,
    };
    let ctx = Context::from_config(&cfg).map_err(|e| cfg.locate_error(e))?;
    let engine = match cli.command {
        // The server keeps job records, so that old jobs still answer after a restart.
        Command::Server { .. } => {
            let records = JobStore::open(&cfg.backup.state_dir)?;
            let engine = Engine::with_records(ctx, records, cfg.backup.max_jobs).await;
            engine.start_scheduler();
            engine.start_takeover();
            engine
        }
        _ => Engine::new(ctx),
    };
    let interrupt = engine.clone();
    // A command that reads only has no job to end: a signal stops it at once.
    let runs_a_job = matches!(
        cli.command,
        Command::Create { .. }
            | Command::Restore { .. }
            | Command::Delete { .. }
            | Command::Verify { .. }
            | Command::Policy { .. }
    );
    // A second signal stops at once, but not a policy run: its run's end
    // is written only after its backup job's cleanup, and a run left
    // RUNNING would be taken over by a server, which would make the backup.
    let second_stops = !matches!(cli.command, Command::Policy { .. });
    let command = async move {
        match cli.command {
            Command::Server { .. } => {
                let listener = listener.expect("bound above");
                let mut server = Server::new(engine)
                    .simple_response(cfg.http.simple_response)
                    .token(cfg.security.token.clone())
                    .shutdown_grace(Duration::from_secs(cfg.backup.shutdown_grace_seconds))
                    .limits(milvus_backup::api::ServerLimits::from_config(&cfg.http));
                if let Some(tls) = server_tls {
                    server = server.tls(tls);
                }
                server
                    .serve(listener, stop.expect("a server has its stop signal"))
                    .await
                    .map_err(|e| Error::Internal(format!("server: {e:#}")).into())
            }
            Command::Create {
                name,
                collections,
                databases,
                meta_only,
                incremental,
            } => {
                let generated_name = name.is_none();
                let req = BackupRequest::parse(BackupInput {
                    name: name.unwrap_or_else(|| BackupName::generated(chrono::Utc::now())),
                    collections: cli::split_list("--colls", &collections)?,
                    databases: cli::split_list("--databases", &databases)?,
                    meta_only,
                    incremental,
                    caller: Caller::default(),
                    generated_name,
                })?;
                Ok(cli::create(&engine, req).await?)
            }
            Command::List { collection, long } => {
                let filter = match collection.as_deref() {
                    Some("") => {
                        let why = "list --collection is empty: name coll or db.coll";
                        return Err(Failure::Core(Error::invalid(why)));
                    }
                    Some(c) => CollectionFilter::parse(c)?,
                    None => None,
                };
                Ok(cli::list(&engine, filter, long).await?)
            }
            Command::Get { name, detail } => {
                Ok(cli::get(&engine, &BackupName::parse(&name)?, detail).await?)
            }
            Command::Restore {
                name,
                collections,
                databases,
                suffix,
                rename,
                drop_exist_collection,
                skip_create_collection,
                restore_index,
                load,
                meta_only,
            } => {
                let mut renames = Vec::new();
                for pair in cli::split_list("--rename", &rename)? {
                    let (from, to) = pair.split_once(':').ok_or_else(|| {
                        Error::invalid(format!("rename {pair:?} is not of the form old:new"))
                    })?;
                    renames.push((from.to_string(), to.to_string()));
                }
                let req = RestoreRequest::parse(RestoreInput {
                    backup_name: name,
                    collections: cli::split_list("--collections", &collections)?,
                    databases: cli::split_list("--databases", &databases)?,
                    suffix,
                    renames,
                    drop_existing: drop_exist_collection,
                    skip_create: skip_create_collection,
                    restore_index,
                    load,
                    meta_only,
                    caller: Caller::default(),
                })?;
                Ok(cli::restore(&engine, req).await?)
            }
            Command::Delete { name } => Ok(cli::delete(&engine, &BackupName::parse(&name)?).await?),
            Command::Verify { name } => Ok(cli::verify(&engine, &BackupName::parse(&name)?).await?),
            Command::Check => {
                cli::check(&engine).await?;
                Ok(cli::credentials(&cfg).await?)
            }
            Command::Policy { action } => Ok(cli::policy::run(&engine, action).await?),
        }
    };
    let Some(interrupted) = interrupted else {
        return command.await;
    };
    // Ctrl-C or SIGTERM: the command's job is cancelled, not left for a
    // server on the same storage to resume.
    // The command goes on while its jobs are cancelled, so that what it
    // runs itself (a policy run) records its end as cancelled too.
    tokio::pin!(command);
    tokio::select! {
        done = &mut command => done,
        _ = interrupted => {
            if !runs_a_job {
                return Err(Failure::Core(Error::Cancelled("interrupted by a signal".into())));
            }
            warn!("interrupted: cancelling the running job (a second signal stops without waiting for its end)");
            // Listening again at once: a second signal is not swallowed.
            let again = match second_stops {
                true => futures::future::Either::Left(shutdown_signal()),
                false => futures::future::Either::Right(std::future::pending::<()>()),
            };
            let ended = async {
                let (_, ended) = tokio::join!(
                    interrupt.interrupt(),
                    tokio::time::timeout(COMMAND_END_WAIT, &mut command)
                );
                ended.ok()
            };
            let ended = tokio::select! {
                ended = ended => ended,
                _ = again => None,
            };
            // How the command ended: cancelled, or done past the point
            // where a cancel no longer stops it (a backup committed).
            ended.unwrap_or_else(|| {
                Err(Failure::Core(Error::Cancelled(
                    "interrupted by a signal; the job was asked to stop, and its end was not \
                     waited for: a later command or server finishes it"
                        .into(),
                )))
            })
        }
    }
}

/// Binds the server's port; a port already taken is a failure of its own.
async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Failure::PortInUse(format!(
                "cannot listen on {addr}: port {} is already in use (another milvus-backup \
                 server?); stop that process or choose another port with --port",
                addr.port()
            ))
        } else {
            Failure::Core(Error::invalid(format!("cannot listen on {addr}: {e}")))
        }
    })
}

/// Completes on SIGTERM or Ctrl-C.
/// SIGTERM or Ctrl-C. The handlers are installed when this is called (not
/// when the future is first polled), so a signal that comes while the server
/// binds its port or recovers its jobs is not lost (nor fatal).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    async move {
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
}
