//! Helpers of the benchmark (`scripts/bench/run.sh`), not part of the product:
//!
//! - `raw-copy`: the store's limit, a bare loop of CopyObject calls at high
//!   concurrency over every object under some prefixes;
//! - `clone-backups`: makes N copies of a small backup's meta (each renamed),
//!   so ListBackups can be timed with thousands of backups present;
//! - `import-alone`: the time Milvus itself spends importing a backup's
//!   binlogs into an existing empty collection (the restore's reference);
//! - `time-list`: times gRPC ListBackups of a running server, the first call
//!   (cold: every summary read) and the median of the next ones.
//!
//! Prints one line of `key=value` figures.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use milvus_backup::api::proto as pb;
use milvus_backup::api::proto::backup_service_client::BackupServiceClient;
use milvus_backup::config::{BucketConfig, MilvusConfig, Secret};
use milvus_backup::meta::{BackupLayout, Catalog, LogKind};
use milvus_backup::milvus::{ImportPhase, ImportRequest, MilvusApi, MilvusClient};
use milvus_backup::storage::{ObjectStore, S3Bucket, Source};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:3900")]
    endpoint: String,
    #[arg(long)]
    access_key: String,
    #[arg(long)]
    secret_key: String,
    #[arg(long)]
    bucket: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copies every object under each `--src` prefix to `--dst` + the key.
    RawCopy {
        #[arg(long, required = true)]
        src: Vec<String>,
        #[arg(long)]
        dst: String,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// Copies the meta of backup `--template` (under `--root`) to `--count` new names.
    CloneBackups {
        #[arg(long, default_value = "backup")]
        root: String,
        #[arg(long)]
        template: String,
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Deletes every object whose key starts with `--prefix` (DeleteObjects, 1000 a call).
    DeletePrefix {
        #[arg(long)]
        prefix: String,
    },
    /// Times ListBackups of the server at `--server` (`http://127.0.0.1:PORT`).
    TimeList {
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Imports backup `--backup`'s first collection into the existing `--target`.
    ImportAlone {
        #[arg(long, default_value = "backup")]
        root: String,
        #[arg(long)]
        backup: String,
        #[arg(long)]
        target: String,
        #[arg(long, default_value = "127.0.0.1")]
        milvus: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bucket = Arc::new(S3Bucket::new(&BucketConfig {
        endpoint: args.endpoint.clone(),
        region: "us-east-1".into(),
        access_key_id: args.access_key.clone(),
        secret_access_key: Secret::new(args.secret_key.clone()),
        bucket: args.bucket.clone(),
        root_path: String::new(),
        ca_cert_path: String::new(),
        multipart_copy_threshold: u64::MAX,
        ..Default::default()
    })?);
    match args.command {
        Command::RawCopy {
            src,
            dst,
            concurrency,
        } => {
            // The listing, timed apart: every prefix at once (as many as the copies).
            let listing = Instant::now();
            let listed: Vec<Vec<_>> = futures::stream::iter(&src)
                .map(|prefix| bucket.list(prefix))
                .buffered(concurrency)
                .try_collect()
                .await?;
            let list_seconds = listing.elapsed().as_secs_f64();
            let objects: Vec<_> = listed.into_iter().flatten().collect();
            let bytes: u64 = objects.iter().map(|o| o.size).sum();
            let count = objects.len();
            let started = Instant::now();
            futures::stream::iter(objects)
                .map(|o| {
                    let bucket = bucket.clone();
                    let dst_key = format!("{}/{}", dst.trim_end_matches('/'), o.key);
                    async move {
                        bucket
                            .copy_in(Source::new(bucket.bucket(), &o.key, o.size), &dst_key)
                            .await
                    }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "objects={count} bytes={bytes} list_seconds={list_seconds:.3} seconds={seconds:.3}"
            );
        }
        Command::CloneBackups {
            root,
            template,
            prefix,
            count,
            concurrency,
        } => {
            // The meta is what ListBackups reads; the binlogs are not needed.
            // Each copy gets its own id, and its catalog index entry, as the
            // service's writers make them.
            let from = format!("{root}/{template}/");
            let mut files = Vec::new();
            for o in bucket.list(&format!("{from}meta/")).await? {
                let rest = o.key[from.len()..].to_string();
                let text = String::from_utf8(bucket.read(&o.key).await?.to_vec())?;
                files.push((Some(rest), text));
            }
            let top = bucket.read(&format!("{from}meta/backup_meta.json")).await?;
            let id = serde_json::from_slice::<serde_json::Value>(&top)?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let index = format!("{root}/_catalog/{template}/");
            for o in bucket.list(&index).await? {
                let text = String::from_utf8(bucket.read(&o.key).await?.to_vec())?;
                // `None`: the catalog index entry.
                files.push((None, text));
            }
            let started = Instant::now();
            let (root, template, files, id) = (&root, &template, &files, &id);
            let jobs = (0..count).flat_map(|i| {
                let name = format!("{prefix}{i:05}");
                let new_id = format!("{id}-{i:05}");
                files.iter().map(move |(rest, text)| {
                    let key = match rest {
                        Some(rest) => format!("{root}/{name}/{rest}"),
                        None => format!("{root}/_catalog/{name}/{new_id}"),
                    };
                    let body = text
                        .replace(template.as_str(), &name)
                        .replace(id.as_str(), &new_id);
                    (key, body)
                })
            });
            futures::stream::iter(jobs)
                .map(|(key, body)| {
                    let bucket = bucket.clone();
                    async move { bucket.write(&key, Bytes::from(body)).await }
                })
                .buffer_unordered(concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "backups={count} files_each={} seconds={seconds:.3}",
                files.len()
            );
        }
        Command::DeletePrefix { prefix } => {
            let keys: Vec<String> = bucket
                .list(&prefix)
                .await?
                .into_iter()
                .map(|o| o.key)
                .collect();
            bucket.delete(&keys).await?;
            println!("deleted={}", keys.len());
        }
        Command::TimeList { server, runs } => {
            let mut client = BackupServiceClient::connect(server).await?;
            let mut times = Vec::new();
            let mut listed = 0;
            for _ in 0..runs.max(2) {
                let started = Instant::now();
                let mut stream = client
                    .list_backups(pb::ListBackupsRequest::default())
                    .await?
                    .into_inner();
                listed = 0;
                while stream.message().await?.is_some() {
                    listed += 1;
                }
                times.push(started.elapsed().as_secs_f64());
            }
            let first = times.remove(0);
            times.sort_by(f64::total_cmp);
            println!(
                "backups={listed} first_s={first:.3} median_s={:.3}",
                times[times.len() / 2]
            );
        }
        Command::ImportAlone {
            root,
            backup,
            target,
            milvus,
        } => {
            let catalog = Catalog::new(bucket.clone(), BackupLayout::new(root));
            let info = catalog
                .read(&backup)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no backup {backup}"))?;
            let coll = &info.collection_backups[0];
            let client = MilvusClient::new(&MilvusConfig {
                address: milvus,
                ..Default::default()
            })?;
            let version = client.version().await?;
            let layout = catalog.layout();
            let started = Instant::now();
            let mut tasks = Vec::new();
            for part in coll
                .partition_backups
                .iter()
                .filter(|p| !p.segment_backups.is_empty())
            {
                let dir = |kind| {
                    layout.partition_dir(&backup, kind, coll.collection_id, part.partition_id)
                };
                // As a restore does: no delta folder when there are no deletes.
                let deltas = dir(LogKind::Delta);
                let deltas = if bucket.list(&deltas).await?.is_empty() {
                    String::new()
                } else {
                    deltas
                };
                let request = ImportRequest {
                    db: "default".into(),
                    collection: target.clone(),
                    partition: part.partition_name.clone(),
                    files: vec![dir(LogKind::Insert), deltas],
                    options: version.import_options(coll.backup_timestamp, 0),
                };
                tasks.extend(client.import(&request).await?);
            }
            let mut rows = 0;
            for task in tasks {
                loop {
                    let state = client.import_state(task).await?;
                    match state.phase {
                        ImportPhase::Completed => {
                            rows += state.row_count;
                            break;
                        }
                        ImportPhase::Failed(_) => anyhow::bail!("import {task} failed: {state:?}"),
                        _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    }
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            println!("rows={rows} seconds={seconds:.3}");
        }
    }
    Ok(())
}
