//! Reading the file: a missing or empty file, YAML syntax errors and wrong
//! types each say so with the line and column; every later check names the
//! key and the line it is on, or the environment variable that set it.

use std::collections::BTreeMap;
use std::path::Path;

use super::Config;
use crate::error::{Error, Result};

impl Config {
    /// Reads a YAML file, then the Go tool's environment variables over it.
    /// Errors name the file, the key and the line, or the variable. Settings
    /// that have no effect here end up in [`Config::warnings`], each once.
    pub fn load(path: &Path) -> Result<Self> {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::invalid(format!(
                    "config file {shown} does not exist: copy configs/backup.yaml there \
                     (set milvus.address, minio.address and minio.bucketName), or name \
                     another file with --config PATH"
                )));
            }
            Err(e) => {
                return Err(Error::invalid(format!(
                    "cannot read config file {shown}: {e}"
                )));
            }
        };
        let value: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| Error::invalid(format!("config {shown}: {}", syntax_error(&e))))?;
        if value.is_null() {
            return Err(Error::invalid(format!(
                "config file {shown} is empty (no keys): every setting would fall back to \
                 localhost; copy configs/backup.yaml and set milvus.address, minio.address \
                 and minio.bucketName"
            )));
        }
        let mut cfg: Config = serde_yaml::from_str(&text)
            .map_err(|e| Error::invalid(format!("config {shown}: {}", value_error(&e))))?;
        cfg.apply_env(|k| std::env::var(k).ok())?;
        let lines = KeyLines::scan(&text);
        let locate = |msg: String| lines.locate(&msg, &cfg.env_keys, &shown.to_string());
        cfg.validate()
            .map_err(|e| Error::invalid(locate(e.to_string())))?;
        let warnings = cfg
            .check_keys()
            .map_err(|e| Error::invalid(locate(e.to_string())))?;
        let mut warnings: Vec<String> = warnings.into_iter().map(locate).collect();
        // The Go tool reads its file from the folder MILVUSCONF names.
        if let Some(dir) = std::env::var("MILVUSCONF").ok().filter(|d| !d.is_empty()) {
            warnings.push(format!(
                "the environment variable MILVUSCONF={dir:?} has no effect here and is ignored: \
                 the config file read is {shown} (name another with --config)"
            ));
        }
        cfg.warnings = warnings;
        cfg.origin = Some(Origin {
            file: shown.to_string(),
            lines,
        });
        Ok(cfg)
    }

    /// Adds where the key an invalid-argument error names was set (the
    /// file's line, or the variable), for checks made after loading: files
    /// that cannot be read, certificates that do not parse.
    pub fn locate_error(&self, e: Error) -> Error {
        match (e, &self.origin) {
            (Error::InvalidArgument(msg), Some(o)) => {
                Error::InvalidArgument(o.lines.locate(&msg, &self.env_keys, &o.file))
            }
            (e, _) => e,
        }
    }
}

/// Where a configuration came from.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    file: String,
    lines: KeyLines,
}

/// `YAML syntax error at line L, column C: <what the parser says>`.
fn syntax_error(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(at) => format!(
            "YAML syntax error at line {}, column {}: {}",
            at.line(),
            at.column(),
            without_location(&e.to_string(), at.line(), at.column())
        ),
        None => format!("YAML syntax error: {e}"),
    }
}

/// A wrong type or an unknown key: `line L, column C: key: what is wrong`.
/// (serde_yaml leaves the position out of its message on line 1, column 1.)
fn value_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(at) => format!(
            "line {}, column {}: {}",
            at.line(),
            at.column(),
            without_location(&msg, at.line(), at.column())
        ),
        None => msg,
    }
}

fn without_location(msg: &str, line: usize, column: usize) -> String {
    msg.replacen(&format!(" at line {line} column {column}"), "", 1)
}

/// Where each key of the file is: `milvus.tlsMode` → line 22.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyLines(BTreeMap<String, usize>);

