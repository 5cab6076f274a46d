//! The requests that start jobs or name a backup, parsed from their raw
//! inputs. An input is what a wire carries (text and flags); a request is
//! what the core accepts.

use std::collections::BTreeMap;

use super::names::{BackupName, CollectionRef, DEFAULT_DB, validate_milvus_name};
use crate::error::{Error, Result};

/// Most names one request may carry.
pub const MAX_NAMES_PER_REQUEST: usize = 10_000;

pub(super) fn at_most(what: &str, n: usize) -> Result<()> {
    if n > MAX_NAMES_PER_REQUEST {
        return Err(Error::invalid(format!(
            "{n} {what} given; at most {MAX_NAMES_PER_REQUEST} are accepted"
        )));
    }
    Ok(())
}

fn collection_refs(raw: &[String]) -> Result<Vec<CollectionRef>> {
    raw.iter().map(|c| CollectionRef::parse(c)).collect()
}

/// The trace a caller's W3C `traceparent` names, carried into its job (log
/// lines and record). A malformed header names no trace: W3C says to ignore
/// it, and a trace header never fails a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceId(String);

impl TraceId {
    /// The trace id of `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`).
    pub fn from_traceparent(traceparent: &str) -> Option<Self> {
        let parts: Vec<&str> = traceparent.trim().split('-').collect();
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let [version, trace, parent, flags, ..] = parts[..] else {
            return None;
        };
        let valid = hex(version, 2)
            && version != "ff"
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && hex(flags, 2)
            && (version != "00" || parts.len() == 4);
        valid.then(|| Self(trace.to_string()))
    }

    /// The 32 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who asked for a job: the idempotency key it gave and the trace it sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    request_id: String,
    trace: Option<TraceId>,
}

/// The longest idempotency key a caller may give, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 256;

impl Caller {
    /// A caller whose idempotency key `request_id` (empty: none) came from
    /// a request: at most [`MAX_REQUEST_ID_LEN`] bytes, without control
    /// characters. Its W3C `traceparent` header is `traceparent` (malformed
    /// or empty: no trace).
    pub fn parse(request_id: impl Into<String>, traceparent: &str) -> Result<Self> {
        let request_id = request_id.into();
        if request_id.len() > MAX_REQUEST_ID_LEN {
            return Err(Error::invalid(format!(
                "request_id of {} bytes: at most {MAX_REQUEST_ID_LEN}",
                request_id.len()
            )));
        }
        if request_id.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "request_id {request_id:?}: control characters are not allowed"
            )));
        }
        Ok(Self::new(request_id, traceparent))
    }

    /// A caller with an idempotency key this process made (a job id).
    pub fn new(request_id: impl Into<String>, traceparent: &str) -> Self {
        Self {
            request_id: request_id.into(),
            trace: TraceId::from_traceparent(traceparent),
        }
    }

    /// The idempotency key; empty when none was given.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The caller's trace.
    pub fn trace(&self) -> Option<&TraceId> {
        self.trace.as_ref()
    }
}

/// A backup, named or found by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupLookup {
    Name(BackupName),
    Id(String),
}

impl BackupLookup {
    /// A name when one is given, else an id; one of the two is required.
    /// With both, the name decides: the Go tool's guides send beside it, as
    /// `backup_id`, a placeholder or the create's request id, which is not
    /// a backup's id here (the Go tool looks up the id then). An id
    /// is at most [`MAX_REQUEST_ID_LEN`] bytes without control characters
    /// (it may have been a request id).
    pub fn parse(name: &str, id: &str) -> Result<Self> {
        if id.len() > MAX_REQUEST_ID_LEN || id.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "backup id {id:?}: at most {MAX_REQUEST_ID_LEN} bytes, without control characters"
            )));
        }
        match (name.is_empty(), id.is_empty()) {
            (true, true) => Err(Error::invalid(
                "empty backup name and backup id: give a backup name or a backup id",
            )),
            (true, false) => Ok(Self::Id(id.to_string())),
            (false, _) => BackupName::parse(name).map(Self::Name),
        }
    }
}

