//! Names callers pass in: backup names and collection references (`coll` or
//! `db.coll`), each built only by parsing.

use std::fmt;

use crate::error::{Error, Result};

/// The database Milvus uses when none is named.
pub const DEFAULT_DB: &str = "default";

/// Longest backup or policy name accepted, as in the Go tool.
pub const MAX_NAME_LEN: usize = 128;

/// Longest database or collection name accepted: Milvus's own limit
/// (`proxy.maxNameLength`, 255 by default); a Milvus set lower refuses
/// longer ones itself.
pub const MAX_MILVUS_NAME_LEN: usize = 255;

/// Checks a backup or policy name: letters, digits and `_`, starting with a
/// letter or `_`, at most [`MAX_NAME_LEN`] characters. `what` names the kind
/// in the error.
pub(super) fn validate_name(what: &str, name: &str) -> Result<()> {
    validate_up_to(what, name, MAX_NAME_LEN)
}

/// [`validate_name`] for a database or collection name, at most
/// [`MAX_MILVUS_NAME_LEN`] characters.
pub(super) fn validate_milvus_name(what: &str, name: &str) -> Result<()> {
    validate_up_to(what, name, MAX_MILVUS_NAME_LEN)
}

fn validate_up_to(what: &str, name: &str, max: usize) -> Result<()> {
    let shown = shorten(name);
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(Error::invalid(format!("{what} must not be empty")));
    };
    if name.len() > max {
        return Err(Error::invalid(format!(
            "{what} {shown:?} is longer than {max} characters"
        )));
    }
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err(Error::invalid(format!(
            "{what} {shown:?} must start with a letter or '_'"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(Error::invalid(format!(
            "{what} {shown:?} contains {bad:?}; only letters, digits and '_' are allowed"
        )));
    }
    Ok(())
}

/// Folders under the backup root that are not backups (leases and the like).
pub const RESERVED_BACKUP_NAMES: [&str; 4] = ["_leases", "_catalog", "_jobs", "_policies"];

/// The name of a backup: its folder under the backup root. The reserved
/// folder names are refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackupName(String);

impl BackupName {
    /// The name the Go tool gives a backup asked for without one:
    /// `backup_<UTC time to the nanosecond>`.
    pub fn generated(now: chrono::DateTime<chrono::Utc>) -> String {
        now.format("backup_%Y_%m_%d_%H_%M_%S_%9f").to_string()
    }

    /// The one place a backup name is checked (see [`validate_name`]).
    pub fn parse(name: &str) -> Result<Self> {
        validate_name("backup name", name)?;
        if RESERVED_BACKUP_NAMES.contains(&name) {
            return Err(Error::invalid(format!(
                "backup name {name:?} is reserved for the service's own records"
            )));
        }
        Ok(Self(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for BackupName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cuts a long user value so that it can be echoed in an error message.
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// Which backups a listing keeps: those holding a collection of this name,
/// in any database for `coll` (as the Go tool matches it), or in the one
/// named by `db.coll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionFilter {
    db: Option<String>,
    name: String,
}

impl CollectionFilter {
    /// `coll` or `db.coll`, validated as a [`CollectionRef`]; empty: no filter.
    pub fn parse(raw: &str) -> Result<Option<Self>> {
        if raw.is_empty() {
            return Ok(None);
        }
        let c = CollectionRef::parse(raw)?;
        Ok(Some(Self {
            db: raw.contains('.').then(|| c.db.clone()),
            name: c.name,
        }))
    }

    /// Whether collection `name` of database `db` (empty: the default) matches.
    pub fn matches(&self, db: &str, name: &str) -> bool {
        let db = if db.is_empty() { DEFAULT_DB } else { db };
        name == self.name && self.db.as_deref().is_none_or(|d| d == db)
    }
}

/// A collection in a database. Built by parsing what a caller wrote, or from
/// the names Milvus and a backup's meta hold ([`CollectionRef::normalized`]).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct CollectionRef {
    db: String,
    name: String,
}

impl CollectionRef {
    /// Parses `coll` (default database) or `db.coll`, validating both parts.
    pub fn parse(s: &str) -> Result<Self> {
        let (db, name) = match s.split_once('.') {
            Some((db, name)) => (db, name),
            None => (DEFAULT_DB, s),
        };
        validate_milvus_name("database name", db)
            .and_then(|_| validate_milvus_name("collection name", name))
            .map_err(|e| Error::invalid(format!("bad collection reference {s:?}: {e}")))?;
        Ok(Self::normalized(db, name))
    }

    /// A collection as Milvus or a backup's meta names it; an empty database
    /// name (older Milvus, the Go tool) means the default one.
    pub fn normalized(db: &str, name: &str) -> Self {
        let db = if db.is_empty() { DEFAULT_DB } else { db };
        Self {
            db: db.to_string(),
            name: name.to_string(),
        }
    }

    /// The same database, another collection name (checked).
    pub fn renamed(&self, name: &str) -> Result<Self> {
        validate_milvus_name("target collection name", name)?;
        Ok(Self::normalized(&self.db, name))
    }

    /// The database.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// The collection's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_collection_filter_matches_every_database() {
        assert_eq!(CollectionFilter::parse("").unwrap(), None);
        let any = CollectionFilter::parse("c1").unwrap().unwrap();
        assert!(any.matches("db1", "c1") && any.matches("", "c1") && any.matches("default", "c1"));
        assert!(!any.matches("db1", "c2"));
        let one = CollectionFilter::parse("db1.c1").unwrap().unwrap();
        assert!(one.matches("db1", "c1") && !one.matches("default", "c1"));
        let default = CollectionFilter::parse("default.c1").unwrap().unwrap();
        assert!(default.matches("", "c1") && !default.matches("db1", "c1"));
        assert!(CollectionFilter::parse("a.b.c").is_err());
    }

    #[test]
    fn accepts_go_tool_names() {
        for ok in ["a", "_x", "backup_2024_01", "A1", &"b".repeat(128)] {
            BackupName::parse(ok).unwrap();
        }
    }

    #[test]
    fn refuses_bad_names_and_names_them() {
        for bad in [
            "",
            " ",
            "../x",
            "a b",
            "1abc",
            "a-b",
            "a.b",
            "a/b",
            "é",
            &"b".repeat(129),
        ] {
            let err = BackupName::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}");
            if !bad.is_empty() && bad.len() < 64 {
                assert!(err.to_string().contains(bad), "{err} should name {bad:?}");
            }
        }
    }

    #[test]
    fn collection_names_go_to_milvuss_limit_and_backup_names_to_the_go_tools() {
        let long = "c".repeat(MAX_MILVUS_NAME_LEN);
        let r = CollectionRef::parse(&format!("{}.{long}", "d".repeat(255))).unwrap();
        assert_eq!(r.name(), long);
        let err = CollectionRef::parse(&format!("{long}c")).unwrap_err();
        assert!(err.to_string().contains("longer than 255"), "{err}");
        assert!(r.renamed(&format!("{long}c")).is_err());
        let err = BackupName::parse(&"b".repeat(129)).unwrap_err();
        assert!(err.to_string().contains("longer than 128"), "{err}");
    }

    #[test]
    fn parses_collection_refs() {
        assert_eq!(
            CollectionRef::parse("c1").unwrap(),
            CollectionRef::normalized("default", "c1")
        );
        assert_eq!(
            CollectionRef::parse("db1.c1").unwrap(),
            CollectionRef::normalized("db1", "c1")
        );
        for bad in ["", ".c", "db.", "a.b.c", "x y", "db.../c"] {
            assert!(CollectionRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
