//! Proof that a Milvus binlog decodes before Milvus is given it.
//!
//! Milvus 2.3.5's bulk import (`backup=true`) panics the whole server on a
//! damaged insert binlog (`panic: CRC check failed` in the zstd codec of its
//! parquet reader). Backups written by the Go tool carry no checksums, so every
//! binlog is read here as Milvus's reader reads it, and refused with a reason
//! when it does not decode.
//!
//! The format (Milvus 2.3, `internal/storage`), all integers little-endian:
//!
//! ```text
//! int32 magic 0xfffabc
//! descriptor event:
//!   header   u64 timestamp, i8 type code (0), i32 event length, i32 next position
//!   fix part i64 collection, partition, segment, field ids; u64 start, end timestamps;
//!            i32 payload data type (schema.DataType)
//!   u8 × 8   post-header lengths (the fix part size of each event type)
//!   i32      extras length, then that many bytes of JSON
//! data events (insert, delete, ...), up to the end of the object:
//!   header   as above, with the event's type code
//!   fix part u64 start, end timestamps
//!   payload  a parquet file of one column: event length − header − fix part bytes
//! ```
//!
//! Milvus 2.3 writes the parquet payloads with zstd (arrow-go, level 3, frames
//! with content checksums); it uses no other codec. Decoding every page of
//! every column here verifies each zstd frame's checksum, the page sizes, the
//! level and value encodings, and the row counts; the binlog's own structure
//! (magic, type codes, lengths, next positions, data type, post-header
//! lengths, extras) is checked field by field, and delta log entries are
//! parsed as Milvus's import parses them.
//!
//! What cannot be proven without the writer's own checksum: values that no
//! reader interprets and that carry no redundancy — the header timestamps, the
//! ids and timestamps of the descriptor and of the events, and, in the parquet
//! metadata, the statistics (min/max, null counts) of the pages and of the
//! column chunk, the column chunk's path and encoding statistics, and the
//! column order. Milvus's reader ignores them too: a flipped byte there does
//! not make it fail, and is not seen here. A zstd frame written without a
//! content checksum (not Milvus 2.3's) is only as safe as its decoding.

use std::fs::File;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use parquet::basic::{Compression, Type as PhysicalType};
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::DataType as ParquetDataType;
use parquet::file::properties::ReaderProperties;
use parquet::file::reader::{ChunkReader, FileReader, Length, RowGroupReader};
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use tokio::io::AsyncWriteExt;

mod payload;
use payload::check_payload;

/// The first four bytes of every binlog.
pub const MAGIC: i32 = 0x00ff_fabc;
/// Timestamp (8), type code (1), event length (4), next position (4).
const HEADER_LEN: u64 = 17;
/// The descriptor's fixed part: four ids, two timestamps, the data type.
const DESCRIPTOR_FIX_LEN: u64 = 4 * 8 + 2 * 8 + 4;
/// One post-header length per event type known to Milvus 2.3 (descriptor to index file).
const POST_HEADER_LENGTHS: [u8; 8] = [DESCRIPTOR_FIX_LEN as u8, 16, 16, 16, 16, 16, 16, 16];
/// The fixed part of every data event: start and end timestamps.
const DATA_FIX_LEN: u64 = 16;
/// The smallest parquet file: `PAR1`, footer length, `PAR1`.
const PARQUET_MIN_LEN: u64 = 12;
/// Records decoded at a time: memory stays flat whatever the page count.
const BATCH: usize = 4096;

/// Event type codes (`EventTypeCode`).
const DESCRIPTOR_EVENT: u8 = 0;
const INSERT_EVENT: u8 = 1;
const DELETE_EVENT: u8 = 2;

fn event_name(code: u8) -> &'static str {
    match code {
        0 => "descriptor",
        1 => "insert",
        2 => "delete",
        3 => "create collection",
        4 => "drop collection",
        5 => "create partition",
        6 => "drop partition",
        7 => "index file",
        _ => "unknown",
    }
}

/// The name of a payload's `schema.DataType` and the parquet physical type
/// Milvus 2.3 writes for it; `None` for a type Milvus 2.3 does not write.
fn physical_type(data_type: i32) -> Option<(&'static str, PhysicalType)> {
    use crate::milvus::proto::schema::DataType;
    let data_type = DataType::try_from(data_type).ok()?;
    let physical = match data_type {
        DataType::Bool => PhysicalType::BOOLEAN,
        DataType::Int8 | DataType::Int16 | DataType::Int32 => PhysicalType::INT32,
        DataType::Int64 => PhysicalType::INT64,
        DataType::Float => PhysicalType::FLOAT,
        DataType::Double => PhysicalType::DOUBLE,
        DataType::String | DataType::VarChar | DataType::Array | DataType::Json => {
            PhysicalType::BYTE_ARRAY
        }
        DataType::BinaryVector | DataType::FloatVector => PhysicalType::FIXED_LEN_BYTE_ARRAY,
        _ => return None,
    };
    Some((data_type.as_str_name(), physical))
}