/// The raw fields of a CreateBackup, as a wire carries them.
#[derive(Debug, Clone, Default)]
pub struct BackupInput {
    pub name: String,
    /// `coll` or `db.coll`.
    pub collections: Vec<String>,
    /// Whole databases.
    pub databases: Vec<String>,
    pub meta_only: bool,
    /// Copy only what no earlier complete backup holds; `None`: the server's
    /// default (`backup.incremental`).
    pub incremental: Option<bool>,
    pub caller: Caller,
    /// `name` was made by the server, as the Go tool names a REST create that
    /// names none: a retry gets a name of its own, so its request id alone
    /// finds the first job (on any replica).
    pub generated_name: bool,
}

/// A valid request for a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRequest {
    name: BackupName,
    collections: Vec<CollectionRef>,
    databases: Vec<String>,
    meta_only: bool,
    incremental: Option<bool>,
    caller: Caller,
    generated_name: bool,
    /// Continues the job of a server that died, in the folder it left.
    resume: bool,
}

impl BackupRequest {
    /// Checks every field of `input`.
    pub fn parse(input: BackupInput) -> Result<Self> {
        at_most("collection names", input.collections.len())?;
        at_most("database names", input.databases.len())?;
        for db in &input.databases {
            validate_milvus_name("database name", db)?;
        }
        Ok(Self {
            name: BackupName::parse(&input.name)?,
            collections: collection_refs(&input.collections)?,
            databases: input.databases,
            meta_only: input.meta_only,
            incremental: input.incremental,
            caller: input.caller,
            generated_name: input.generated_name,
            resume: false,
        })
    }

    /// The request of a backup job whose server died, to be continued where
    /// it stopped; `input.caller` carries the job's id as its request id.
    pub fn resume(input: BackupInput) -> Result<Self> {
        Ok(Self {
            resume: true,
            ..Self::parse(input)?
        })
    }

    /// Whether this continues a job whose server died.
    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// The request with `default` (the server's `backup.incremental`) in
    /// place of an unset `incremental`: its job's record then keeps what it
    /// runs with, and a server that resumes it does the same whatever its
    /// own default.
    pub fn with_incremental_default(self, default: bool) -> Self {
        Self {
            incremental: Some(self.incremental.unwrap_or(default)),
            ..self
        }
    }

    /// The new backup's name.
    pub fn name(&self) -> &BackupName {
        &self.name
    }

    /// Whether the server chose the name (see [`BackupInput::generated_name`]).
    pub fn generated_name(&self) -> bool {
        self.generated_name
    }

    /// Collections to back up.
    pub fn collections(&self) -> &[CollectionRef] {
        &self.collections
    }

    /// Whole databases to back up (nothing named: everything).
    pub fn databases(&self) -> &[String] {
        &self.databases
    }

    /// Schemas, partitions and indexes only.
    pub fn meta_only(&self) -> bool {
        self.meta_only
    }

    /// Whether to copy only what earlier backups do not hold; `None` when the
    /// request left it to the server's default.
    pub fn incremental(&self) -> Option<bool> {
        self.incremental
    }

    /// Who asked for it.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// The id of a job a caller names (a restore's, a delete's): not empty, at
/// most 256 characters. Built only by parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobId(String);

impl JobId {
    /// Checks `raw` as the id of a `kind` job (`restore`, `delete`).
    pub fn parse(kind: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid(format!(
                "empty {kind} id, please set the id of a {kind} job"
            )));
        }
        if raw.chars().count() > 256 {
            return Err(Error::invalid(format!(
                "{kind} id {:?}… is longer than 256 characters",
                raw.chars().take(32).collect::<String>()
            )));
        }
        Ok(Self(raw.to_string()))
    }
}

impl std::ops::Deref for JobId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The raw fields of a Restore, as a wire carries them.
#[derive(Debug, Clone, Default)]
pub struct RestoreInput {
    pub backup_name: String,
    /// `coll` or `db.coll`; with `databases` empty too, every collection of
    /// the backup.
    pub collections: Vec<String>,
    /// Whole databases of the backup, beside `collections`.
    pub databases: Vec<String>,
    pub suffix: String,
    /// `coll` or `db.coll` → `coll` (same database) or `db.coll`.
    pub renames: Vec<(String, String)>,
    pub drop_existing: bool,
    pub skip_create: bool,
    pub restore_index: bool,
    pub load: bool,
    pub meta_only: bool,
    pub caller: Caller,
}

/// A valid restore request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    backup_name: BackupName,
    collections: Vec<CollectionRef>,
    databases: Vec<String>,
    suffix: String,
    renames: BTreeMap<CollectionRef, CollectionRef>,
    drop_existing: bool,
    skip_create: bool,
    restore_index: bool,
    load: bool,
    meta_only: bool,
    caller: Caller,
    /// Continues the job of a server that died, from its record.
    resume: bool,
}

