//! The binlog check (`milvus::binlog`) on real Milvus 2.3.5 binlogs.
//!
//! The fixtures under `tests/fixtures/binlogs/` were written by the real Milvus
//! of the test environment (insert binlogs of several field types and one delta
//! log); `live_binlogs_pass_and_a_flipped_byte_fails` makes fresh ones and, with
//! `MILVUS_BACKUP_CAPTURE_BINLOGS=1`, writes them there again.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use milvus_backup::milvus::MilvusApi;
use milvus_backup::milvus::binlog::{check_binlog, check_binlog_bytes, check_binlog_file};
use milvus_backup::storage::{ByteStream, ObjectStore, S3Bucket};

use common::data;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/binlogs")
}

/// Every fixture: (file name, bytes).
fn fixtures() -> Vec<(String, Bytes)> {
    let mut out: Vec<(String, Bytes)> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/binlogs")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "binlog"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                Bytes::from(std::fs::read(&p).unwrap()),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "the fixtures are missing: {out:?}");
    out
}

fn stream_of(data: Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<milvus_backup::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// Makes a collection of every type in the real Milvus, flushes it, deletes
/// some rows and flushes again; checks every binlog it wrote, streamed from
/// the S3 server; a flipped byte in the middle of the largest insert binlog is
/// refused. With `MILVUS_BACKUP_CAPTURE_BINLOGS=1` the binlogs become the fixtures.
#[tokio::test]
async fn live_binlogs_pass_and_a_flipped_byte_fails() {
    let cfg = common::config();
    let m = common::milvus(&cfg);
    let spec = data::Spec {
        dynamic: true,
        ..data::Spec::new(&common::unique("binlog_check"))
    };
    data::create(&m, &spec).await;
    data::insert(&m, &spec, "", 0..400, 7).await;
    data::flush(&m, "default", &spec.name).await;
    data::delete(&m, &spec, "pk in [3, 5, 8, 13, 21, 34, 55, 89, 144, 233]").await;
    data::flush(&m, "default", &spec.name).await;
    let id = m
        .describe_collection("default", &spec.name)
        .await
        .unwrap()
        .id;

    let bucket = S3Bucket::new(&cfg.minio.milvus_bucket().unwrap()).unwrap();
    let root = cfg.minio.root_path.trim_matches('/').to_string();
    let inserts = bucket
        .list(&format!("{root}/insert_log/{id}/"))
        .await
        .unwrap();
    let deltas = bucket
        .list(&format!("{root}/delta_log/{id}/"))
        .await
        .unwrap();
    assert!(!inserts.is_empty(), "no insert binlogs for collection {id}");
    assert!(!deltas.is_empty(), "no delta binlog for collection {id}");

    let mut largest: Option<(String, Bytes)> = None;
    for obj in inserts.iter().chain(&deltas) {
        let (_, body) = bucket.get_stream(&obj.key).await.unwrap();
        let started = Instant::now();
        check_binlog(body)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", obj.key));
        eprintln!(
            "{} ({} bytes) checked in {:?}",
            obj.key,
            obj.size,
            started.elapsed()
        );
        if obj.key.contains("/insert_log/")
            && largest
                .as_ref()
                .is_none_or(|l| l.1.len() < obj.size as usize)
        {
            largest = Some((obj.key.clone(), bucket.read(&obj.key).await.unwrap()));
        }
    }

    // The motivating case: one flipped byte (same size) in the middle of an insert binlog.
    let (key, data) = largest.unwrap();
    let mut bad = data.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    let err = check_binlog(stream_of(Bytes::from(bad), 1000))
        .await
        .expect_err("a flipped byte in the middle of the payload must be refused");
    eprintln!("{key} with byte {mid} flipped: {err}");

    if std::env::var_os("MILVUS_BACKUP_CAPTURE_BINLOGS").is_some() {
        capture(&bucket, &inserts, &deltas).await;
    }
    data::drop_if_exists(&m, "default", &spec.name).await;
}

/// Writes the insert binlogs of a few fields and the delta log as fixtures.
async fn capture(
    bucket: &S3Bucket,
    inserts: &[milvus_backup::storage::ObjectInfo],
    deltas: &[milvus_backup::storage::ObjectInfo],
) {
    let dir = fixtures_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // {root}/insert_log/{coll}/{part}/{seg}/{field}/{log}
    let wanted = [
        ("100", "insert_int64_pk"),
        ("101", "insert_bool"),
        ("108", "insert_varchar"),
        ("109", "insert_json"),
        ("111", "insert_array_varchar"),
        ("112", "insert_float_vector"),
        ("1", "insert_timestamp"),
    ];
    for (field, name) in wanted {
        let obj = inserts
            .iter()
            .find(|o| o.key.rsplit('/').nth(1) == Some(field))
            .unwrap_or_else(|| panic!("no binlog of field {field}"));
        let data = bucket.read(&obj.key).await.unwrap();
        std::fs::write(dir.join(format!("{name}.binlog")), &data).unwrap();
        eprintln!("captured {} as {name}.binlog", obj.key);
    }
    let data = bucket.read(&deltas[0].key).await.unwrap();
    std::fs::write(dir.join("delta.binlog"), &data).unwrap();
    eprintln!("captured {} as delta.binlog", deltas[0].key);
}

#[test]
fn every_fixture_passes() {
    for (name, data) in fixtures() {
        check_binlog_bytes(data.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let file = std::fs::File::open(fixtures_dir().join(&name)).unwrap();
        check_binlog_file(file).unwrap_or_else(|e| panic!("{name} (file): {e}"));
    }
}

/// The byte ranges of the zstd frames in `data` (the compressed pages), found
/// by their magic number and walked block by block (RFC 8878).
fn zstd_frames(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 4 <= data.len() {
        if data[i..i + 4] != [0x28, 0xb5, 0x2f, 0xfd] {
            i += 1;
            continue;
        }
        let start = i;
        let fhd = data[i + 4];
        let single_segment = fhd & 0x20 != 0;
        let checksum = fhd & 0x04 != 0;
        let dict_id = [0, 1, 2, 4][(fhd & 0x03) as usize];
        let fcs = match fhd >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let mut p = i + 5 + usize::from(!single_segment) + dict_id + fcs;
        loop {
            let h = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], 0]);
            let last = h & 1 != 0;
            let size = (h >> 3) as usize;
            p += 3 + if (h >> 1) & 3 == 1 { 1 } else { size };
            if last {
                break;
            }
        }
        assert!(checksum, "a zstd frame without a checksum at {start}");
        p += 4;
        out.push(start..p);
        i = p;
    }
    out
}

