//! Where things are: the backup tree (the Go tool's v0.5 layout) and Milvus's binlogs.
//!
//! ```text
//! {root}/{name}/meta/{backup,collection,partition,segment,full}_meta.json
//! {root}/{name}/binlogs/insert_log/{coll}/{part}/{group}/{seg}/{field}/{log}
//! {root}/{name}/binlogs/delta_log/{coll}/{part}/{group}/{seg}/{log}
//! ```

use std::marker::PhantomData;

use crate::storage::join_key;

/// The meta files, in the order they are written. `full_meta.json` comes last:
/// a backup without it is not complete.
pub const META_FILES: [&str; 5] = [
    "segment_meta.json",
    "partition_meta.json",
    "collection_meta.json",
    "backup_meta.json",
    "full_meta.json",
];

/// The kinds of binlog a segment has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Insert,
    Delta,
}

impl LogKind {
    /// The folder name Milvus and the backup use.
    pub fn dir(self) -> &'static str {
        match self {
            LogKind::Insert => "insert_log",
            LogKind::Delta => "delta_log",
        }
    }
}

/// Paths inside one root folder of a bucket; `Of` says whose tree it is.
#[derive(Debug, Clone)]
pub struct Layout<Of> {
    root: String,
    of: PhantomData<Of>,
}

/// The backup tree, inside the backup root (`minio.backupRootPath`).
pub type BackupLayout = Layout<Backups>;
/// Milvus's binlogs, inside Milvus's bucket (`minio.rootPath`).
pub type MilvusLayout = Layout<Milvus>;

/// Marks a [`BackupLayout`].
#[derive(Debug, Clone)]
pub enum Backups {}
/// Marks a [`MilvusLayout`].
#[derive(Debug, Clone)]
pub enum Milvus {}

impl<Of> Layout<Of> {
    /// The layout under `root` (no leading or trailing `/`).
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            of: PhantomData,
        }
    }

    /// `{root}/`, or empty for the bucket root.
    pub fn root_prefix(&self) -> String {
        self.dir([])
    }

    /// The key `{root}/{parts}` (empty parts left out).
    fn key<const N: usize>(&self, parts: [&str; N]) -> String {
        join_key(std::iter::once(self.root.as_str()).chain(parts))
    }

    /// The folder `{root}/{parts}/`.
    fn dir<const N: usize>(&self, parts: [&str; N]) -> String {
        dir(&self.key(parts))
    }
}

impl BackupLayout {
    /// The prefix of one backup, ending with `/`.
    pub fn backup_prefix(&self, name: &str) -> String {
        self.dir([name])
    }

    /// The name of the backup whose prefix is `prefix`, if it is one.
    pub fn name_of(&self, prefix: &str) -> Option<String> {
        let rest = prefix.strip_prefix(&self.root_prefix())?;
        let name = rest.trim_end_matches('/');
        (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
    }

    /// One meta file of a backup.
    pub fn meta_key(&self, name: &str, file: &str) -> String {
        self.key([name, "meta", file])
    }

    /// The binlog folder of one segment group, ending with `/`.
    pub fn group_dir(&self, name: &str, kind: LogKind, coll: i64, part: i64, group: i64) -> String {
        format!("{}{group}/", self.partition_dir(name, kind, coll, part))
    }

    /// The binlog folder of one partition, ending with `/`.
    pub fn partition_dir(&self, name: &str, kind: LogKind, coll: i64, part: i64) -> String {
        let (coll, part) = (coll.to_string(), part.to_string());
        self.dir([name, "binlogs", kind.dir(), &coll, &part])
    }

    /// Where a binlog of Milvus (`{milvus_root}/{kind}/{coll}/{part}/{seg}/...`)
    /// goes in backup `name`: its group folder is added after the partition.
    pub fn backup_key(
        &self,
        name: &str,
        milvus: &MilvusLayout,
        milvus_key: &str,
        group: Option<i64>,
    ) -> Option<String> {
        let rel = milvus_key.strip_prefix(&milvus.root_prefix())?;
        let mut parts = rel.splitn(4, '/');
        let (kind, coll, part, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if !(kind == "insert_log" || kind == "delta_log") || rest.is_empty() {
            return None;
        }
        let group = group.map(|g| g.to_string()).unwrap_or_default();
        Some(self.key([name, "binlogs", kind, coll, part, &group, rest]))
    }
}

impl MilvusLayout {
    /// The binlog folder of one collection, ending with `/`.
    pub fn collection_dir(&self, kind: LogKind, coll: i64) -> String {
        self.dir([kind.dir(), &coll.to_string()])
    }

    /// The binlog folder of one segment, ending with `/`.
    pub fn segment_dir(&self, kind: LogKind, coll: i64, part: i64, seg: i64) -> String {
        let (coll, part, seg) = (coll.to_string(), part.to_string(), seg.to_string());
        self.dir([kind.dir(), &coll, &part, &seg])
    }
}

/// Adds the trailing `/` of a folder prefix (none for the empty root).
fn dir(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_milvus_keys_into_the_go_layout() {
        let b = BackupLayout::new("backup");
        let m = MilvusLayout::new("files");
        assert_eq!(
            b.backup_key("b1", &m, "files/insert_log/1/2/3/100/9", Some(3))
                .as_deref(),
            Some("backup/b1/binlogs/insert_log/1/2/3/3/100/9")
        );
        assert_eq!(
            b.backup_key("b1", &m, "files/delta_log/1/2/3/9", Some(3))
                .as_deref(),
            Some("backup/b1/binlogs/delta_log/1/2/3/3/9")
        );
        assert_eq!(
            b.backup_key("b1", &m, "other/insert_log/1/2/3/9", Some(3)),
            None
        );
        assert_eq!(
            m.segment_dir(LogKind::Delta, 1, 2, 3),
            "files/delta_log/1/2/3/"
        );
        assert_eq!(
            b.meta_key("b1", "full_meta.json"),
            "backup/b1/meta/full_meta.json"
        );
        assert_eq!(
            b.group_dir("b1", LogKind::Insert, 1, 2, 3),
            "backup/b1/binlogs/insert_log/1/2/3/"
        );
    }

    #[test]
    fn names_backups_by_prefix() {
        let b = BackupLayout::new("backup");
        assert_eq!(b.backup_prefix("b1"), "backup/b1/");
        assert_eq!(b.name_of("backup/b1/").as_deref(), Some("b1"));
        assert_eq!(b.name_of("other/b1/"), None);
        let root = BackupLayout::new("");
        assert_eq!(root.backup_prefix("b1"), "b1/");
        assert_eq!(root.name_of("b1/").as_deref(), Some("b1"));
    }
}
