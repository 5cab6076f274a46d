//! Error messages in the caller's words: the core names a request's fields
//! as the request model does (`drop_existing_collections`); each adapter
//! says them as its callers write them (`--drop_exist_collection` on the
//! CLI, `dropExistCollection` over REST).

/// Rewrites each field name of `words` in `msg` as its caller's word. A
/// field that is a plain word (`load`, `schedule`) is taken for one only
/// where a value follows it (`schedule "x"`, `load:`), so that "cannot load"
/// stays as it is.
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
            let whole = !out[..at].ends_with(is_word)
                && !out[end..].starts_with(is_word)
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
