//! Fields of a REST request that a route does not model. A name the Go tool
//! never read (a typo, another tool's option) is refused whatever its value,
//! naming the closest field the route knows. One of the Go tool's options
//! this server does not offer (`bucket_name`, `path`, `force`, `rbac`, ...),
//! in any case as the Go tool matches them, is refused when set to anything
//! but its default; left at its default it asks for nothing and is
//! accepted, so a client sending all of the Go tool's fields keeps working.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// Every request field and query parameter the Go tool's REST routes have
/// read, in any of its versions (its `backup.proto` and handlers).
const GO_TOOL_FIELDS: &[&str] = &[
    "requestId",
    "backup_name",
    "backup_id",
    "collection_name",
    "collection_names",
    "db_collections",
    "async",
    "force",
    "meta_only",
    "stop_gc",
    "gc_pause",
    "gc_pause_enable",
    "gc_pause_seconds",
    "gc_pause_address",
    "rbac",
    "backup_root_path",
    "filter",
    "strategy",
    "with_index_extra",
    "with_ezk",
    "format",
    "bucket_name",
    "path",
    "without_detail",
    "id",
    "collection_suffix",
    "collection_renames",
    "metaOnly",
    "restoreIndex",
    "useAutoIndex",
    "dropExistCollection",
    "dropExistIndex",
    "skipCreateCollection",
    "skipImportDiskQuotaCheck",
    "maxShardNum",
    "skipParams",
    "skip_params",
    "useV2Restore",
    "truncateBinlogByTs",
    "db_collections_after_rename",
    "restorePlan",
    "ezkMapping",
];

/// Refuses the fields of `extra`, those a route with the fields `known`
/// does not model: first any name the Go tool never read, then any of its
/// options set to anything but a default value (each in name order).
pub(super) fn refuse_unknown(extra: &HashMap<String, Value>, known: &[&str]) -> Result<()> {
    let mut names: Vec<&String> = extra.keys().collect();
    names.sort();
    // The Go tool (Go's encoding/json) matches names whatever their case.
    let go_tools = |n: &str| GO_TOOL_FIELDS.iter().any(|g| g.eq_ignore_ascii_case(n));
    if let Some(typo) = names.iter().find(|n| !go_tools(n)) {
        let hint = match closest(typo, known) {
            Some(near) => format!("; did you mean {near:?}?"),
            None if known.is_empty() => "; this route takes none".to_string(),
            None => format!("; it knows {}", known.join(", ")),
        };
        return Err(Error::invalid(format!(
            "field {typo:?} is not known to this server (nor to the Go tool){hint}"
        )));
    }
    match names.into_iter().find(|n| !is_default(&extra[*n])) {
        None => Ok(()),
        Some(field) => Err(Error::invalid(format!(
            "field {field:?} (set to {}) is not supported by this server; {}",
            extra[field],
            match (field.as_str(), closest(field, known)) {
                ("bucket_name" | "path", _) =>
                    "remove it: the backup storage is the one configured (minio.backup*)".into(),
                (_, Some(near)) => format!("did you mean {near:?}?"),
                _ => "remove it".to_string(),
            }
        ))),
    }
}

/// The name of `known` within two edits of `name` (case aside), if any.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name = name.to_lowercase();
    known
        .iter()
        .map(|k| (edits(&name, &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The Levenshtein distance between `a` and `b`.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Null, false, 0, "", "false", "0", [] or {}.
fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "false" || s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: &str, known: &[&str]) -> String {
        let extra = serde_json::from_str::<HashMap<String, Value>>(body).unwrap();
        refuse_unknown(&extra, known).unwrap_err().to_string()
    }

    #[test]
    fn the_go_tools_options_are_refused_only_when_set() {
        let parse = |s: &str| serde_json::from_str::<HashMap<String, Value>>(s).unwrap();
        let accepted = parse(r#"{"force":false,"path":"","maxShardNum":0}"#);
        assert!(refuse_unknown(&accepted, &[]).is_ok());
        let e = refused(r#"{"rbac":true,"force":false}"#, &[]);
        assert!(e.contains("\"rbac\" (set to true)"), "{e}");
        let e = refused(r#"{"bucket_name":"prod"}"#, &[]);
        assert!(e.contains("minio.backup"), "{e}");
        // Whatever their case, as the Go tool reads them.
        let known = ["metaOnly", "collection_names"];
        let parse = |s: &str| serde_json::from_str::<HashMap<String, Value>>(s).unwrap();
        assert!(refuse_unknown(&parse(r#"{"RequestID":"","METAONLY":false}"#), &known).is_ok());
        let e = refused(r#"{"metaonly":true}"#, &known);
        assert!(
            e.contains(
                r#"(set to true) is not supported by this server; did you mean "metaOnly"?"#
            ),
            "{e}"
        );
        let e = refused(r#"{"collection_name":"c"}"#, &known);
        assert!(e.contains(r#"did you mean "collection_names"?"#), "{e}");
    }

    #[test]
    fn a_name_the_go_tool_never_had_is_refused_at_any_value() {
        let known = ["backup_name", "incremental", "async"];
        let e = refused(r#"{"incremantal":false}"#, &known);
        assert!(e.contains(r#""incremantal" is not known"#), "{e}");
        assert!(e.contains(r#"did you mean "incremental"?"#), "{e}");
        // A typo is named before a Go option that is set.
        let e = refused(r#"{"rbac":true,"backupName":""}"#, &known);
        assert!(e.contains(r#"did you mean "backup_name"?"#), "{e}");
        let e = refused(r#"{"zzz":null}"#, &known);
        assert!(
            e.contains("it knows backup_name, incremental, async"),
            "{e}"
        );
        let e = refused(r#"{"zzz":null}"#, &[]);
        assert!(e.contains("this route takes none"), "{e}");
    }

    #[test]
    fn edits_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("kitten", "sitting"), 3);
        assert_eq!(edits("backupname", "backup_name"), 1);
        assert_eq!(edits("same", "same"), 0);
    }
}