/// Proves that one Milvus binlog (insert or delta log) decodes as Milvus's reader would decode it.
/// Streams the object to a temporary file (flat memory, whatever the size), then walks its events and
/// decodes every parquet payload fully (every page, every column), so a damaged object is refused here
/// instead of crashing Milvus. Returns a human-readable reason on failure (offset/event/what failed).
pub async fn check_binlog(body: crate::storage::ByteStream) -> Result<(), String> {
    check_binlog_in(&std::env::temp_dir(), body)
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
}

/// [`check_binlog`] with its temporary file in `dir` (a binlog can be hundreds
/// of megabytes: keep it off a small tmpfs). A failure of the local file (a
/// full or read-only disk) is an error of this machine, never a verdict on
/// the binlog: `Err`, while a binlog that does not decode is `Ok(Err(why))`.
pub async fn check_binlog_in(
    dir: &Path,
    mut body: crate::storage::ByteStream,
) -> crate::Result<Result<(), String>> {
    let local = |what: &str, e: std::io::Error| {
        crate::Error::Internal(format!(
            "{what} a temporary file in {} to check a binlog: {e}",
            dir.display()
        ))
    };
    // An unnamed temporary file: the system removes it when the last handle
    // closes, whatever happens here (error, panic, cancellation).
    let file = tempfile::tempfile_in(dir).map_err(|e| local("cannot create", e))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Ok(Err(format!("reading the object failed: {e}"))),
        };
        out.write_all(&chunk)
            .await
            .map_err(|e| local("cannot write", e))?;
    }
    out.flush().await.map_err(|e| local("cannot write", e))?;
    let file = out.into_inner().into_std().await;
    tokio::task::spawn_blocking(move || check_binlog_file(file))
        .await
        .map_err(|e| crate::Error::Internal(format!("the binlog check did not finish: {e}")))
}

/// [`check_binlog`] over a file already on disk (read with positioned reads;
/// the file's cursor is not used).
pub fn check_binlog_file(file: File) -> Result<(), String> {
    let len = file
        .metadata()
        .map_err(|e| format!("cannot stat the binlog file: {e}"))?
        .len();
    guarded(Arc::new(FileBlob { file, len }))
}

/// [`check_binlog`] over bytes in memory.
pub fn check_binlog_bytes(data: Bytes) -> Result<(), String> {
    guarded(Arc::new(data))
}

/// A panic of the decoder on hostile input is a refusal, not a crash.
fn guarded(blob: Arc<dyn Blob>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| check(blob))) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("the decoder panicked: {what}"))
        }
    }
}

/// Random access to the object's bytes.
trait Blob: Send + Sync {
    fn len(&self) -> u64;
    /// Fills `buf` from `offset`, or fails (also past the end).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

struct FileBlob {
    file: File,
    len: u64,
}

impl Blob for FileBlob {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
        }
        #[cfg(windows)]
        {
            let mut done = 0;
            while done < buf.len() {
                let n = std::os::windows::fs::FileExt::seek_read(
                    &self.file,
                    &mut buf[done..],
                    offset + done as u64,
                )?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                done += n;
            }
            Ok(())
        }
    }
}

impl Blob for Bytes {
    fn len(&self) -> u64 {
        self.as_ref().len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.as_ref().len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
}

/// Little-endian reads at known offsets, with the reason when the object ends early.
struct Cursor<'a> {
    blob: &'a dyn Blob,
    pos: u64,
}

impl Cursor<'_> {
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), String> {
        let end = self.pos + buf.len() as u64;
        if end > self.blob.len() {
            return Err(format!(
                "truncated at byte {}: {what} needs bytes {}..{end}, the object has {} bytes",
                self.blob.len(),
                self.pos,
                self.blob.len()
            ));
        }
        self.blob
            .read_at(self.pos, buf)
            .map_err(|e| format!("reading {what} at byte {}: {e}", self.pos))?;
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes::<1>(what)?[0])
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.bytes(what)?))
    }
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.bytes(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }
}

/// One event header.
struct Header {
    type_code: u8,
    event_length: u64,
    next_position: i32,
}

/// Reads the header of the event at `cur.pos` and checks its lengths against the object.
fn read_header(cur: &mut Cursor, index: usize) -> Result<Header, String> {
    let start = cur.pos;
    let at = |what: &str| format!("event {index} at byte {start}: {what}");
    let _timestamp = cur.u64(&at("header timestamp"))?;
    let type_code = cur.u8(&at("header type code"))?;
    let event_length = cur.i32(&at("header event length"))?;
    let next_position = cur.i32(&at("header next position"))?;
    let end = start + u64::try_from(event_length).unwrap_or(u64::MAX / 2);
    if end > cur.blob.len() {
        return Err(at(&format!(
            "event length {event_length} runs past the end of the object ({} bytes)",
            cur.blob.len()
        )));
    }
    if i64::from(next_position) != end as i64 {
        return Err(at(&format!(
            "next position {next_position} is not the event's end {end} (start + length {event_length})"
        )));
    }
    Ok(Header {
        type_code,
        event_length: event_length as u64,
        next_position,
    })
}

