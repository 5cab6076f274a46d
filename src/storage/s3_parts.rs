//! Large objects in parts: server-side copies (UploadPartCopy) and streamed
//! writes (UploadPart; a single PutObject stops at 5 GiB). An upload that
//! does not complete is aborted: at once when a part or the completion
//! fails, and from a guard when the copy is dropped (a cancelled job), so no
//! parts are left behind to be billed. A SIGKILL still leaves them: only a
//! bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those.

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::s3::S3Bucket;
use super::{ByteStream, Source};
use crate::error::{Error, Result};

/// The size of one part of a multipart copy, unless set otherwise.
pub(super) const COPY_PART_BYTES: u64 = 64 * 1024 * 1024;

/// Parts of one multipart copy in flight at once.
const PARTS_IN_FLIGHT: usize = 8;

/// The size of one part of a streamed upload, held in memory until sent.
const STREAM_PART_BYTES: usize = 16 * 1024 * 1024;

/// Parts of one streamed upload sent at once (one more is being read).
const STREAM_PARTS_IN_FLIGHT: usize = 2;

/// The most parts one S3 upload may have.
const MAX_PARTS: u64 = 10_000;

/// Aborts its upload when dropped before [`UploadGuard::disarm`].
struct UploadGuard {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    armed: bool,
}

impl UploadGuard {
    /// Aborts the upload now (a failed part or completion).
    async fn abort(mut self) {
        self.armed = false;
        let _ = self.request().send().await;
    }

    /// The upload completed: nothing to abort.
    fn disarm(mut self) {
        self.armed = false;
    }

    fn request(
        &self,
    ) -> aws_sdk_s3::operation::abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder
    {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
    }
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let abort = self.request();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = abort.send().await {
                        tracing::warn!(error = %e, "cannot abort a multipart copy cut short");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(key = %self.key, "a multipart copy cut short is left to the bucket's lifecycle rule")
            }
        }
    }
}

