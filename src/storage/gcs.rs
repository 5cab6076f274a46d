//! Google Cloud Storage through its JSON API: one bucket. Tokens come from
//! the `object_store` crate's credential providers (a service account key
//! file, or the application default credentials); the requests are ours,
//! so that server-side copies between buckets (rewrite) and conditional
//! writes (`ifGenerationMatch`) are those of the JSON API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use super::cloud;
use super::{ByteStream, CondPut, ObjectInfo, ObjectStore, Place, Source};
use crate::config::GcsAccess;
use crate::error::{Error, Result};

/// Deletes sent at once.
const DELETES_IN_FLIGHT: usize = 16;

/// How often a versioned read describes an object that keeps changing
/// between its description and its body before it gives up.
const VERSIONED_READ_TRIES: usize = 5;

/// One bucket of Google Cloud Storage.
#[derive(Debug, Clone)]
pub struct GcsBucket {
    place: Place,
    access: GcsAccess,
    /// The project new buckets are created in (the key file's `project_id`).
    project: Option<String>,
    credentials: GcpCredentialProvider,
    http: reqwest::Client,
    /// For streamed uploads: without a read timeout.
    uploads: reqwest::Client,
}

/// One object as the JSON API describes it.
#[derive(Debug, Deserialize)]
struct Object {
    name: String,
    #[serde(default)]
    size: String,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    generation: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rewrite {
    done: bool,
    rewrite_token: Option<String>,
    resource: Option<Object>,
}

impl GcsBucket {
    /// A client for `bucket`. A key file that cannot be read is refused here,
    /// naming it (never its content).
    pub fn new(access: &GcsAccess, bucket: &str) -> Result<Self> {
        let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
        let mut project = None;
        if access.credential_json.is_empty() {
            if let Ok(path) = std::env::var("GOOGLE_APPLICATION_CREDENTIALS") {
                builder = builder.with_application_credentials(path);
            }
        } else {
            let text = std::fs::read_to_string(&access.credential_json).map_err(|e| {
                Error::invalid(format!(
                    "minio.gcpCredentialJSON {:?} cannot be read: {e}",
                    access.credential_json
                ))
            })?;
            let key: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                Error::invalid(format!(
                    "minio.gcpCredentialJSON {:?} is not a service account key (JSON)",
                    access.credential_json
                ))
            })?;
            project = key["project_id"].as_str().map(str::to_string);
            builder = builder.with_service_account_path(&access.credential_json);
        }
        let store = builder
            .with_client_options(cloud::client_options())
            .build()
            .map_err(|e| {
                Error::invalid(format!(
                    "gcs credentials {:?}: {}",
                    access.credential_json,
                    cloud::redact(&e.to_string())
                ))
            })?;
        Ok(Self {
            place: Place {
                service: "gcs",
                owner: if access.credential_json.is_empty() {
                    "(application default credentials)".to_string()
                } else {
                    format!("(key file {:?})", access.credential_json)
                },
                endpoint: access.endpoint.clone(),
                bucket: bucket.to_string(),
                // The same credentials on the same service: rewrite reads the other bucket.
                identity: Some(format!(
                    "gcs|{}|{}",
                    access.endpoint, access.credential_json
                )),
            },
            access: access.clone(),
            project,
            credentials: Arc::clone(store.credentials()),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| Error::Internal(format!("gcs http client: {e}")))?,
            // A read timeout would limit a streamed upload's whole time.
            uploads: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| Error::Internal(format!("gcs http client: {e}")))?,
        })
    }

    fn object_url(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{bucket}/o/{}",
            self.access.endpoint,
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
        )
    }

    /// A request with the bearer token (none where the provider gives an
    /// empty one, as for an emulator's key file with `disable_oauth`).
    async fn request(
        &self,
        operation: &'static str,
        key: &str,
        method: Method,
        url: &str,
    ) -> Result<RequestBuilder> {
        self.request_on(&self.http, operation, key, method, url)
            .await
    }

    /// [`Self::request`] on client `http`.
    async fn request_on(
        &self,
        http: &reqwest::Client,
        operation: &'static str,
        key: &str,
        method: Method,
        url: &str,
    ) -> Result<RequestBuilder> {
        let token = self.credentials.get_credential().await.map_err(|e| {
            self.place.transport_error(
                operation,
                key,
                &format!("no token for the credentials: {e}"),
            )
        })?;
        let req = http.request(method, url);
        Ok(if token.bearer.is_empty() {
            req
        } else {
            req.bearer_auth(&token.bearer)
        })
    }

    /// Sends with retries on 429, 5xx and lost connections (not for streamed bodies).
    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
        method: Method,
        url: &str,
    ) -> Result<Response> {
        let mut delay = Duration::from_millis(100);
        for attempt in 0.. {
            let req = build(self.request(operation, key, method.clone(), url).await?);
            let retry = match req.send().await {
                Ok(r)
                    if r.status() == StatusCode::TOO_MANY_REQUESTS
                        || r.status().is_server_error() =>
                {
                    if attempt >= 5 {
                        return Ok(r);
                    }
                    true
                }
                Ok(r) => return Ok(r),
                Err(e) if attempt >= 5 => {
                    return Err(self.place.transport_error(operation, key, &e));
                }
                Err(_) => true,
            };
            if retry {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
        unreachable!("the loop returns")
    }

    /// The answer's error, or the answer.
    async fn ok(&self, operation: &'static str, key: &str, resp: Response) -> Result<Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| status.canonical_reason().unwrap_or_default().to_string());
        Err(self
            .place
            .status_error(operation, key, status.as_u16(), &reason))
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        operation: &'static str,
        key: &str,
        resp: Response,
    ) -> Result<T> {
        let body = self
            .ok(operation, key, resp)
            .await?
            .bytes()
            .await
            .map_err(|e| self.place.transport_error(operation, key, &e))?;
        serde_json::from_slice(&body).map_err(|e| Error::Storage {
            operation,
            key: format!("{}/{key}", self.place.bucket),
            reason: format!("unexpected answer: {e}"),
        })
    }

    /// One listing, page by page.
    async fn listing(&self, prefix: &str, delimiter: bool) -> Result<Listing> {
        let url = format!(
            "{}/storage/v1/b/{}/o",
            self.access.endpoint, self.place.bucket
        );
        let mut all = Listing::default();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("prefix", prefix.to_string())];
            if delimiter {
                query.push(("delimiter", "/".into()));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t.clone()));
            }
            let list = |r: RequestBuilder| r.query(&query);
            let resp = self.send("List", prefix, list, Method::GET, &url).await?;
            // A bucket that does not exist yet holds nothing; a page after
            // the first that is not found cuts the listing, which must fail.
            if resp.status() == StatusCode::NOT_FOUND && token.is_none() {
                return Ok(all);
            }
            let page: Listing = self.json("List", prefix, resp).await?;
            all.items.extend(page.items);
            all.prefixes.extend(page.prefixes);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// An object's description; `None` when it does not exist.
    async fn describe(&self, key: &str) -> Result<Option<Object>> {
        let url = self.object_url(&self.place.bucket, key);
        let resp = self.send("Head", key, |r| r, Method::GET, &url).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.json("Head", key, resp).await.map(Some)
    }

    async fn media(&self, key: &str, generation: Option<&str>) -> Result<Response> {
        let url = self.object_url(&self.place.bucket, key);
        let resp = self
            .send(
                "Get",
                key,
                |r| {
                    let r = r.query(&[("alt", "media")]);
                    match generation {
                        Some(g) => r.query(&[("generation", g)]),
                        None => r,
                    }
                },
                Method::GET,
                &url,
            )
            .await?;
        self.ok("Get", key, resp).await
    }

    /// A media upload of a small body; `if_generation` is the precondition.
    async fn upload(
        &self,
        key: &str,
        data: Bytes,
        if_generation: Option<&str>,
    ) -> Result<Response> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.access.endpoint, self.place.bucket
        );
        self.send(
            "Put",
            key,
            |r| {
                let r = r
                    .query(&[("uploadType", "media"), ("name", key)])
                    .header("content-type", "application/octet-stream")
                    .body(data.clone());
                match if_generation {
                    Some(g) => r.query(&[("ifGenerationMatch", g)]),
                    None => r,
                }
            },
            Method::POST,
            &url,
        )
        .await
    }

    async fn conditional(&self, key: &str, data: Bytes, generation: &str) -> Result<CondPut> {
        let sent = async {
            let resp = self.upload(key, data.clone(), Some(generation)).await?;
            if resp.status() == StatusCode::PRECONDITION_FAILED {
                return Ok(CondPut::Conflict);
            }
            let o: Object = self.json("ConditionalPut", key, resp).await?;
            Ok(CondPut::Written(o.generation))
        };
        match sent.await {
            Err(e) => CondPut::landed(e, self.read_versioned(key), &data).await,
            done => done,
        }
    }

    /// Rewrites (copies server-side) `from` to `dst_key`, call after call until done.
    async fn rewrite(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        let url = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.object_url(from.bucket, from.key),
            self.place.bucket,
            percent_encoding::utf8_percent_encode(dst_key, percent_encoding::NON_ALPHANUMERIC)
        );
        let mut token: Option<String> = None;
        loop {
            // Each call continues the one before, by its token, until done.
            if token.is_some() {
                from.check_stop()?;
            }
            let query: Vec<_> = token.iter().map(|t| ("rewriteToken", t.clone())).collect();
            let rewrite = |r: RequestBuilder| r.query(&query).header("content-length", 0);
            let resp = self
                .send("Rewrite", dst_key, rewrite, Method::POST, &url)
                .await?;
            let step: Rewrite = self.json("Rewrite", dst_key, resp).await?;
            if step.done {
                return Ok(step.resource.and_then(|o| o.etag));
            }
            // Without its token the next call would begin again, for ever.
            token = match step.rewrite_token {
                Some(t) if !t.is_empty() => Some(t),
                _ => {
                    return Err(Error::Storage {
                        operation: "Rewrite",
                        key: dst_key.to_string(),
                        reason: "the rewrite is not done and gave no token to continue it".into(),
                    });
                }
            };
        }
    }
}

