//! Which Milvus a server works with: an id kept in Milvus's own storage, at
//! `{rootPath}/milvus-backup/instance.json` (outside the folders Milvus
//! collects garbage in), written once by the first server that needs it.
//! The servers of one Milvus read the same object, whatever address they
//! reach it by; a server of another Milvus that shares the backup storage
//! (one cluster backs up, another restores) reads another. Job records
//! carry it, so that a takeover never resumes or ends a job of another
//! Milvus.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::storage::{ObjectStore, join_key};

/// The id's object under Milvus's root path.
const KEY: &str = "milvus-backup/instance.json";

#[derive(Serialize, Deserialize)]
struct Instance {
    id: String,
}

/// How long a failure to read or make the id is answered again without a
/// request: a storage this server may only read (backups elsewhere) is not
/// asked every second, by every policy's look.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// Whose Milvus a recorded job or policy is ([`MilvusIdentity::whose`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whose {
    /// This server's (or recorded without an id: anyone's).
    Ours,
    /// Another Milvus sharing the backup storage.
    Another,
    /// Not known: this Milvus's id cannot be read now (why).
    Unknown(String),
}

/// The id of the Milvus whose storage is `store` under `root_path`, read
/// (or made) once per process.
pub struct MilvusIdentity {
    store: Arc<dyn ObjectStore>,
    key: String,
    id: OnceCell<String>,
    /// The last failure, and when: answered again until [`RETRY_AFTER`].
    failed: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for MilvusIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MilvusIdentity({})", self.key)
    }
}

impl MilvusIdentity {
    pub fn new(store: Arc<dyn ObjectStore>, root_path: &str) -> Self {
        Self {
            store,
            key: join_key([root_path, KEY]),
            id: OnceCell::new(),
            failed: Mutex::new(None),
        }
    }

    /// The id: the one on record, or a new one written if none is (the first
    /// of several servers to write wins, and the others read it). A failure
    /// is answered again for a minute without asking the store.
    pub async fn get(&self) -> Result<&str> {
        if let Some(id) = self.id.get() {
            return Ok(id);
        }
        let recent = self.failed.lock().expect("failed").clone();
        if let Some((at, why)) = recent.filter(|(at, _)| at.elapsed() < RETRY_AFTER) {
            let left = RETRY_AFTER.saturating_sub(at.elapsed()).as_secs();
            return Err(Error::FailedPrecondition(format!(
                "{why} (asked again in {left} s)"
            )));
        }
        match self.id.get_or_try_init(|| self.read_or_make()).await {
            Ok(id) => Ok(id),
            Err(e) => {
                let why = format!("cannot read or make Milvus's id {}: {e}", self.key);
                *self.failed.lock().expect("failed") = Some((Instant::now(), why));
                Err(e)
            }
        }
    }

    /// Whether a job or policy recorded with Milvus id `theirs` is this
    /// Milvus's: one recorded without an id is anyone's; while this Milvus's
    /// id cannot be read, no other is.
    pub async fn is_ours(&self, theirs: Option<&str>) -> bool {
        matches!(self.whose(theirs).await, Whose::Ours)
    }

    /// Whose Milvus a job or policy recorded with Milvus id `theirs` is.
    pub async fn whose(&self, theirs: Option<&str>) -> Whose {
        if theirs.is_none() {
            return Whose::Ours;
        }
        match self.get().await {
            Ok(ours) if same_milvus(theirs, ours) => Whose::Ours,
            Ok(_) => Whose::Another,
            Err(e) => Whose::Unknown(e.to_string()),
        }
    }

    async fn read_or_make(&self) -> Result<String> {
        if let Some(id) = self.read().await? {
            return Ok(id);
        }
        let made = Instance {
            id: uuid::Uuid::new_v4().to_string(),
        };
        let body = Bytes::from(serde_json::to_vec(&made)?);
        // Refused when another server wrote one first (or this very write,
        // retried): read back, the id on record is the one all agree on.
        self.store.put_if_absent(&self.key, body).await?;
        self.read().await?.ok_or_else(|| {
            Error::Internal(format!("{} is gone right after it was written", self.key))
        })
    }

    async fn read(&self) -> Result<Option<String>> {
        let body = match self.store.read(&self.key).await {
            Ok(body) => body,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let instance: Instance = serde_json::from_slice(&body)
            .map_err(|e| Error::DataLoss(format!("{} is not a Milvus id ({e})", self.key)))?;
        Ok(Some(instance.id))
    }
}

/// Whether a job recorded with Milvus id `theirs` (`None`: recorded before
/// jobs carried one) is this server's to take over, whose Milvus is
/// `ours`.
pub fn same_milvus(theirs: Option<&str>, ours: &str) -> bool {
    theirs.is_none_or(|theirs| theirs == ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalDir;

    /// Servers of one Milvus agree on its id, whichever makes it; another
    /// root path is another Milvus. A job recorded without an id is anyone's.
    #[tokio::test]
    async fn one_milvus_one_id_made_once() {
        let dir = std::env::temp_dir().join(format!("mb-id-{}", uuid::Uuid::new_v4().simple()));
        let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&dir));
        let (a, b) = (
            MilvusIdentity::new(store.clone(), "files"),
            MilvusIdentity::new(store.clone(), "files"),
        );
        let (ida, idb) = tokio::join!(a.get(), b.get());
        let (ida, idb) = (ida.unwrap().to_string(), idb.unwrap().to_string());
        assert_eq!(ida, idb);
        let other = MilvusIdentity::new(store.clone(), "elsewhere");
        let ido = other.get().await.unwrap();
        assert_ne!(ida, ido);
        assert!(
            store
                .read("files/milvus-backup/instance.json")
                .await
                .is_ok()
        );
        assert!(same_milvus(Some(&ida), &idb) && !same_milvus(Some(ido), &ida));
        assert!(same_milvus(None, &ida));
        assert_eq!(a.whose(Some(&idb)).await, Whose::Ours);
        assert_eq!(a.whose(Some(ido)).await, Whose::Another);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A store that refuses (here: its root is a file): the failure is
    /// answered again for a minute without a request, even once the store
    /// would answer.
    #[tokio::test]
    async fn a_failure_is_answered_again_without_asking() {
        let root = std::env::temp_dir().join(format!("mb-id-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&root, b"not a directory").unwrap();
        let id = MilvusIdentity::new(Arc::new(LocalDir::new(&root)), "files");
        assert!(id.get().await.is_err());
        // Whose a record of some Milvus is, is then not known (it read as
        // another Milvus's before); one recorded without an id is anyone's.
        assert!(matches!(id.whose(Some("x")).await, Whose::Unknown(_)));
        assert_eq!(id.whose(None).await, Whose::Ours);
        std::fs::remove_file(&root).unwrap();
        let again = id.get().await.unwrap_err();
        assert!(again.to_string().contains("asked again in"), "{again}");
        assert!(
            !root.exists(),
            "nothing was written: the store was not asked"
        );
    }
}
