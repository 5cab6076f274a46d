//! The `milvus-backup` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::collections::BTreeMap;

use clap::{Parser, Subcommand, ValueEnum};
use milvus_backup::api::Server;
use milvus_backup::backup::BackupRequest;
use milvus_backup::cli;
use milvus_backup::config::Config;
use milvus_backup::context::Context;
use milvus_backup::engine::Engine;
use milvus_backup::jobs::JobStore;
use milvus_backup::names::CollectionRef;
use milvus_backup::restore::RestoreRequest;
use milvus_backup::{Error, Result};
use tracing_subscriber::EnvFilter;

/// Back up and restore Milvus collections.
#[derive(Debug, Parser)]
#[command(name = "milvus-backup", version, about)]
struct Cli {
    /// The configuration file (the Go tool's keys).
    #[arg(long, global = true, default_value = "configs/backup.yaml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API and the Go tool's REST API on one port.
    Server {
        /// Port to listen on, on every interface.
        #[arg(short, long, default_value_t = 8080)]
        port: u16,
    },
    /// Back up collections and wait for the end.
    Create {
        /// The backup's name.
        #[arg(short, long)]
        name: String,
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
    },
    /// List the backups.
    List {
        /// Only backups holding this collection.
        #[arg(short, long)]
        collection: Option<String>,
    },
    /// Show one backup's meta as JSON.
    Get {
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
        #[arg(short, long)]
        name: String,
    },
    /// Re-read a backup and check every object's size and checksum.
    Verify {
        #[arg(short, long)]
        name: String,
    },
    /// Check that Milvus and the storage answer.
    Check,
}

fn init_logs(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,hyper=warn,tower=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(cli::exit_code(&e));
    }
}

async fn run(cli: Cli) -> Result<()> {
    let cfg = Config::load(&cli.config)?;
    // The one-shot commands print their own progress; their logs stay quiet.
    let level = match cli.command {
        Command::Server { .. } => cfg.log.level.as_str(),
        _ => "warn",
    };
    init_logs(level, cli.log_format);
    // Bad certificate files stop the server before it touches anything.
    let server_tls = match cli.command {
        Command::Server { .. } if cfg.security.tls.enabled() => {
            Some(milvus_backup::tls::server_config(&cfg.security.tls)?)
        }
        _ => None,
    };
    let ctx = Context::from_config(&cfg)?;
    let engine = match cli.command {
        // The server keeps job records, so that old jobs still answer after a restart.
        Command::Server { .. } => {
            let records = JobStore::open(&cfg.backup.state_dir)?;
            Engine::with_records(ctx, records, cfg.backup.max_jobs).await
        }
        _ => Engine::new(ctx),
    };
    match cli.command {
        Command::Server { port } => {
            let addr = SocketAddr::from(([0, 0, 0, 0], port));
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::invalid(format!("cannot listen on {addr}: {e}")))?;
            let mut server = Server::new(engine)
                .simple_response(cfg.http.simple_response)
                .token(cfg.security.token.clone())
                .shutdown_grace(Duration::from_secs(cfg.backup.shutdown_grace_seconds));
            if let Some(tls) = server_tls {
                server = server.tls(tls);
            }
            server
                .serve(listener, shutdown_signal())
                .await
                .map_err(|e| Error::Internal(format!("server: {e:#}")))
        }
        Command::Create {
            name,
            collections,
            databases,
            meta_only,
        } => {
            let req = BackupRequest::parse(
                &name,
                &cli::split_list(&collections),
                &cli::split_list(&databases),
                meta_only,
                "",
            )?;
            cli::create(&engine, req).await
        }
        Command::List { collection } => cli::list(&engine, collection).await,
        Command::Get { name, detail } => cli::get(&engine, &name, detail).await,
        Command::Restore {
            name,
            collections,
            suffix,
            rename,
            drop_exist_collection,
            skip_create_collection,
            restore_index,
            load,
            meta_only,
        } => {
            let mut renames = BTreeMap::new();
            for pair in cli::split_list(&rename) {
                let (from, to) = pair.split_once(':').ok_or_else(|| {
                    Error::invalid(format!("rename {pair:?} is not of the form old:new"))
                })?;
                let (source, target) = RestoreRequest::parse_rename(from, to)?;
                renames.insert(source, target);
            }
            let req = RestoreRequest {
                backup_name: name,
                collections: cli::split_list(&collections)
                    .iter()
                    .map(|c| CollectionRef::parse(c))
                    .collect::<Result<_>>()?,
                suffix,
                renames,
                drop_existing: drop_exist_collection,
                skip_create: skip_create_collection,
                restore_index,
                load,
                meta_only,
                request_id: String::new(),
            };
            req.validate()?;
            cli::restore(&engine, req).await
        }
        Command::Delete { name } => cli::delete(&engine, &name).await,
        Command::Verify { name } => cli::verify(&engine, &name).await,
        Command::Check => cli::check(&engine).await,
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