fn info(o: Object) -> ObjectInfo {
    ObjectInfo {
        size: o.size.parse().unwrap_or_default(),
        etag: o.etag,
        key: o.name,
    }
}

#[async_trait]
impl ObjectStore for GcsBucket {
    fn place(&self) -> &Place {
        &self.place
    }

    async fn ensure_bucket(&self, create: bool) -> Result<()> {
        let url = format!(
            "{}/storage/v1/b/{}",
            self.access.endpoint, self.place.bucket
        );
        let mut resp = self.send("GetBucket", "", |r| r, Method::GET, &url).await?;
        // An account allowed the bucket's objects only (objectAdmin, the
        // least privilege a backup needs) may not read the bucket itself: a
        // listing of one object, which it may, says whether it is there.
        let mut operation = "GetBucket";
        if resp.status() == StatusCode::FORBIDDEN {
            operation = "List";
            let one = |r: RequestBuilder| r.query(&[("maxResults", "1")]);
            resp = self
                .send(operation, "", one, Method::GET, &format!("{url}/o"))
                .await?;
        }
        if resp.status() != StatusCode::NOT_FOUND {
            self.ok(operation, "", resp).await?;
            return Ok(());
        }
        if !create {
            return Err(Error::not_found("gcs bucket", self.place.location()));
        }
        let Some(project) = &self.project else {
            return Err(Error::FailedPrecondition(format!(
                "gcs bucket {:?} does not exist, and without a project_id in the key file it cannot \
                 be created here: create it, or give a service account key",
                self.place.bucket
            )));
        };
        let url = format!("{}/storage/v1/b", self.access.endpoint);
        let body = serde_json::json!({ "name": self.place.bucket }).to_string();
        let resp = self
            .send(
                "CreateBucket",
                "",
                |r| {
                    r.query(&[("project", project)])
                        .header("content-type", "application/json")
                        .body(body.clone())
                },
                Method::POST,
                &url,
            )
            .await?;
        if resp.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        self.ok("CreateBucket", "", resp).await.map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out: Vec<ObjectInfo> = self
            .listing(prefix, false)
            .await?
            .items
            .into_iter()
            .map(info)
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let mut dirs = self.listing(prefix, true).await?.prefixes;
        dirs.sort();
        Ok(dirs)
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.describe(key).await?.map(|o| info(o).size))
    }
    async fn read(&self, key: &str) -> Result<Bytes> {
        let resp = self.media(key, None).await?;
        resp.bytes()
            .await
            .map_err(|e| self.place.transport_error("Get", key, &e))
    }
    async fn write(&self, key: &str, data: Bytes) -> Result<()> {
        let resp = self.upload(key, data, None).await?;
        self.ok("Put", key, resp).await.map(|_| ())
    }
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<CondPut> {
        // Generation 0: only if no live object has the name.
        self.conditional(key, data, "0").await
    }
    async fn put_if_match(&self, key: &str, data: Bytes, etag: &str) -> Result<CondPut> {
        // Our version tag on GCS is the object's generation, a number: any
        // other tag matches no object (GCS would refuse it as a bad request).
        if etag.parse::<u64>().is_err() {
            return Ok(CondPut::Conflict);
        }
        self.conditional(key, data, etag).await
    }
    async fn read_versioned(&self, key: &str) -> Result<Option<(Bytes, String)>> {
        // The body is read pinned to the generation described. A generation
        // gone by then was replaced (a lease renewed) or removed meanwhile:
        // described again, never taken for absent while an object is there.
        for _ in 0..VERSIONED_READ_TRIES {
            let Some(o) = self.describe(key).await? else {
                return Ok(None);
            };
            let resp = match self.media(key, Some(&o.generation)).await {
                Err(Error::NotFound { .. }) => continue,
                r => r?,
            };
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.place.transport_error("Get", key, &e))?;
            return Ok(Some((body, o.generation)));
        }
        Err(Error::Storage {
            operation: "Get",
            key: format!("{}/{key}", self.place.bucket),
            reason: format!("the object changed {VERSIONED_READ_TRIES} times while it was read"),
        })
    }
    async fn get_stream(&self, key: &str) -> Result<(u64, ByteStream)> {
        let resp = self.media(key, None).await?;
        let size = match resp.content_length() {
            Some(n) => n,
            None => self.head(key).await?.unwrap_or_default(),
        };
        let place = self.place.clone();
        let key = key.to_string();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| place.transport_error("Get", &key, &e));
        Ok((size, Box::pin(stream)))
    }
    async fn put_stream(&self, key: &str, size: u64, body: ByteStream) -> Result<Option<String>> {
        // One streamed media upload: the body passes through, never held whole.
        let url = format!(
            "{}/upload/storage/v1/b/{}/o",
            self.access.endpoint, self.place.bucket
        );
        // A source of another size fails the upload: the length sent would
        // cut a longer one short, and store the cut as the whole object.
        let body = super::exactly(size, format!("{}/{key}", self.place.bucket), body);
        // The body moves at its source's pace: a limit on standing still,
        // not on the whole upload (see `stall`).
        let progress = super::stall::Progress::new();
        let req = self
            .request_on(&self.uploads, "Put", key, Method::POST, &url)
            .await?
            .query(&[("uploadType", "media"), ("name", key)])
            .header("content-type", "application/octet-stream")
            .header("content-length", size)
            .body(reqwest::Body::wrap_stream(progress.track(body)));
        let upload = async {
            let resp = req
                .send()
                .await
                .map_err(|e| self.place.transport_error("Put", key, &e))?;
            self.json::<Object>("Put", key, resp).await
        };
        let o = progress.watch(upload, "Put", key).await?;
        let written = info(o);
        if written.size != size {
            return Err(Error::Storage {
                operation: "Put",
                key: format!("{}/{key}", self.place.bucket),
                reason: format!("stored {} bytes, not {size}", written.size),
            });
        }
        Ok(written.etag)
    }
    async fn copy_in(&self, from: Source<'_>, dst_key: &str) -> Result<Option<String>> {
        self.rewrite(from, dst_key).await
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let url = self.object_url(&self.place.bucket, &key);
                let resp = self
                    .send("Delete", &key, |r| r, Method::DELETE, &url)
                    .await?;
                if resp.status() == StatusCode::NOT_FOUND {
                    return Ok(());
                }
                self.ok("Delete", &key, resp).await.map(|_| ())
            })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }
}
