use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::meta::BackupLayout;
use crate::meta::manifest::ManifestEntry;
use crate::storage::{LocalDir, ObjectStore};

/// Writes a complete backup `name` whose manifest names `objects` objects;
/// returns the manifest's size in the store.
async fn complete_backup(store: &Arc<dyn ObjectStore>, name: &str, objects: usize) -> u64 {
    let layout = BackupLayout::new("backup");
    let manifest = Manifest {
        version: 1,
        objects: (0..objects)
            .map(|i| ManifestEntry {
                key: format!("binlogs/insert_log/1/2/3/{i}/1"),
                size: i as u64,
                crc32c: Some(i as u32),
                ..Default::default()
            })
            .collect(),
    };
    let body = serde_json::to_vec(&manifest).unwrap();
    let size = body.len() as u64;
    store
        .write(&layout.meta_key(name, MANIFEST_FILE), body.into())
        .await
        .unwrap();
    store
        .write(&layout.meta_key(name, "full_meta.json"), "{}".into())
        .await
        .unwrap();
    size
}

/// A scan of the other backups holds no more than its budget of manifests at
/// once, and still reads every one: one larger than the whole budget is read
/// alone. (Read in order, the first manifest would wait for the budget the
/// ones after it hold: the scan never ends.)
#[tokio::test]
async fn a_scan_holds_no_more_manifest_bytes_than_its_budget_and_reads_them_all() {
    let root = std::env::temp_dir().join(format!("mb-scan-{}", uuid::Uuid::new_v4().simple()));
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&root));
    let budget = 256 * 1024;
    let catalog =
        Catalog::new(store.clone(), BackupLayout::new("backup")).with_manifest_budget(budget);
    let counts = [2_000, 1_500, 3_000, 12_000, 2_500, 1_000, 2_000];
    let mut sizes = Vec::new();
    for (i, n) in counts.iter().enumerate() {
        sizes.push(complete_backup(&store, &format!("b{i}"), *n).await);
    }
    let largest = *sizes.iter().max().unwrap();
    assert!(
        largest > budget,
        "one manifest is larger than the budget: {sizes:?}"
    );
    assert!(sizes.iter().sum::<u64>() > 2 * budget);

    let mut read = Vec::new();
    let scan = catalog.for_other_manifests(None, "", Among::Every, |name, manifest| {
        read.push((name, manifest?.expect("complete").objects.len()));
        Ok(())
    });
    let peak = tokio::time::timeout(Duration::from_secs(30), scan)
        .await
        .expect("the scan ends")
        .unwrap();
    read.sort();
    let want: Vec<(String, usize)> = counts
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("b{i}"), *n))
        .collect();
    assert_eq!(read, want, "every manifest read whole");
    assert!(
        peak <= budget || peak == largest,
        "peak {peak} of {sizes:?}: within {budget}, or the largest alone"
    );
    assert!(peak > 0);
    let _ = std::fs::remove_dir_all(root);
}