impl KeyLines {
    /// Reads the keys of a block-style YAML file by their indentation (flow
    /// mappings and multi-line scalars are skipped: their keys stay unplaced).
    pub(super) fn scan(text: &str) -> Self {
        let mut found = BTreeMap::new();
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let body = line.trim_start_matches(' ');
            if body.is_empty() || body.starts_with('#') || body.starts_with('-') {
                continue;
            }
            let indent = line.len() - body.len();
            let Some(key) = leading_key(body) else {
                continue;
            };
            while stack.last().is_some_and(|(at, _)| *at >= indent) {
                stack.pop();
            }
            stack.push((indent, key));
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            found.entry(path.join(".")).or_insert(i + 1);
        }
        Self(found)
    }

    /// The line of `key` (`section.key`), if the file has it.
    pub(super) fn line(&self, key: &str) -> Option<usize> {
        self.0.get(key).copied()
    }

    /// Appends where the first key that `msg` names was set: the file's
    /// line, or the environment variable that overrode it.
    pub(super) fn locate(
        &self,
        msg: &str,
        env_keys: &BTreeMap<String, &'static str>,
        file: &str,
    ) -> String {
        let mut best: Option<(usize, &str)> = None;
        let keys = self.0.keys().chain(env_keys.keys());
        // Section names alone ("backup") are words of prose too: they count
        // only where the message starts with them.
        let counts = |k: &&str| k.contains('.') || msg.starts_with(&format!("{k} "));
        for key in keys.map(String::as_str).filter(counts) {
            if let Some(at) = find_word(msg, key)
                && best.is_none_or(|(b, k)| at < b || (at == b && key.len() > k.len()))
            {
                best = Some((at, key));
            }
        }
        match best {
            Some((_, key)) => match (env_keys.get(key), self.line(key)) {
                (Some(var), _) => format!("{msg} (set by the environment variable {var})"),
                (None, Some(line)) => format!("{msg} (config {file}, line {line})"),
                (None, None) => format!("{msg} (config {file})"),
            },
            None => format!("{msg} (config {file})"),
        }
    }
}

/// `key:` at the start of a line (plain or quoted), without the colon.
fn leading_key(body: &str) -> Option<String> {
    let (key, rest) = if let Some(q) = body.strip_prefix('"').or_else(|| body.strip_prefix('\'')) {
        let quote = body.as_bytes()[0] as char;
        let end = q.find(quote)?;
        (q[..end].to_string(), &q[end + 1..])
    } else {
        let end = body.find(':')?;
        let key = body[..end].trim_end();
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains(['{', '[', '"']) {
            return None;
        }
        (key.to_string(), &body[end..])
    };
    let rest = rest.trim_start();
    let after = rest.strip_prefix(':')?;
    (after.is_empty() || after.starts_with([' ', '\t'])).then_some(key)
}

/// Where `word` occurs in `text` as a whole key path (not inside a longer one).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let end = at + word.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        // A trailing '.' ends a sentence; a '.' followed by a letter continues a path.
        let continues = after.is_some_and(|c| {
            let path_goes_on = text[end + 1..].starts_with(|n: char| n.is_ascii_alphanumeric());
            is_part(c) && (c != '.' || path_goes_on)
        });
        if !before.is_some_and(is_part) && !continues {
            return Some(at);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_placed_by_indentation() {
        let lines = KeyLines::scan(
            "# comment\nlog:\n  level: info\nmilvus:\n  address: x # note\n\n  tlsMode: 7\n\
             backup:\n  parallelism:\n    copydata: 1\n  keepTempFiles: true\n\"quoted\": 1\n",
        );
        assert_eq!(lines.line("log.level"), Some(3));
        assert_eq!(lines.line("milvus.tlsMode"), Some(7));
        assert_eq!(lines.line("backup.parallelism.copydata"), Some(10));
        assert_eq!(lines.line("backup.keepTempFiles"), Some(11));
        assert_eq!(lines.line("quoted"), Some(12));
        let env = BTreeMap::from([("milvus.address".to_string(), "MILVUS_ADDRESS")]);
        assert_eq!(
            lines.locate("milvus.tlsMode 7 is not 0", &env, "f.yaml"),
            "milvus.tlsMode 7 is not 0 (config f.yaml, line 7)"
        );
        assert!(
            lines
                .locate("bad milvus.address.", &env, "f.yaml")
                .ends_with("(set by the environment variable MILVUS_ADDRESS)")
        );
        // The longer key wins where both start.
        assert!(
            lines
                .locate("backup.parallelism.copydata must be", &env, "f")
                .ends_with("line 10)")
        );
    }
}
