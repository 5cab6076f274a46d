//! S3 listings, in parallel once a prefix is known to be large. ListObjectsV2
//! pages hold at most 1,000 items and each page waits for the one before it,
//! so a prefix of 10,000 items (the backup root with 10,000 backups) costs ten
//! round trips in a row. A prefix whose last listing took more than one page
//! is listed again as ranges between every 1,000th item of that listing
//! (`StartAfter`), several at once. The ranges cover every key whatever has
//! changed since (each reads on until it passes its upper bound), so a stale
//! split only costs an extra page.
//!
//! A range of folders starts past every key inside its lower bound: the keys
//! of folder `x/` sort after `x/` itself, so `StartAfter=x/` would give `x/`
//! again, and a range of 1,000 folders would need a second page.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::error::ProvideErrorMetadata;
use futures::{StreamExt, TryStreamExt};

use super::ObjectInfo;
use super::s3::S3Bucket;
use crate::error::Result;

/// Items per range, as S3 pages them.
const SPLIT_EVERY: usize = 1000;
/// Ranges listed at once.
const RANGES_AT_ONCE: usize = 16;
/// Large prefixes remembered (a bound on the memory the split points take).
const MAX_PREFIXES: usize = 256;

/// A prefix, and whether its folders (not its objects) are listed.
type Listing = (String, bool);

/// The split points of the large prefixes listed last.
#[derive(Debug, Clone, Default)]
pub(super) struct Splits(Arc<Mutex<HashMap<Listing, Vec<String>>>>);

impl S3Bucket {
    /// Every object under `prefix` (`dirs`: every folder right under it, as
    /// its full prefix, with size 0), in key order.
    pub(super) async fn list_items(&self, prefix: &str, dirs: bool) -> Result<Vec<ObjectInfo>> {
        let id = (prefix.to_string(), dirs);
        let splits = self.splits.0.lock().expect("splits").get(&id).cloned();
        let items = match splits {
            None => self.list_range(prefix, dirs, None, None).await?,
            Some(points) => {
                let mut bounds = Vec::with_capacity(points.len() + 1);
                let mut after = None;
                for p in points {
                    bounds.push((after, Some(p.clone())));
                    after = Some(p);
                }
                bounds.push((after, None));
                let parts: Vec<Vec<ObjectInfo>> = futures::stream::iter(bounds)
                    .map(|(after, until)| async move {
                        self.list_range(prefix, dirs, after.as_deref(), until.as_deref())
                            .await
                    })
                    .buffered(RANGES_AT_ONCE)
                    .try_collect()
                    .await?;
                parts.concat()
            }
        };
        let mut all = self.splits.0.lock().expect("splits");
        if items.len() > SPLIT_EVERY {
            if all.len() >= MAX_PREFIXES {
                all.clear();
            }
            let points = items
                .iter()
                .skip(SPLIT_EVERY - 1)
                .step_by(SPLIT_EVERY)
                .map(|i| i.key.clone())
                .collect();
            all.insert(id, points);
        } else {
            all.remove(&id);
        }
        Ok(items)
    }

    /// The items under `prefix` after `after` and up to `until` (both
    /// included only when `None`: the start, the end), in key order.
    async fn list_range(
        &self,
        prefix: &str,
        dirs: bool,
        after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Vec<ObjectInfo>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.place.bucket)
            .prefix(prefix)
            .set_delimiter(dirs.then(|| "/".to_string()))
            .set_start_after(after.map(|a| start_after(a, dirs)))
            .into_paginator()
            .send();
        let mut out: Vec<ObjectInfo> = Vec::new();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                // A bucket that does not exist yet holds nothing.
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(Vec::new()),
                Err(e) => return Err(self.error("ListObjectsV2", prefix, e)),
            };
            let items: Vec<ObjectInfo> = match dirs {
                true => page
                    .common_prefixes()
                    .iter()
                    .filter_map(|p| {
                        Some(ObjectInfo {
                            key: p.prefix()?.to_string(),
                            size: 0,
                            etag: None,
                        })
                    })
                    .collect(),
                false => page
                    .contents()
                    .iter()
                    .filter_map(|o| {
                        Some(ObjectInfo {
                            key: o.key()?.to_string(),
                            size: o.size().unwrap_or(0).max(0) as u64,
                            etag: o.e_tag().map(str::to_string),
                        })
                    })
                    .collect(),
            };
            // Every later page lies past this one's last item.
            let past = until.is_some_and(|u| items.last().is_some_and(|i| i.key.as_str() >= u));
            out.extend(items);
            if past {
                break;
            }
        }
        out.retain(|i| {
            after.is_none_or(|a| i.key.as_str() > a) && until.is_none_or(|u| i.key.as_str() <= u)
        });
        Ok(out)
    }
}

/// The `StartAfter` of a range after item `after`. For a folder `x/` it is
/// `x0` (`0` follows `/`): every key inside `x/` sorts before it, and every
/// later folder (`x0/`, `xa/`) after it.
fn start_after(after: &str, dirs: bool) -> String {
    match after.strip_suffix('/') {
        Some(stem) if dirs => format!("{stem}0"),
        _ => after.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::start_after;

    #[test]
    fn a_range_of_folders_starts_past_the_keys_inside_its_lower_bound() {
        let start = start_after("root/d00999/", true);
        assert_eq!(start, "root/d009990");
        // Inside the bound (listed by the range before): not after the start.
        for inside in ["root/d00999/", "root/d00999/x", "root/d00999/\u{10FFFF}"] {
            assert!(inside < start.as_str(), "{inside}");
        }
        // Later folders, even those sharing the stem: after it.
        for later in ["root/d009990/", "root/d00999a/", "root/d01000/"] {
            assert!(later > start.as_str(), "{later}");
        }
        // Earlier folders sort before the bound, inside the range before.
        assert!("root/d00999-/" < "root/d00999/");
        // Objects are listed after exactly the key.
        assert_eq!(start_after("root/k/0001", false), "root/k/0001");
    }
}