impl RestoreRequest {
    /// Checks every field of `input`, and the options against each other.
    pub fn parse(input: RestoreInput) -> Result<Self> {
        at_most("collection names", input.collections.len())?;
        at_most("collection renames", input.renames.len())?;
        at_most("database names", input.databases.len())?;
        for db in &input.databases {
            validate_milvus_name("database name", db)?;
        }
        let backup_name = BackupName::parse(&input.backup_name)?;
        if !input
            .suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::invalid(format!(
                "collection suffix {:?} may contain only letters, digits and '_'",
                input.suffix
            )));
        }
        if input.drop_existing && input.skip_create {
            return Err(Error::invalid(
                "drop_existing_collections and skip_create_collection cannot be used together",
            ));
        }
        let mut renames = BTreeMap::new();
        for (from, to) in &input.renames {
            let (source, target) = parse_rename(from, to)?;
            if let Some(other) = renames.insert(source.clone(), target.clone()) {
                return Err(Error::invalid(format!(
                    "collection {source} is renamed twice (to {other} and to {target}); \
                     rename {from:?} once"
                )));
            }
        }
        Ok(Self {
            backup_name,
            collections: collection_refs(&input.collections)?,
            databases: input.databases,
            suffix: input.suffix,
            renames,
            drop_existing: input.drop_existing,
            skip_create: input.skip_create,
            restore_index: input.restore_index,
            load: input.load,
            meta_only: input.meta_only,
            caller: input.caller,
            resume: false,
        })
    }

    /// The request of a restore job whose server died, to be continued from
    /// its record; `input.caller` carries the job's id as its request id.
    pub fn resume(input: RestoreInput) -> Result<Self> {
        Ok(Self {
            resume: true,
            ..Self::parse(input)?
        })
    }

    /// Whether this continues a job whose server died.
    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// The suffix added to the names of targets not renamed.
    pub fn suffix(&self) -> &str {
        &self.suffix
    }

    /// The backup to restore from.
    pub fn backup_name(&self) -> &BackupName {
        &self.backup_name
    }

    /// Collections of the backup to restore; with no databases named
    /// either, all.
    pub fn collections(&self) -> &[CollectionRef] {
        &self.collections
    }

    /// Whole databases of the backup to restore, beside the collections.
    pub fn databases(&self) -> &[String] {
        &self.databases
    }

    /// Source collection → target collection.
    pub fn renames(&self) -> &BTreeMap<CollectionRef, CollectionRef> {
        &self.renames
    }

    /// Where `source` is restored to: its rename, or its name with the suffix.
    pub fn target_of(&self, source: &CollectionRef) -> Result<CollectionRef> {
        match self.renames.get(source) {
            Some(t) => Ok(t.clone()),
            None if self.suffix.is_empty() => Ok(source.clone()),
            None => source.renamed(&format!("{}{}", source.name(), self.suffix)),
        }
    }

    /// Replace existing targets (restored beside them, then swapped in).
    pub fn drop_existing(&self) -> bool {
        self.drop_existing
    }

    /// Import into existing targets instead of creating them.
    pub fn skip_create(&self) -> bool {
        self.skip_create
    }

    /// Recreate the backed-up indexes.
    pub fn restore_index(&self) -> bool {
        self.restore_index
    }

    /// Load the restored collections.
    pub fn load(&self) -> bool {
        self.load
    }

    /// Schemas, partitions and indexes only.
    pub fn meta_only(&self) -> bool {
        self.meta_only
    }

    /// Who asked for it.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
}

