//! "Nothing written", as sets. A snapshot holds every object of a bucket with
//! its size, ETag and modification time; every file of a directory with its
//! bytes; every database and collection of Milvus with its id. Two snapshots
//! are equal only when nothing was added, removed or rewritten, including
//! changes that net to zero (one object written and another deleted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use milvus_backup::config::Config;
use milvus_backup::milvus::{MilvusApi, MilvusClient};

/// One object as the listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub size: i64,
    pub etag: String,
    pub modified: String,
}

/// Lists a whole bucket.
pub struct BucketLister {
    client: aws_sdk_s3::Client,
    pub bucket: String,
}

impl BucketLister {
    /// Milvus's bucket of the test environment `cfg`.
    pub fn milvus_bucket(cfg: &Config) -> Self {
        let endpoint = format!("http://{}:{}", cfg.minio.address, cfg.minio.port);
        Self::new(
            &endpoint,
            &cfg.minio.access_key_id,
            cfg.minio.secret_access_key.expose(),
            &cfg.minio.bucket_name,
        )
    }

    /// `bucket` at the plain-http `endpoint`.
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str, bucket: &str) -> Self {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                access_key, secret_key, None, None, "tests",
            ))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: bucket.to_string(),
        }
    }

    /// Every object of the bucket.
    pub async fn snapshot(&self) -> BTreeMap<String, Listed> {
        let mut out = BTreeMap::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.expect("ListObjectsV2");
            for o in page.contents() {
                out.insert(
                    o.key().unwrap_or_default().to_string(),
                    Listed {
                        size: o.size().unwrap_or(-1),
                        etag: o.e_tag().unwrap_or_default().to_string(),
                        modified: o.last_modified().map(|t| t.to_string()).unwrap_or_default(),
                    },
                );
            }
        }
        out
    }
}

/// Every file under `dir` (relative path) with its bytes; empty when `dir` is missing.
pub fn dir_snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                out.insert(path.strip_prefix(root).unwrap().join(""), Vec::new());
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Every database and collection of Milvus (`db.name`) with its id.
pub async fn milvus_snapshot(m: &MilvusClient) -> BTreeMap<String, Option<i64>> {
    let mut out = BTreeMap::new();
    for db in m.list_databases().await.expect("ListDatabases") {
        out.insert(format!("{db}."), None);
        for c in m.list_collections(&db).await.expect("ShowCollections") {
            let id = m.collection_id(&db, &c).await.expect("DescribeCollection");
            out.insert(format!("{db}.{c}"), id);
        }
    }
    out
}

/// What differs between two snapshots: added, removed and changed entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff<K> {
    pub added: Vec<K>,
    pub removed: Vec<K>,
    pub changed: Vec<K>,
}

impl<K> Diff<K> {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The entries that differ, whichever way.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.added.iter().chain(&self.removed).chain(&self.changed)
    }
}

/// Compares two snapshots entry by entry.
pub fn diff<K: Ord + Clone, V: PartialEq>(
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
) -> Diff<K> {
    let mut d = Diff {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
    };
    for (k, v) in after {
        match before.get(k) {
            None => d.added.push(k.clone()),
            Some(old) if old != v => d.changed.push(k.clone()),
            Some(_) => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            d.removed.push(k.clone());
        }
    }
    d
}

/// Whether `key` is Milvus's own segment or index data under its root path
/// `root` (`files/insert_log/{collection}/{partition}/{segment}/{field}/{log}`,
/// `files/index_files/{build}/{version}/{partition}/{segment}/{name}`, ...):
/// Milvus writes there in the background (flushes, compactions, index builds)
/// and removes what it collects. Our server writes only under its backup root
/// and `restore-temp-{job}/`; a key it wrote never has this shape.
pub fn is_milvus_own_data(root: &str, key: &str) -> bool {
    let Some(rest) = key.strip_prefix(&format!("{root}/")) else {
        return false;
    };
    let mut parts = rest.split('/');
    let Some(kind) = parts.next() else {
        return false;
    };
    let ids: Vec<&str> = parts.collect();
    let digits = |s: &&str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match kind {
        "insert_log" | "delta_log" | "stats_log" => ids.len() >= 4 && ids.iter().all(digits),
        "index_files" => ids.len() >= 5 && ids[..4].iter().all(digits),
        _ => false,
    }
}
