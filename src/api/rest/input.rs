//! What a REST request carries, read strictly: its JSON body and its query
//! string. A field of the wrong type is named, a key given twice is refused
//! (JSON would keep the last one silently), and a parameter a route does
//! not know is refused like an unknown body field.

use std::collections::HashMap;
use std::fmt;

use axum::extract::{FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::{DeserializeOwned, Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{Rest, request_id, too_large, unsupported};
use crate::api::status::rest_error;
use crate::error::{Error, Result};

/// A JSON body, whatever its Content-Type says (as the Go tool reads it: a
/// `curl -d` without `-H` is JSON too). A bad one is answered at once: 413
/// when it is too large, 400 naming what is wrong with it and in which
/// field otherwise.
pub(super) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Rest> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, rest: &Rest) -> std::result::Result<Self, Response> {
        let id = request_id(req.headers(), None);
        let bytes = body_bytes(req, rest, &id).await?;
        parse_body(&bytes).map(Self).map_err(|e| rest_error(id, &e))
    }
}

/// The bytes of `req`'s body; one over the limit answers 413, one that
/// cannot be read 400.
async fn body_bytes(
    req: Request,
    rest: &Rest,
    id: &str,
) -> std::result::Result<axum::body::Bytes, Response> {
    axum::body::Bytes::from_request(req, rest)
        .await
        .map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => too_large(id.to_string(), rest.max_body),
            _ => rest_error(
                id.to_string(),
                &Error::invalid(format!("invalid request body: {}", e.body_text())),
            ),
        })
}

/// `bytes` as one JSON value of type `T`; an error names the field it is in.
fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let invalid = |e: &dyn fmt::Display| Error::invalid(format!("invalid request body: {e}"));
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        match e.path().to_string().as_str() {
            "." => invalid(e.inner()),
            field => invalid(&format!("{field}: {}", e.inner())),
        }
    })?;
    json.end().map_err(|e| invalid(&e))?;
    Ok(value)
}

/// A query string, answered in the envelope (400 naming what is wrong) when
/// it does not parse, like a bad body, or when it sets a parameter the
/// route does not know (the Go tool's `bucket_name`, a typo): never dropped.
pub(super) struct Params<T>(pub T);

/// The query parameters, or the body fields, a route knows.
pub(super) trait KnownFields {
    const NAMES: &'static [&'static str];
}

/// The query string of a route that takes none (its input is its body or
/// its path): any parameter set is refused, naming it.
#[derive(Debug, Default, Deserialize)]
pub(super) struct NoQuery {}

impl KnownFields for NoQuery {
    const NAMES: &'static [&'static str] = &[];
}

impl<T: DeserializeOwned + KnownFields> FromRequestParts<Rest> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &Rest,
    ) -> std::result::Result<Self, Response> {
        let refused = |e: Error| rest_error(request_id(&parts.headers, None), &e);
        let invalid = |e: axum::extract::rejection::QueryRejection| {
            refused(Error::invalid(format!(
                "invalid query string: {}",
                e.body_text()
            )))
        };
        let Query(all) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(invalid)?;
        // `_` on a GET (or HEAD) is a client's cache-buster (`_=<time>`, as jQuery's
        // `cache: false` adds): it asks for no setting, so it is let through.
        let read_only = [axum::http::Method::GET, axum::http::Method::HEAD].contains(&parts.method);
        let cache_buster = |k: &str| k == "_" && read_only;
        let unknown: HashMap<String, serde_json::Value> = all
            .into_iter()
            .filter(|(k, _)| !T::NAMES.contains(&k.as_str()) && !cache_buster(k))
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        unsupported::refuse_unknown(&unknown, T::NAMES).map_err(refused)?;
        let Query(q) = Query::<T>::try_from_uri(&parts.uri).map_err(invalid)?;
        Ok(Self(q))
    }
}

/// The body of a route whose input is its path and query string: empty
/// (or `{}`, `null`), as clients send with a DELETE or a POST that carries
/// nothing. Any other body is refused, naming the route, never dropped: the
/// settings it holds would not be read.
pub(super) struct NoBody;

impl FromRequest<Rest> for NoBody {
    type Rejection = Response;

    async fn from_request(req: Request, rest: &Rest) -> std::result::Result<Self, Response> {
        let id = request_id(req.headers(), None);
        let route = format!("{} {}", req.method(), req.uri().path());
        let bytes = body_bytes(req, rest, &id).await?;
        refuse_body(&route, &bytes).map_err(|e| rest_error(id, &e))?;
        Ok(Self)
    }
}

/// Refuses `bytes` unless it asks for nothing: blank, `{}` or `null`.
fn refuse_body(route: &str, bytes: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let nothing = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Null) => true,
        Ok(serde_json::Value::Object(o)) => o.is_empty(),
        Ok(_) => false,
        Err(_) => text.trim().is_empty(),
    };
    if nothing {
        return Ok(());
    }
    let shown: String = text.trim().chars().take(80).collect();
    Err(Error::invalid(format!(
        "{route} takes no request body (its input is its path and query string); remove the body {shown:?}{}",
        if shown.len() < text.trim().len() {
            " (cut)"
        } else {
            ""
        }
    )))
}

/// Refuses a body that says it is over the limit before reading any of it
/// (bodies without a length are cut at the limit by `DefaultBodyLimit`).
pub(super) async fn limit_body(State(max): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large(request_id(req.headers(), None), max);
    }
    next.run(req).await
}

