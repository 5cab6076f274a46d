//! Server-side copies of large objects in parts (UploadPartCopy). An upload
//! that does not complete is aborted: at once when a part or the completion
//! fails, and from a guard when the copy is dropped (a cancelled job), so no
//! parts are left behind to be billed. A SIGKILL still leaves them: only a
//! bucket lifecycle rule (AbortIncompleteMultipartUpload) removes those.

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use super::s3::S3Bucket;
use crate::error::{Error, Result};

/// The size of one part of a multipart copy, unless set otherwise.
pub(super) const COPY_PART_BYTES: u64 = 64 * 1024 * 1024;

/// Parts of one multipart copy in flight at once.
const PARTS_IN_FLIGHT: usize = 8;

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
    /// once. An upload that fails or is dropped is aborted.
    pub(super) async fn copy_in_parts(
        &self,
        source: &str,
        dst_key: &str,
        size: u64,
    ) -> Result<Option<String>> {
        let upload = self
            .client
            .create_multipart_upload()
            .bucket(&self.place.bucket)
            .key(dst_key)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", dst_key, e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_string();
        let guard = UploadGuard {
            client: self.client.clone(),
            bucket: self.place.bucket.clone(),
            key: dst_key.to_string(),
            upload_id: upload_id.clone(),
            armed: true,
        };
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
            .await;
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
            .key(dst_key)
            .upload_id(&upload_id)
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
                guard.abort().await;
                Err(self.error("CompleteMultipartUpload", dst_key, e))
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
