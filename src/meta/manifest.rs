//! `meta/checksums.json`: every object of a backup with its size and content
//! checksum, written before the meta that completes the backup. The Go tool
//! ignores the file.

use serde::{Deserialize, Serialize};

/// The file name, beside the Go tool's meta files.
pub const MANIFEST_FILE: &str = "checksums.json";

/// Every object of one backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub version: u32,
    pub objects: Vec<ManifestEntry>,
}

/// One object: where, how big, and its checksums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManifestEntry {
    /// The key relative to the backup's folder (`binlogs/insert_log/...`).
    pub key: String,
    pub size: u64,
    /// CRC32C of the content, computed as the bytes passed through us.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<u32>,
    /// The store's ETag (an MD5 of the content for single-part objects), taken
    /// where the store copied server-side.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub etag: String,
    /// The backup whose folder holds the object, when it is not this backup's
    /// own: an incremental backup reuses what an earlier backup copied.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub home: String,
}

impl ManifestEntry {
    /// The folder (backup name) that holds the object of backup `name`.
    pub fn home_of<'a>(&'a self, name: &'a str) -> &'a str {
        if self.home.is_empty() {
            name
        } else {
            &self.home
        }
    }

    /// Whether this entry describes the same object as one of `size` and
    /// `etag` in Milvus's storage: a Milvus key is never reused and its
    /// object never changes, so the key (compared by the caller), the size
    /// and, when both sides know it, the MD5 ETag of a single-part object
    /// identify it.
    pub fn same_object(&self, size: u64, etag: Option<&str>) -> bool {
        self.size == size && self.md5_agrees(etag)
    }

    /// Whether a copy of this object, whose bytes had CRC32C `crc32c` and
    /// whose destination answered `etag`, has the content this entry
    /// recorded. Only a checksum both sides know can tell them apart.
    pub fn copied_intact(&self, crc32c: Option<u32>, etag: Option<&str>) -> bool {
        match (self.crc32c, crc32c) {
            (Some(want), Some(got)) => want == got,
            _ => self.md5_agrees(etag),
        }
    }

    /// False only when this entry's ETag and `etag` are both MD5s and differ.
    fn md5_agrees(&self, etag: Option<&str>) -> bool {
        let theirs = etag.map(|e| ManifestEntry {
            etag: e.to_string(),
            ..Default::default()
        });
        match (self.md5(), theirs.as_ref().and_then(ManifestEntry::md5)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// The ETag as an MD5 digest, when it is one (not a multipart ETag).
    pub fn md5(&self) -> Option<[u8; 16]> {
        md5_of_etag(&self.etag)
    }
}

/// ETag `etag` as an MD5 digest, when it is one (not a multipart ETag).
pub fn md5_of_etag(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.trim_matches('"');
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_md5_etags_only() {
        let e = |etag: &str| ManifestEntry {
            etag: etag.into(),
            ..Default::default()
        };
        assert_eq!(
            e("\"d41d8cd98f00b204e9800998ecf8427e\"").md5().unwrap()[0],
            0xd4
        );
        assert!(e("d41d8cd98f00b204e9800998ecf8427e-2").md5().is_none());
        assert!(e("").md5().is_none());
    }

    #[test]
    fn a_copy_is_intact_unless_a_checksum_both_sides_know_differs() {
        let md5 = "\"d41d8cd98f00b204e9800998ecf8427e\"";
        let e = ManifestEntry {
            crc32c: Some(7),
            etag: md5.into(),
            ..Default::default()
        };
        assert!(e.copied_intact(Some(7), None));
        assert!(!e.copied_intact(Some(8), Some(md5)));
        assert!(e.copied_intact(None, Some(md5)));
        assert!(!e.copied_intact(None, Some("\"00000000000000000000000000000000\"")));
        assert!(e.copied_intact(None, Some("abc-2")));
        assert!(ManifestEntry::default().copied_intact(Some(1), None));
    }
}