/// What each byte of a binlog is, for the flip tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    /// Header timestamps, descriptor ids and timestamps, event timestamps:
    /// values no reader can verify.
    FreeValue,
    /// Magic, type codes, lengths, next positions, data type, post-header
    /// lengths, extras length and extras: the binlog's own structure.
    Structure,
    /// A zstd frame: the compressed page bytes Milvus's reader panics on.
    CompressedPage,
    /// The rest of the parquet file: its magic, page headers and footer.
    ParquetMetadata,
}

/// The part of every byte of `data` (a valid binlog).
fn layout(data: &[u8]) -> Vec<Part> {
    let le32 = |p: usize| i32::from_le_bytes(data[p..p + 4].try_into().unwrap()) as usize;
    let mut parts = vec![Part::Structure; data.len()];
    let mut mark = |range: std::ops::Range<usize>, part: Part| {
        for p in range {
            parts[p] = part;
        }
    };
    // Descriptor: header timestamp, four ids and two timestamps.
    mark(4..12, Part::FreeValue);
    mark(21..69, Part::FreeValue);
    let mut event = 4 + le32(13);
    while event < data.len() {
        let next = le32(event + 13);
        mark(event..event + 8, Part::FreeValue);
        mark(event + 17..event + 33, Part::FreeValue);
        mark(event + 33..next, Part::ParquetMetadata);
        event = next;
    }
    for frame in zstd_frames(data) {
        mark(frame, Part::CompressedPage);
    }
    parts
}

/// Per part: (bytes, refused).
type Tally = std::collections::BTreeMap<Part, (usize, usize)>;

/// Every fixture, every byte flipped (`^ 0xff`), same size: every flip of a
/// compressed page and of the binlog's structure is refused. A flip in a
/// value that nothing can verify (timestamps, ids, the statistics and
/// `created_by` of the parquet metadata, which Milvus's reader ignores too)
/// decodes as before and is not seen: Milvus reads such a binlog without harm.
#[test]
fn every_flipped_byte_of_pages_and_structure_is_refused() {
    let started = Instant::now();
    let mut total = Tally::new();
    for (name, data) in fixtures() {
        let parts = layout(&data);
        let mut tally = Tally::new();
        for (pos, part) in parts.iter().enumerate() {
            let mut bad = data.to_vec();
            bad[pos] ^= 0xff;
            let refused = check_binlog_bytes(Bytes::from(bad)).is_err();
            for t in [&mut tally, &mut total] {
                let e = t.entry(*part).or_default();
                e.0 += 1;
                e.1 += usize::from(refused);
            }
            if !refused {
                assert!(
                    matches!(part, Part::FreeValue | Part::ParquetMetadata),
                    "{name}: a flip of byte {pos} ({part:?}) was not refused"
                );
            }
        }
        eprintln!("{name}: {} bytes, refused per part: {tally:?}", data.len());
    }
    let (bytes, refused) = total.values().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    eprintln!(
        "all fixtures: {refused} of {bytes} single-byte flips refused ({:.1}%) in {:?}; per part {total:?}",
        100.0 * refused as f64 / bytes as f64,
        started.elapsed()
    );
    let (pages, pages_refused) = total[&Part::CompressedPage];
    assert!(pages > 20_000, "the fixtures hold {pages} compressed bytes");
    assert_eq!(
        pages_refused, pages,
        "every flip in a compressed page is refused"
    );
    let (structure, structure_refused) = total[&Part::Structure];
    assert_eq!(structure_refused, structure);
    assert!(
        refused * 100 >= bytes * 90,
        "{refused} of {bytes} flips refused: expected at least 90%"
    );
}