/// One rename: `coll` or `db.coll` to `db.coll`, or to `coll` when the
/// source is in the default database. A target without a database from
/// another database is refused: the Go tool reads it as in the default
/// database, and a restore into either could replace a collection the
/// caller did not mean.
fn parse_rename(from: &str, to: &str) -> Result<(CollectionRef, CollectionRef)> {
    let source = CollectionRef::parse(from)?;
    if to.contains('.') {
        return Ok((source, CollectionRef::parse(to)?));
    }
    let target = source
        .renamed(to)
        .map_err(|e| Error::invalid(format!("bad rename {from:?} → {to:?}: {e}")))?;
    if source.db() != DEFAULT_DB {
        return Err(Error::invalid(format!(
            "collection_renames {from:?} → {to:?} names no database for the target: \
             write \"{}.{to}\" or \"{DEFAULT_DB}.{to}\" (the Go tool reads {to:?} as the latter)",
            source.db()
        )));
    }
    Ok((source, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(f: impl FnOnce(&mut RestoreInput)) -> Result<RestoreRequest> {
        let mut input = RestoreInput {
            backup_name: "b".into(),
            ..Default::default()
        };
        f(&mut input);
        RestoreRequest::parse(input)
    }

    /// An unset `incremental` takes the server's default once, where the
    /// request enters the engine, so the job's record keeps it; a value the
    /// caller gave is kept whatever the default.
    #[test]
    fn the_incremental_default_is_resolved_into_the_request() {
        let backup = |incremental| {
            BackupRequest::parse(BackupInput {
                name: "b".into(),
                incremental,
                ..Default::default()
            })
            .unwrap()
        };
        assert_eq!(backup(None).incremental(), None);
        let resolved = backup(None).with_incremental_default(true);
        assert_eq!(resolved.incremental(), Some(true));
        assert_eq!(
            resolved.with_incremental_default(false).incremental(),
            Some(true),
            "resolved once, it stays"
        );
        let asked = backup(Some(false)).with_incremental_default(true);
        assert_eq!(asked.incremental(), Some(false));
    }

    #[test]
    fn renames_name_the_target_database_unless_both_are_the_default() {
        let r = restore(|r| {
            r.renames = vec![
                ("db1.c1".into(), "db1.c2".into()),
                ("c3".into(), "db2.c4".into()),
                ("default.c5".into(), "c6".into()),
            ]
        })
        .unwrap();
        let c = |db, name| CollectionRef::normalized(db, name);
        assert_eq!(r.renames()[&c("db1", "c1")], c("db1", "c2"));
        assert_eq!(r.renames()[&c("default", "c3")], c("db2", "c4"));
        assert_eq!(r.renames()[&c("default", "c5")], c("default", "c6"));
        assert_eq!(r.target_of(&c("db1", "c1")).unwrap(), c("db1", "c2"));
        assert_eq!(r.target_of(&c("db1", "x")).unwrap(), c("db1", "x"));
        // Where the Go tool and the same database disagree: refused.
        let err = restore(|r| r.renames = vec![("db1.c1".into(), "c2".into())]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(
            err.to_string().contains(r#""db1.c2" or "default.c2""#),
            "{err}"
        );
    }

    #[test]
    fn refuses_conflicting_options_and_bad_names() {
        let bad: [fn(&mut RestoreInput); 7] = [
            |r| (r.drop_existing, r.skip_create) = (true, true),
            |r| r.backup_name = "../x".into(),
            |r| r.suffix = "-x".into(),
            |r| r.renames = vec![("c".into(), "a b".into())],
            |r| r.collections = vec!["x.y.z".into()],
            |r| r.databases = vec!["".into()],
            |r| r.renames = vec![("c".into(), "x".into()), ("default.c".into(), "y".into())],
        ];
        for f in bad {
            assert!(matches!(restore(f), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn a_suffix_longer_than_a_name_allows_is_refused() {
        let r = restore(|r| r.suffix = "_".repeat(100)).unwrap();
        let fits = CollectionRef::normalized("db", &"c".repeat(155));
        assert_eq!(r.target_of(&fits).unwrap().name().len(), 255);
        let long = CollectionRef::normalized("db", &"c".repeat(156));
        assert!(matches!(r.target_of(&long), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let t =
            TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(t.unwrap().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceId::from_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_lookup_needs_a_name_or_an_id() {
        assert!(BackupLookup::parse("", "").is_err());
        assert!(BackupLookup::parse("a/b", "").is_err());
        assert_eq!(
            BackupLookup::parse("", "x").unwrap(),
            BackupLookup::Id("x".into())
        );
        assert_eq!(
            BackupLookup::parse("a", "x").unwrap(),
            BackupLookup::Name(BackupName::parse("a").unwrap()),
            "both: the name decides (the Go tool's guides send a request id as the id)"
        );
        assert!(BackupLookup::parse("", "a\nb").is_err());
        assert!(BackupLookup::parse("", &"x".repeat(MAX_REQUEST_ID_LEN + 1)).is_err());
    }
}