fn check(blob: Arc<dyn Blob>) -> Result<(), String> {
    let len = blob.len();
    if len == 0 {
        return Err("empty object: a binlog starts with the magic number 0xfffabc".into());
    }
    let mut cur = Cursor {
        blob: blob.as_ref(),
        pos: 0,
    };
    let magic = cur.i32("the magic number")?;
    if magic != MAGIC {
        return Err(format!(
            "not a binlog: magic number {magic:#x} at byte 0, expected {MAGIC:#x}"
        ));
    }

    // The descriptor event.
    let header = read_header(&mut cur, 0)?;
    let d = |what: String| format!("descriptor event at byte 4: {what}");
    if header.type_code != DESCRIPTOR_EVENT {
        return Err(d(format!(
            "type code {} ({}), expected 0 (descriptor)",
            header.type_code,
            event_name(header.type_code)
        )));
    }
    let _ids = [
        cur.i64("collection id")?,
        cur.i64("partition id")?,
        cur.i64("segment id")?,
        cur.i64("field id")?,
    ];
    // Start and end timestamps: not checked, some writers take the first and
    // last row's rather than the smallest and largest.
    let _timestamps = [cur.u64("start timestamp")?, cur.u64("end timestamp")?];
    let data_type = cur.i32("payload data type")?;
    let Some((type_name, physical)) = physical_type(data_type) else {
        return Err(d(format!(
            "payload data type {data_type} is not a Milvus 2.3 data type"
        )));
    };
    let post: [u8; 8] = cur.bytes("post-header lengths")?;
    if post != POST_HEADER_LENGTHS {
        return Err(d(format!(
            "post-header lengths {post:?}, Milvus 2.3 writes {POST_HEADER_LENGTHS:?}"
        )));
    }
    let extras_len = cur.i32("extras length")?;
    let fixed = HEADER_LEN + DESCRIPTOR_FIX_LEN + POST_HEADER_LENGTHS.len() as u64 + 4;
    if extras_len < 0 || fixed + extras_len as u64 != header.event_length {
        return Err(d(format!(
            "extras length {extras_len} does not fit the event length {} ({fixed} bytes before the extras)",
            header.event_length
        )));
    }
    let mut extras = vec![0u8; extras_len as usize];
    cur.fill(&mut extras, "descriptor extras")?;
    check_extras(&extras).map_err(|e| d(format!("extras: {e}")))?;

    // The data events.
    let mut kind = None;
    let mut index = 0;
    while cur.pos < len {
        index += 1;
        let start = cur.pos;
        let header = read_header(&mut cur, index)?;
        let name = event_name(header.type_code);
        let at = |what: String| format!("event {index} ({name}) at byte {start}: {what}");
        // Milvus's import reads insert events, and delete events of strings.
        let accepted = header.type_code == INSERT_EVENT
            || (header.type_code == DELETE_EVENT && matches!(data_type, 20 | 21));
        if !accepted {
            return Err(at(format!(
                "type code {}: the import reads insert events, and delete events of strings (payload {type_name})",
                header.type_code
            )));
        }
        match kind {
            None => kind = Some(header.type_code),
            Some(k) if k != header.type_code => {
                return Err(at(format!(
                    "a {name} event in a binlog of {} events",
                    event_name(k)
                )));
            }
            Some(_) => {}
        }
        if header.event_length < HEADER_LEN + DATA_FIX_LEN + PARQUET_MIN_LEN {
            return Err(at(format!(
                "event length {} is too short for a payload",
                header.event_length
            )));
        }
        let _timestamps = [
            cur.u64("event start timestamp")?,
            cur.u64("event end timestamp")?,
        ];
        let payload_start = cur.pos;
        let payload_end = header.next_position as u64;
        check_payload(
            &blob,
            payload_start,
            payload_end - payload_start,
            type_name,
            physical,
            header.type_code,
        )
        .map_err(|e| {
            at(format!(
                "parquet payload (bytes {payload_start}..{payload_end}): {e}"
            ))
        })?;
        cur.pos = payload_end;
    }
    if kind.is_none() {
        return Err(format!(
            "no data event after the descriptor (the object ends at byte {len})"
        ));
    }
    Ok(())
}

/// The extras are a JSON object; `original_size`, when present, a decimal string.
fn check_extras(extras: &[u8]) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(extras).map_err(|e| format!("not JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    if let Some(size) = obj.get("original_size") {
        let ok = size
            .as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            return Err(format!("original_size {size} is not a decimal string"));
        }
    }
    Ok(())
}