/// A JSON object whose keys are each given once: with a key given twice,
/// JSON keeps the last value and the first is lost without a word.
pub(super) fn unique_keys<'de, D, V>(d: D) -> std::result::Result<HashMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(d.deserialize_map(UniqueKeys(std::marker::PhantomData))?
        .into_iter()
        .collect())
}

/// The entries of a JSON object, in order, refusing a key given twice.
struct UniqueKeys<V>(std::marker::PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for UniqueKeys<V> {
    type Value = Vec<(String, V)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut entries: Vec<(String, V)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(A::Error::custom(format!("key {key:?} is given twice")));
            }
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(entries)
    }
}

/// `db_collections`: `{"db1": ["c1"], "db2": []}` (an empty list means the
/// whole database), as a JSON object or a string holding one. Each database
/// is given once.
#[derive(Debug, Default)]
pub(super) struct DbCollections(Vec<(String, Vec<String>)>);

impl<'de> Deserialize<'de> for DbCollections {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(DbCollectionsVisitor)
    }
}

struct DbCollectionsVisitor;

impl<'de> Visitor<'de> for DbCollectionsVisitor {
    type Value = DbCollections;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a JSON object mapping database names to lists of collections, or a string holding one",
        )
    }

    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<DbCollections, E> {
        Ok(DbCollections::default())
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<DbCollections, E> {
        if s.trim().is_empty() {
            return Ok(DbCollections::default());
        }
        let mut json = serde_json::Deserializer::from_str(s);
        let entries = json
            .deserialize_map(UniqueKeys(std::marker::PhantomData))
            .and_then(|entries| json.end().map(|()| entries))
            .map_err(|e| {
                E::custom(format!(
                    "not a JSON object mapping databases to collections: {e}"
                ))
            })?;
        Ok(DbCollections(entries))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<DbCollections, A::Error> {
        UniqueKeys(std::marker::PhantomData)
            .visit_map(map)
            .map(DbCollections)
    }
}

impl DbCollections {
    /// The collections (`db.coll`) and the whole databases it names.
    pub(super) fn split(&self) -> Result<(Vec<String>, Vec<String>)> {
        let (mut colls, mut dbs) = (vec![], vec![]);
        for (db, list) in &self.0 {
            // Its key is a database's name: blamed as one, never read as
            // part of a collection's `db.coll`.
            if db.is_empty() || db.contains('.') {
                return Err(Error::invalid(format!(
                    "db_collections key {db:?} is not a database name"
                )));
            }
            if list.is_empty() {
                dbs.push(db.clone());
            } else {
                colls.extend(list.iter().map(|c| format!("{db}.{c}")));
            }
        }
        Ok((colls, dbs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Sample {
        #[serde(rename = "async")]
        is_async: bool,
        db_collections: DbCollections,
        #[serde(deserialize_with = "unique_keys")]
        renames: HashMap<String, String>,
    }

    fn refused(body: &str) -> String {
        parse_body::<Sample>(body.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_route_without_a_body_takes_only_an_empty_one() {
        for nothing in ["", " \n", "{}", " { } ", "null"] {
            assert!(
                refuse_body("DELETE /x", nothing.as_bytes()).is_ok(),
                "{nothing:?}"
            );
        }
        let err = refuse_body("POST /api/v1/policies/p/run", br#"{"name":"q"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("POST /api/v1/policies/p/run takes no request body"),
            "{err}"
        );
        assert!(err.contains(r#"{\"name\":\"q\"}"#), "{err}");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = refused(r#"{"async": "yes"}"#);
        assert!(err.contains("async: invalid type: string"), "{err}");
        let err = refused(r#"{"db_collections": {"db1": "c1"}}"#);
        assert!(err.contains("db_collections.db1: invalid type"), "{err}");
        let err = refused(r#"{"async": true} {}"#);
        assert!(err.contains("trailing characters"), "{err}");
    }

    #[test]
    fn a_key_given_twice_is_refused_not_dropped() {
        let err = refused(r#"{"db_collections": {"db1": ["a"], "db1": ["b"]}}"#);
        assert!(err.contains(r#"key "db1" is given twice"#), "{err}");
        let err = refused(r#"{"db_collections": "{\"db1\": [], \"db1\": [\"b\"]}"}"#);
        assert!(err.contains(r#"key "db1" is given twice"#), "{err}");
        let err = refused(r#"{"renames": {"a": "x", "a": "y"}}"#);
        assert!(err.contains(r#"renames: key "a" is given twice"#), "{err}");
    }

    #[test]
    fn db_collections_reads_an_object_a_string_or_nothing() {
        let split = |body: &str| {
            parse_body::<Sample>(body.as_bytes())
                .unwrap()
                .db_collections
                .split()
                .unwrap()
        };
        let both = (vec!["db1.a".to_string()], vec!["db2".to_string()]);
        assert_eq!(
            split(r#"{"db_collections": {"db1": ["a"], "db2": []}}"#),
            both
        );
        assert_eq!(
            split(r#"{"db_collections": "{\"db1\": [\"a\"], \"db2\": []}"}"#),
            both
        );
        assert_eq!(split(r#"{"db_collections": ""}"#), (vec![], vec![]));
        assert_eq!(split(r#"{"db_collections": null}"#), (vec![], vec![]));
        let err = refused(r#"{"db_collections": "[1]"}"#);
        assert!(err.contains("db_collections: not a JSON object"), "{err}");
    }
}