impl S3Bucket {
    /// Copies a large object server-side in parts (UploadPartCopy), several at
    /// once. An upload that fails, is dropped or is stopped (`from`) is
    /// aborted; a completion already sent is answered first.
    pub(super) async fn copy_in_parts(
        &self,
        from: Source<'_>,
        source: &str,
        dst_key: &str,
    ) -> Result<Option<String>> {
        let size = from.size;
        // The parts copy the planned ranges only: a source of another size
        // would be cut to them, or fail on a range past its end.
        self.check_source_size(from).await?;
        let guard = self.begin_upload(dst_key).await?;
        let upload_id = guard.upload_id.clone();
        crate::failpoint::pause_at("storage.copy_in_parts").await;
        let part = self.copy_part_bytes;
        let ranges: Vec<(i32, u64, u64)> = (0..size.div_ceil(part))
            .map(|i| {
                let start = i * part;
                (i as i32 + 1, start, (start + part).min(size) - 1)
            })
            .collect();
        let parts = futures::stream::iter(ranges)
            .map(|(number, first, last)| {
                let upload_id = &upload_id;
                async move {
                    from.check_stop()?;
                    let out = self
                        .client
                        .upload_part_copy()
                        .bucket(&self.place.bucket)
                        .key(dst_key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .copy_source(source)
                        .copy_source_range(format!("bytes={first}-{last}"))
                        .send()
                        .await
                        .map_err(|e| self.error("UploadPartCopy", dst_key, e))?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .map(str::to_string);
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(etag)
                            .build(),
                    )
                }
            })
            .buffered(PARTS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await
            .and_then(|parts| from.check_stop().map(|()| parts));
        self.complete_upload(guard, parts).await
    }

    /// Fails [`Error::DataLoss`], naming the source and both sizes, unless
    /// the object `from` names (a bucket of this endpoint) holds `from.size`
    /// bytes: it changed since it was listed or proven. A missing source is
    /// `NotFound`, naming it.
    async fn check_source_size(&self, from: Source<'_>) -> Result<()> {
        let name = format!("{}/{}", from.bucket, from.key);
        let head = self
            .client
            .head_object()
            .bucket(from.bucket)
            .key(from.key)
            .send()
            .await;
        let size = match head {
            Ok(o) => o.content_length().unwrap_or(0).max(0) as u64,
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => {
                return Err(Error::not_found("object", name));
            }
            Err(e) => {
                return Err(match self.error("HeadObject", from.key, e) {
                    // Named by its own bucket, not this one.
                    Error::Storage {
                        operation, reason, ..
                    } => Error::Storage {
                        operation,
                        key: name,
                        reason,
                    },
                    Error::NotFound { kind, .. } => Error::not_found(kind, name),
                    other => other,
                });
            }
        };
        if size == from.size {
            return Ok(());
        }
        Err(Error::DataLoss(format!(
            "{name} is {size} bytes, not the {} planned: it changed since it was listed or \
             proven; nothing of it was copied",
            from.size
        )))
    }

    /// Writes a stream of `size` bytes in parts (UploadPart): two parts
    /// upload while the next one is read, so at most three are in memory.
    /// Parts are 16 MiB, larger when the object needs more than S3's 10,000.
    /// An upload that fails or is dropped is aborted. A multipart upload's
    /// ETag is no MD5: none is returned.
    pub(super) async fn put_in_parts(
        &self,
        key: &str,
        size: u64,
        body: ByteStream,
    ) -> Result<Option<String>> {
        let body = super::exactly(size, format!("{}/{key}", self.place.bucket), body);
        let part_bytes = STREAM_PART_BYTES.max(size.div_ceil(MAX_PARTS) as usize);
        let guard = self.begin_upload(key).await?;
        let upload_id = guard.upload_id.clone();
        // Each part: chunks gathered until it has `part_bytes` (the last may
        // be shorter, and an empty object is one empty part).
        let parts = futures::stream::try_unfold(
            PartState {
                body,
                part_bytes,
                number: 0,
                ended: false,
            },
            next_part,
        );
        let upload_id_ref = &upload_id;
        let sent = parts
            .map_ok(|(number, part)| self.upload_part(key, upload_id_ref, number, part))
            .try_buffered(STREAM_PARTS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await;
        self.complete_upload(guard, sent).await.map(|_| None)
    }

    /// Sends part `number` of upload `upload_id`.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> Result<CompletedPart> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.place.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(part.len() as i64)
            .body(SdkByteStream::from(part))
            .send()
            .await
            .map_err(|e| self.error("UploadPart", key, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build())
    }

    /// Begins a multipart upload to `key`, aborted if dropped unfinished.
    async fn begin_upload(&self, key: &str) -> Result<UploadGuard> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.place.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        Ok(UploadGuard {
            client: self.client.clone(),
            bucket: self.place.bucket.clone(),
            key: key.to_string(),
            upload_id: upload.upload_id().unwrap_or_default().to_string(),
            armed: true,
        })
    }

    /// Completes the upload of `guard` with `parts`, or aborts it when a
    /// part or the completion failed. The upload's ETag.
    async fn complete_upload(
        &self,
        guard: UploadGuard,
        parts: Result<Vec<CompletedPart>>,
    ) -> Result<Option<String>> {
        let parts = match parts {
            Ok(parts) => parts,
            Err(e) => {
                guard.abort().await;
                return Err(e);
            }
        };
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.place.bucket)
            .key(&guard.key)
            .upload_id(&guard.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(out) => {
                guard.disarm();
                Ok(out.e_tag().map(str::to_string))
            }
            Err(e) => {
                let err = self.error("CompleteMultipartUpload", &guard.key, e);
                guard.abort().await;
                Err(err)
            }
        }
    }

    /// The keys of the multipart uploads begun under `prefix` and neither
    /// completed nor aborted.
    pub async fn incomplete_uploads(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.place.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.error("ListMultipartUploads", prefix, e))?;
            keys.extend(
                out.uploads()
                    .iter()
                    .filter_map(|u| u.key())
                    .map(str::to_string),
            );
            if !out.is_truncated().unwrap_or(false) {
                return Ok(keys);
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
        }
    }
}

/// Where a streamed upload is.
struct PartState {
    body: ByteStream,
    part_bytes: usize,
    /// The last part's number.
    number: i32,
    /// Whether the body ended.
    ended: bool,
}

/// The next part of a streamed upload, with its number: chunks gathered
/// until it has `part_bytes` (the last may be shorter, and an empty object
/// is one empty part).
async fn next_part(mut s: PartState) -> Result<Option<((i32, Bytes), PartState)>> {
    if s.ended {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    while buf.len() < s.part_bytes {
        match s.body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk?),
            None if buf.is_empty() && s.number > 0 => return Ok(None),
            None => {
                s.ended = true;
                break;
            }
        }
    }
    s.number += 1;
    Ok(Some(((s.number, buf.freeze()), s)))
}