/// Every single flipped bit of a compressed page that changes what the page
/// decodes to is refused: the zstd frames carry content checksums, which the
/// decoder verifies. A few bits change nothing (the unused bit of a frame
/// header, a larger window size, padding bits): a reference zstd decoder reads
/// the same content from those frames, so does Milvus's, and they pass.
/// One bit per byte (rotating), every bit of the frame headers.
#[test]
fn every_flipped_bit_that_changes_a_compressed_page_is_refused() {
    let (mut flips, mut refused, mut same_content) = (0usize, 0usize, 0usize);
    for (name, data) in fixtures() {
        for frame in zstd_frames(&data) {
            let content = zstd::decode_all(&data[frame.clone()]).unwrap();
            for pos in frame.clone() {
                let bits = if pos < frame.start + 8 {
                    0..8
                } else {
                    pos % 8..pos % 8 + 1
                };
                for bit in bits {
                    let mut bad = data.to_vec();
                    bad[pos] ^= 1 << bit;
                    flips += 1;
                    if check_binlog_bytes(Bytes::from(bad.clone())).is_err() {
                        refused += 1;
                        continue;
                    }
                    let decoded = zstd::decode_all(&bad[frame.clone()]);
                    assert!(
                        decoded.as_ref().is_ok_and(|d| *d == content),
                        "{name}: bit {bit} of byte {pos} flipped changes the page and was not refused"
                    );
                    same_content += 1;
                }
            }
        }
    }
    eprintln!(
        "{flips} single-bit flips in compressed pages: {refused} refused ({:.3}%), \
         {same_content} decode to the same content and pass",
        100.0 * refused as f64 / flips as f64
    );
    assert!(flips > 20_000);
    assert!(refused * 100 >= flips * 99, "{refused} of {flips}");
}

/// The motivating case: one byte in the middle of the largest insert binlog,
/// same size — what made Milvus 2.3.5 panic with `CRC check failed`.
#[tokio::test]
async fn a_flipped_byte_in_the_middle_of_an_insert_binlog_is_refused_with_the_reason() {
    let (name, data) = fixtures()
        .into_iter()
        .filter(|(n, _)| n.starts_with("insert_"))
        .max_by_key(|(_, d)| d.len())
        .unwrap();
    let mut bad = data.to_vec();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    let err = check_binlog(stream_of(Bytes::from(bad), 4096))
        .await
        .expect_err("refused");
    eprintln!("{name}, byte {mid} flipped: {err}");
    assert!(err.contains("event 1 (insert)"), "{err}");
    assert!(err.contains("parquet payload"), "{err}");
    assert!(err.contains("checksum"), "{err}");
}

/// Every fixture passes through the streaming API, in chunks of any size.
#[tokio::test]
async fn the_streaming_check_passes_every_fixture() {
    for (name, data) in fixtures() {
        for chunk in [1, 7, 4096, data.len()] {
            check_binlog(stream_of(data.clone(), chunk))
                .await
                .unwrap_or_else(|e| panic!("{name} in chunks of {chunk}: {e}"));
        }
    }
}

/// A stream that fails is refused with the stream's error.
#[tokio::test]
async fn a_failing_stream_is_refused() {
    let (_, data) = fixtures().remove(0);
    let chunks: Vec<milvus_backup::Result<Bytes>> = vec![
        Ok(data.slice(..100)),
        Err(milvus_backup::Error::invalid("connection reset")),
    ];
    let err = check_binlog(Box::pin(futures::stream::iter(chunks)))
        .await
        .expect_err("refused");
    assert!(err.contains("connection reset"), "{err}");
}

/// An empty object, and every truncation of every fixture, are refused; so
/// is a fixture with bytes appended.
#[tokio::test]
async fn empty_truncated_and_extended_binlogs_are_refused() {
    let err = check_binlog(stream_of(Bytes::new(), 1)).await.unwrap_err();
    eprintln!("empty: {err}");
    assert!(err.contains("empty object"), "{err}");

    let mut truncations = 0;
    for (name, data) in fixtures() {
        for len in 0..data.len() {
            truncations += 1;
            let err = check_binlog_bytes(data.slice(..len))
                .expect_err(&format!("{name} cut to {len} bytes was not refused"));
            if len == data.len() / 2 {
                eprintln!("{name} cut to {len} bytes: {err}");
                assert!(
                    err.contains(&format!("the object has {len} bytes"))
                        || err.contains("runs past the end"),
                    "{err}"
                );
            }
        }
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0; 5]);
        let err = check_binlog_bytes(Bytes::from(longer)).expect_err("extended");
        assert!(err.contains("truncated at byte"), "{name} + 5 bytes: {err}");
    }
    eprintln!("{truncations} truncations, all refused");
}
