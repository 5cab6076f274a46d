//! Fields of a REST request that this server does not model: the Go tool's
//! options it does not offer (`bucket_name`, `path`, `force`, `rbac`, ...)
//! and typos. One set to anything but its default is refused by name, never
//! dropped; one left at its default asks for nothing and is accepted.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::{Error, Result};

/// Refuses the first field of `extra` set to anything but a default value.
pub(super) fn refuse_set(extra: &HashMap<String, Value>) -> Result<()> {
    let mut set: Vec<(&String, &Value)> = extra.iter().filter(|(_, v)| !is_default(v)).collect();
    set.sort_by_key(|(k, _)| *k);
    match set.first() {
        None => Ok(()),
        Some((field, value)) => Err(Error::invalid(format!(
            "field {field:?} (set to {value}) is not supported by this server; remove it{}",
            match field.as_str() {
                "bucket_name" | "path" =>
                    ": the backup storage is the one configured (minio.backup*)",
                _ => "",
            }
        ))),
    }
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

    #[test]
    fn only_fields_set_are_refused_by_name() {
        let parse = |s: &str| serde_json::from_str::<HashMap<String, Value>>(s).unwrap();
        assert!(refuse_set(&parse(r#"{"force":false,"path":"","maxShardNum":0}"#)).is_ok());
        let e = refuse_set(&parse(r#"{"rbac":true,"force":false}"#)).unwrap_err();
        assert!(e.to_string().contains("\"rbac\" (set to true)"), "{e}");
        let e = refuse_set(&parse(r#"{"bucket_name":"prod"}"#)).unwrap_err();
        assert!(e.to_string().contains("minio.backup"), "{e}");
    }
}
