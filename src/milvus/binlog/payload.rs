//! The parquet payload of one event: read from its byte range of the object,
//! its layout checked against its footer, and every page of its column decoded.

use super::*;

/// A byte range of the object as a parquet file.
#[derive(Clone)]
struct Payload {
    blob: Arc<dyn Blob>,
    start: u64,
    len: u64,
}

impl Length for Payload {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A sequential reader over part of a [`Payload`].
struct PayloadRead {
    payload: Payload,
    pos: u64,
}

impl Read for PayloadRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.payload.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.payload
            .blob
            .read_at(self.payload.start + self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for Payload {
    type T = io::BufReader<PayloadRead>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(io::BufReader::with_capacity(
            8 * 1024,
            PayloadRead {
                payload: self.clone(),
                pos: start,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start.checked_add(length as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(parquet::errors::ParquetError::EOF(format!(
                "bytes {start}..{start}+{length} past the payload's {} bytes",
                self.len
            )));
        }
        let mut buf = vec![0u8; length];
        self.blob.read_at(self.start + start, &mut buf)?;
        Ok(buf.into())
    }
}

/// Decodes the parquet file at `start..start+len` whole.
pub(super) fn check_payload(
    blob: &Arc<dyn Blob>,
    start: u64,
    len: u64,
    type_name: &str,
    physical: PhysicalType,
    event_type: u8,
) -> Result<(), String> {
    let mut magic = [0u8; 4];
    blob.read_at(start, &mut magic)
        .map_err(|e| format!("reading its first bytes: {e}"))?;
    if &magic != b"PAR1" {
        return Err(format!(
            "starts with {magic:02x?}, not the parquet magic PAR1"
        ));
    }
    let payload = Payload {
        blob: blob.clone(),
        start,
        len,
    };
    let options = ReadOptionsBuilder::new()
        // Decoded when present (not in Milvus 2.3's payloads), so that they are checked too.
        .with_page_index()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_page_statistics(true)
                .set_read_bloom_filter(false)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(payload, options)
        .map_err(|e| format!("footer: {e}"))?;
    let meta = reader.metadata();
    let file_meta = meta.file_metadata();
    let schema = file_meta.schema_descr();
    if schema.num_columns() != 1 {
        return Err(format!(
            "{} columns, Milvus writes one",
            schema.num_columns()
        ));
    }
    let column = schema.column(0);
    if column.physical_type() != physical {
        return Err(format!(
            "column of type {}, a {type_name} payload is {physical}",
            column.physical_type()
        ));
    }
    let footer_start = footer_start(blob.as_ref(), start, len)?;
    let mut expected_offset = 4u64;
    let mut rows = 0i64;
    for rg in 0..reader.num_row_groups() {
        let rg_meta = meta.row_group(rg);
        let chunk = rg_meta.column(0);
        let at = |what: String| format!("row group {rg}: {what}");
        if chunk.compression() != Compression::UNCOMPRESSED
            && !matches!(chunk.compression(), Compression::ZSTD(_))
        {
            return Err(at(format!(
                "codec {}, Milvus 2.3 writes zstd",
                chunk.compression()
            )));
        }
        // Column chunks follow one another from the leading magic to the footer.
        let (chunk_start, chunk_len) = chunk.byte_range();
        if chunk_start != expected_offset {
            return Err(at(format!(
                "column chunk starts at {chunk_start}, the previous data ends at {expected_offset}"
            )));
        }
        expected_offset = chunk_start.saturating_add(chunk_len);
        if rg_meta.num_rows() < 0 || chunk.num_values() != rg_meta.num_rows() {
            return Err(at(format!(
                "{} values in the column chunk, {} rows in the row group",
                chunk.num_values(),
                rg_meta.num_rows()
            )));
        }
        let rg_reader = reader.get_row_group(rg).map_err(|e| at(format!("{e}")))?;
        let decoded = decode_column(rg_reader.as_ref(), event_type, type_name)
            .map_err(|e| at(format!("column {}: {e}", column.path())))?;
        if decoded != rg_meta.num_rows() as u64 {
            return Err(at(format!(
                "{decoded} rows decoded, the metadata says {}",
                rg_meta.num_rows()
            )));
        }
        rows += rg_meta.num_rows();
    }
    check_tail(meta, expected_offset, footer_start)?;
    if rows != file_meta.num_rows() {
        return Err(format!(
            "{rows} rows in the row groups, the footer says {}",
            file_meta.num_rows()
        ));
    }
    Ok(())
}

/// Between the column data and the footer there is nothing, or exactly the
/// page indexes and bloom filters the footer declares (Milvus 2.3 writes none;
/// other parquet writers may).
fn check_tail(
    meta: &parquet::file::metadata::ParquetMetaData,
    data_end: u64,
    footer_start: u64,
) -> Result<(), String> {
    let mut ranges = Vec::new();
    let mut open_bloom = Vec::new();
    for rg in meta.row_groups() {
        for c in rg.columns() {
            ranges.extend(c.column_index_range());
            ranges.extend(c.offset_index_range());
            match (c.bloom_filter_offset(), c.bloom_filter_length()) {
                (Some(o), Some(l)) if o >= 0 && l >= 0 => {
                    ranges.push(o as u64..o as u64 + l as u64)
                }
                (Some(o), None) if o >= 0 => open_bloom.push(o as u64),
                (None, _) => {}
                (o, l) => return Err(format!("bloom filter at {o:?}, length {l:?}")),
            }
        }
    }
    // A bloom filter of unknown length runs to the next structure.
    let mut starts: Vec<u64> = ranges
        .iter()
        .map(|r| r.start)
        .chain(open_bloom.iter().copied())
        .collect();
    starts.push(footer_start);
    starts.sort_unstable();
    for o in open_bloom {
        let end = starts
            .iter()
            .copied()
            .find(|&s| s > o)
            .unwrap_or(footer_start);
        ranges.push(o..end);
    }
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut at = data_end;
    for r in ranges {
        if r.start != at {
            return Err(format!(
                "bytes {at}..{} between the column data and the footer are not what the footer declares (next: {}..{})",
                r.start.max(at),
                r.start,
                r.end
            ));
        }
        at = r.end;
    }
    if at != footer_start {
        return Err(format!(
            "the column data and indexes end at {at}, the footer starts at {footer_start}"
        ));
    }
    Ok(())
}

/// Where the parquet footer (metadata) starts, from its trailing length.
fn footer_start(blob: &dyn Blob, start: u64, len: u64) -> Result<u64, String> {
    let mut tail = [0u8; 8];
    blob.read_at(start + len - 8, &mut tail)
        .map_err(|e| format!("reading the footer length: {e}"))?;
    let meta_len = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    len.checked_sub(8 + meta_len)
        .ok_or_else(|| format!("footer length {meta_len} exceeds the payload"))
}

/// Reads every value of the row group's one column; returns the rows read.
fn decode_column(rg: &dyn RowGroupReader, event_type: u8, type_name: &str) -> Result<u64, String> {
    let reader = rg.get_column_reader(0).map_err(|e| e.to_string())?;
    let delete_strings = event_type == DELETE_EVENT && type_name == "String";
    match reader {
        ColumnReader::BoolColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::Int32ColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::Int64ColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::Int96ColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::FloatColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::DoubleColumnReader(r) => drain(r, |_| Ok(())),
        ColumnReader::ByteArrayColumnReader(r) => drain(r, |values| {
            if delete_strings {
                for v in values {
                    check_delete_entry(v.data())?;
                }
            }
            Ok(())
        }),
        ColumnReader::FixedLenByteArrayColumnReader(r) => drain(r, |_| Ok(())),
    }
}

/// A delta log entry as Milvus's import decodes it: the JSON of
/// `{"pk":…,"ts":…,"pkType":5|21}` (an INT64 or VARCHAR key), or the 2.0 form
/// `pk,ts` (both decimal).
fn check_delete_entry(v: &[u8]) -> Result<(), String> {
    use serde_json::Value;
    let ok = match serde_json::from_slice::<Value>(v) {
        Ok(Value::Object(o)) => {
            let pk = o.get("pk");
            o.get("ts").is_some_and(Value::is_u64)
                && match o.get("pkType").and_then(Value::as_i64) {
                    Some(5) => pk.is_some_and(Value::is_i64),
                    Some(21) => pk.is_some_and(Value::is_string),
                    _ => false,
                }
        }
        Ok(_) => false,
        Err(_) => std::str::from_utf8(v).is_ok_and(|s| {
            s.split_once(',')
                .is_some_and(|(pk, ts)| pk.parse::<i64>().is_ok() && ts.parse::<u64>().is_ok())
        }),
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "delete entry {:?} is neither {{\"pk\":…,\"ts\":…,\"pkType\":5|21}} nor pk,ts",
        String::from_utf8_lossy(&v[..v.len().min(80)])
    ))
}

/// Decodes every page of the column, `BATCH` records at a time.
fn drain<T: ParquetDataType>(
    mut r: ColumnReaderImpl<T>,
    mut visit: impl FnMut(&[T::T]) -> Result<(), String>,
) -> Result<u64, String> {
    let mut def = Vec::with_capacity(BATCH);
    let mut rep = Vec::with_capacity(BATCH);
    let mut values = Vec::with_capacity(BATCH);
    let mut rows = 0u64;
    loop {
        def.clear();
        rep.clear();
        values.clear();
        let (records, _values, _levels) = r
            .read_records(BATCH, Some(&mut def), Some(&mut rep), &mut values)
            .map_err(|e| e.to_string())?;
        if records == 0 {
            return Ok(rows);
        }
        visit(&values)?;
        rows += records as u64;
    }
}
