//! The demo: create `hello_milvus` as the Go tool's example does, back it up
//! through a running milvus-backup server over gRPC (streaming progress),
//! restore it as `hello_milvus_recover`, and compare every row.
//!
//! `cargo run --example hello_milvus -- --server http://127.0.0.1:8080`

#[path = "../tests/common/hello.rs"]
mod hello;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::Config;
use milvus_backup::milvus::MilvusClient;

#[derive(Debug, Parser)]
struct Args {
    /// The milvus-backup server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The configuration (for the Milvus address).
    #[arg(long, default_value = "configs/backup.yaml")]
    config: PathBuf,
    /// Only create hello_milvus, then stop.
    #[arg(long)]
    create_only: bool,
}

const FIELDS: &[&str] = &["pk", "random", "var", "embeddings"];

fn state(s: i32) -> String {
    pb::JobState::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("JOB_STATE_").to_string())
        .unwrap_or_else(|_| s.to_string())
}

fn line(p: Option<&pb::Progress>) -> String {
    let p = p.copied().unwrap_or_default();
    format!(
        "{:>3}%  {}/{} files  {}/{} bytes  {}/{} collections",
        p.percent,
        p.files_done,
        p.files_total,
        p.bytes_done,
        p.bytes_total,
        p.collections_done,
        p.collections_total
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = Config::load(&args.config)?;
    let milvus = MilvusClient::new(&cfg.milvus)?;

    println!(
        "== creating hello_milvus (3000 rows in 3 inserts) in Milvus at {}",
        cfg.milvus.url()
    );
    hello::drop_if_exists(&milvus, "default", "hello_milvus_recover").await;
    hello::create(&milvus, "hello_milvus", 3000, 3, 2024).await;
    let source = hello::rows(&milvus, "default", "hello_milvus", "pk >= 0", FIELDS).await;
    if args.create_only {
        println!("== hello_milvus has {} rows", source.len());
        return Ok(());
    }

    let mut client = connect(&args.server).await?;
    let name = format!(
        "hello_milvus_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    println!(
        "== backing up hello_milvus as {name:?} through {}",
        args.server
    );
    let mut stream = client
        .create_backup(pb::CreateBackupRequest {
            backup_name: name.clone(),
            collection_names: vec!["hello_milvus".into()],
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(msg) = stream.message().await? {
        let b = msg.backup.context("empty snapshot")?;
        println!(
            "   backup  {:<9} {}",
            state(b.state),
            line(b.progress.as_ref())
        );
        last = Some(b);
    }
    let backup = last.context("no snapshot")?;
    if backup.state != pb::JobState::Succeeded as i32 {
        bail!("backup failed: {}", backup.error_message);
    }
    println!(
        "   {} rows, {} bytes, Milvus {}",
        backup.collections.iter().map(|c| c.row_count).sum::<i64>(),
        backup.size_bytes,
        backup.milvus_version
    );

    println!("== restoring {name:?} as hello_milvus_recover (with its index, loaded)");
    let mut stream = client
        .restore(pb::RestoreRequest {
            backup_name: name.clone(),
            collection_suffix: "_recover".into(),
            restore_index: true,
            load: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(msg) = stream.message().await? {
        let r = msg.restore.context("empty snapshot")?;
        println!(
            "   restore {:<9} {}",
            state(r.state),
            line(r.progress.as_ref())
        );
        last = Some(r);
    }
    let job = last.context("no snapshot")?;
    if job.state != pb::JobState::Succeeded as i32 {
        bail!("restore failed: {}", job.error_message);
    }

    hello::wait_loaded(&milvus, "default", "hello_milvus_recover").await;
    let restored = hello::rows(
        &milvus,
        "default",
        "hello_milvus_recover",
        "pk >= 0",
        FIELDS,
    )
    .await;
    hello::assert_rows_equal(&source, &restored);
    println!(
        "== OK: hello_milvus_recover has {} rows, equal to hello_milvus field by field (vectors included)",
        restored.len()
    );
    Ok(())
}

async fn connect(server: &str) -> anyhow::Result<BackupServiceClient<tonic::transport::Channel>> {
    for _ in 0..100 {
        if let Ok(c) = BackupServiceClient::connect(server.to_string()).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("cannot reach the milvus-backup server at {server}")
}
