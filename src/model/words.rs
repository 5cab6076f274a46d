//! Error messages in the caller's words: the core names a request's fields
//! as the request model does (`drop_existing_collections`); each adapter
//! says them as its callers write them (`--drop_exist_collection` on the
//! CLI, `dropExistCollection` over REST).

/// Rewrites each field name of `words` in `msg` as its caller's word. A
/// field that is a plain word (`load`, `schedule`) is taken for one only
/// where a value follows it (`schedule "x"`, `load:`), so that "cannot load"
/// stays as it is. A name that is part of a value (`default.meta_only`, a
/// quoted `"load"`, a path) is the caller's own, never rewritten.
pub fn in_words(msg: &str, words: &[(&str, &str)]) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = msg.to_string();
    for (field, flag) in words {
        let plain_word = !field.contains(['_', '.']);
        let mut from = 0;
        while let Some(i) = out[from..].find(field) {
            let at = from + i;
            let end = at + field.len();
            let names_a_value = |rest: &str| rest.starts_with(" \"") || rest.starts_with(':');
            let in_a_value = out[..at].ends_with(['.', '/', '"', '\''])
                || out[end..]
                    .strip_prefix('.')
                    .is_some_and(|r| r.starts_with(is_word));
            let whole = !out[..at].ends_with(is_word)
                && !out[end..].starts_with(is_word)
                && !in_a_value
                && (!plain_word || names_a_value(&out[end..]));
            if whole {
                out.replace_range(at..end, flag);
                from = at + flag.len();
            } else {
                from = end;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[(&str, &str)] = &[("meta_only", "--meta_only"), ("load", "--load")];

    #[test]
    fn field_names_are_reworded_and_values_named_like_them_are_not() {
        assert_eq!(
            in_words("meta_only and load: true conflict", FLAGS),
            "--meta_only and --load: true conflict"
        );
        assert_eq!(
            in_words("collection not found: default.meta_only", FLAGS),
            "collection not found: default.meta_only"
        );
        assert_eq!(
            in_words(
                "target collection \"meta_only\" exists; meta_only.x too",
                FLAGS
            ),
            "target collection \"meta_only\" exists; meta_only.x too"
        );
        assert_eq!(in_words("cannot load", FLAGS), "cannot load");
    }
}
