//! Reading a file on threads: a source splits it into chunks (JSONL: blocks of whole lines;
//! CSV: Arrow record batches of strings; Parquet: Arrow record batches, row groups decoded by
//! several threads), converter threads turn chunks into gRPC batches, and a collector hands
//! them on in file order (so batch contents and their sequence numbers are the same on every
//! run of the same file). Every queue is bounded; the sender's pace bounds the whole pipeline.
//!
//! ```text
//! source(s) ──chunks──► converters × N ──converted──► collector (file order) ──► sender (async)
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};

use super::batch::{Converted, Ctx};
use super::jsonl::JsonState;
use super::{Format, format_of};
use crate::error::{Error, Result};

/// A piece of a file to convert.
enum Chunk {
    Json {
        key: (u64, u64),
        first_line: u64,
        bytes: Vec<u8>,
    },
    Arrow {
        key: (u64, u64),
        first_line: u64,
        batch: RecordBatch,
    },
    /// The end of a group (a row group, or the whole file).
    End { key: (u64, u64) },
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Threads to convert on: the machine's cores.
pub fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 16)
}

/// Groups the collector has handed on, for the Parquet decoders to stay within reach.
#[derive(Debug, Default)]
struct Emitted {
    groups: Mutex<u64>,
    cv: Condvar,
}

/// A running pipeline: converted chunks arrive on `rx` in file order; an error ends it.
#[derive(Debug)]
pub struct Pipeline {
    /// Converted chunks, in file order.
    pub rx: tokio::sync::mpsc::Receiver<Result<Converted>>,
}

/// Starts reading `path` (its format by extension) with `ctx`; `progress` counts bytes read
/// (rows for Parquet).
pub fn start(path: &Path, ctx: Arc<Ctx>, progress: Arc<AtomicU64>) -> Result<Pipeline> {
    let format = format_of(path)?;
    let file = File::open(path).map_err(|e| file_err(path, e))?;
    let n_workers = workers();
    let (chunk_tx, chunk_rx) = sync_channel::<Result<Chunk>>(n_workers * 2);
    let (conv_tx, conv_rx) = sync_channel::<Result<Converted>>(n_workers * 2);
    let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<Converted>>(2);
    let emitted = Arc::new(Emitted::default());
    let path_buf = path.to_path_buf();
    let batch_rows = ctx.batch_rows.max(1);
    match format {
        Format::Jsonl => {
            let tx = chunk_tx;
            std::thread::spawn(move || {
                let r = jsonl_source(file, batch_rows, &progress, &tx)
                    .map_err(|e| file_err(&path_buf, e));
                if let Err(e) = r {
                    let _ = tx.send(Err(e));
                }
            });
        }
        Format::Csv => {
            let tx = chunk_tx;
            std::thread::spawn(move || {
                if let Err(e) = csv_source(file, &path_buf, batch_rows, &progress, &tx) {
                    let _ = tx.send(Err(e));
                }
            });
        }
        Format::Parquet => {
            let meta = ArrowReaderMetadata::load(&file, Default::default())
                .map_err(|e| file_err(path, e))?;
            let groups = meta.metadata().num_row_groups();
            let mut starts = Vec::with_capacity(groups);
            let mut acc = 0u64;
            for g in meta.metadata().row_groups() {
                starts.push(acc);
                acc += g.num_rows().max(0) as u64;
            }
            let starts = Arc::new(starts);
            let next = Arc::new(AtomicU64::new(0));
            let decoders = n_workers.min(groups).max(1);
            for _ in 0..decoders {
                let tx = chunk_tx.clone();
                let (meta, starts, next, emitted, progress) = (
                    meta.clone(),
                    Arc::clone(&starts),
                    Arc::clone(&next),
                    Arc::clone(&emitted),
                    Arc::clone(&progress),
                );
                // Its own open file: clones of one handle share the read offset, and the
                // parquet crate seeks before each read.
                let file = File::open(path).map_err(|e| file_err(path, e))?;
                let path = path_buf.clone();
                std::thread::spawn(move || {
                    let r = parquet_source(
                        file,
                        &path,
                        meta,
                        &starts,
                        &next,
                        &emitted,
                        decoders as u64,
                        batch_rows,
                        &progress,
                        &tx,
                    );
                    if let Err(e) = r {
                        let _ = tx.send(Err(e));
                    }
                });
            }
            if groups == 0 {
                let _ = chunk_tx.send(Ok(Chunk::End { key: (0, 0) }));
            }
            drop(chunk_tx);
        }
    }
    // Converters.
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    for _ in 0..n_workers {
        let rx = Arc::clone(&chunk_rx);
        let tx = conv_tx.clone();
        let ctx = Arc::clone(&ctx);
        std::thread::spawn(move || converter(&rx, &tx, &ctx));
    }
    drop(conv_tx);
    // Collector: file order.
    let format_groups = format == Format::Parquet;
    std::thread::spawn(move || collector(conv_rx, out_tx, &emitted, format_groups));
    Ok(Pipeline { rx: out_rx })
}

fn converter(rx: &Mutex<Receiver<Result<Chunk>>>, tx: &SyncSender<Result<Converted>>, ctx: &Ctx) {
    let mut state = JsonState::default();
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(chunk) = next else {
            return;
        };
        let out = chunk.map(|c| {
            let mut out = Converted::default();
            match c {
                Chunk::Json {
                    key,
                    first_line,
                    bytes,
                } => {
                    out.key = key;
                    super::jsonl::convert_chunk(&bytes, first_line, ctx, &mut state, &mut out);
                }
                Chunk::Arrow {
                    key,
                    first_line,
                    batch,
                } => {
                    out.key = key;
                    super::columnar::convert_record_batch(&batch, first_line, ctx, &mut out);
                }
                Chunk::End { key } => {
                    out.key = key;
                    out.last = true;
                }
            }
            out
        });
        if tx.send(out).is_err() {
            return;
        }
    }
}

fn collector(
    rx: Receiver<Result<Converted>>,
    tx: tokio::sync::mpsc::Sender<Result<Converted>>,
    emitted: &Emitted,
    _groups: bool,
) {
    let mut pending: BTreeMap<(u64, u64), Converted> = BTreeMap::new();
    let mut expect = (0u64, 0u64);
    for item in rx {
        let c = match item {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        pending.insert(c.key, c);
        while let Some(c) = pending.remove(&expect) {
            expect = if c.last {
                let next = (expect.0 + 1, 0);
                if let Ok(mut g) = emitted.groups.lock() {
                    *g = next.0;
                }
                emitted.cv.notify_all();
                next
            } else {
                (expect.0, expect.1 + 1)
            };
            if tx.blocking_send(Ok(c)).is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx.blocking_send(Err(Error::Internal(
            "the file reader stopped before the end of the file".into(),
        )));
    }
}

/// JSONL: blocks of whole lines, about `batch_rows` lines each (measured on the first block).
fn jsonl_source(
    file: File,
    batch_rows: usize,
    progress: &AtomicU64,
    tx: &SyncSender<Result<Chunk>>,
) -> std::io::Result<()> {
    const FIRST: usize = 1 << 20;
    const MAX_LINE: usize = 512 << 20;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut carry: Vec<u8> = Vec::new();
    let mut target = FIRST;
    let mut index = 0u64;
    let mut line = 1u64;
    let mut first = true;
    loop {
        let mut buf = std::mem::take(&mut carry);
        let want = target.max(buf.len() + 4096);
        let before = buf.len();
        buf.reserve(want - before);
        let got = (&mut r)
            .take((want - before) as u64)
            .read_to_end(&mut buf)?;
        progress.fetch_add(got as u64, Ordering::Relaxed);
        let eof = got < want - before;
        if first {
            if buf.starts_with(b"\xEF\xBB\xBF") {
                buf.drain(..3);
            }
            first = false;
        }
        if !eof {
            match memrchr_newline(&buf) {
                Some(cut) => carry = buf.split_off(cut + 1),
                None => {
                    if buf.len() > MAX_LINE {
                        return Err(std::io::Error::other(format!(
                            "line {line} is longer than {} MiB",
                            MAX_LINE >> 20
                        )));
                    }
                    // A line longer than the block: read on.
                    carry = buf;
                    target = target.saturating_mul(2);
                    continue;
                }
            }
        }
        let newlines = count_newlines(&buf) as u64;
        if index == 0 && newlines > 0 {
            let avg = buf.len() / newlines as usize;
            target = (batch_rows.saturating_mul(avg.max(1))).clamp(64 << 10, 64 << 20);
        }
        if !buf.is_empty() {
            let chunk = Chunk::Json {
                key: (0, index),
                first_line: line,
                bytes: buf,
            };
            if tx.send(Ok(chunk)).is_err() {
                return Ok(());
            }
            index += 1;
        }
        line += newlines;
        if eof {
            let _ = tx.send(Ok(Chunk::End { key: (0, index) }));
            return Ok(());
        }
    }
}

fn memrchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().rposition(|&c| c == b'\n')
}

fn count_newlines(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Counts bytes read, for the progress bar.
struct Counting<'a, R> {
    inner: R,
    read: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// CSV: a header row, then record batches of strings (arrow-csv: quoting, CRLF); a UTF-8 BOM
/// is skipped.
fn csv_source(
    file: File,
    path: &Path,
    batch_rows: usize,
    progress: &AtomicU64,
    tx: &SyncSender<Result<Chunk>>,
) -> Result<()> {
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut bom = [0u8; 3];
    let mut got = 0;
    while got < 3 {
        let n = r.read(&mut bom[got..]).map_err(|e| file_err(path, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let prefix: Vec<u8> = if bom[..got] == *b"\xEF\xBB\xBF" {
        Vec::new()
    } else {
        bom[..got].to_vec()
    };
    let mut input = Counting {
        inner: std::io::Cursor::new(prefix).chain(r),
        read: progress,
    };
    // The header, read with the csv crate (quoted names), then the rest by arrow-csv.
    let mut header_line = Vec::new();
    read_record_bytes(&mut input, &mut header_line).map_err(|e| file_err(path, e))?;
    let mut hr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header_line.as_slice());
    let names: Vec<String> = match hr.records().next() {
        Some(Ok(rec)) => rec.iter().map(|s| s.trim().to_string()).collect(),
        Some(Err(e)) => return Err(file_err(path, format!("header: {e}"))),
        None => Vec::new(),
    };
    if names.is_empty() {
        let _ = tx.send(Ok(Chunk::End { key: (0, 0) }));
        return Ok(());
    }
    let schema = Arc::new(arrow_schema::Schema::new(
        names
            .iter()
            .map(|n| arrow_schema::Field::new(n, arrow_schema::DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let reader = arrow_csv::ReaderBuilder::new(schema)
        .with_header(false)
        .with_batch_size(batch_rows)
        .with_truncated_rows(true)
        .build(input)
        .map_err(|e| file_err(path, e))?;
    let mut index = 0u64;
    let mut line = 2u64;
    for b in reader {
        let batch = b.map_err(|e| file_err(path, format!("near line {line}: {e}")))?;
        let n = batch.num_rows() as u64;
        let chunk = Chunk::Arrow {
            key: (0, index),
            first_line: line,
            batch,
        };
        if tx.send(Ok(chunk)).is_err() {
            return Ok(());
        }
        index += 1;
        line += n;
    }
    let _ = tx.send(Ok(Chunk::End { key: (0, index) }));
    Ok(())
}

/// Reads one CSV record's bytes (the header), honouring quotes, up to and without its line end.
fn read_record_bytes(r: &mut impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut quoted = false;
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Ok(());
        }
        match byte[0] {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => {
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                return Ok(());
            }
            _ => {}
        }
        out.push(byte[0]);
        if out.len() > 16 << 20 {
            return Err(std::io::Error::other("the header is longer than 16 MiB"));
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one decoder thread's whole context"
)]
fn parquet_source(
    file: File,
    path: &Path,
    meta: ArrowReaderMetadata,
    starts: &[u64],
    next: &AtomicU64,
    emitted: &Emitted,
    decoders: u64,
    batch_rows: usize,
    progress: &AtomicU64,
    tx: &SyncSender<Result<Chunk>>,
) -> Result<()> {
    loop {
        let g = next.fetch_add(1, Ordering::Relaxed);
        if g as usize >= starts.len() {
            return Ok(());
        }
        // Stay within `decoders` groups of the collector, so memory stays bounded.
        if let Ok(mut done) = emitted.groups.lock() {
            while g >= *done + decoders {
                done = match emitted.cv.wait(done) {
                    Ok(d) => d,
                    Err(_) => return Ok(()),
                };
            }
        }
        let f = file.try_clone().map_err(|e| file_err(path, e))?;
        // (One thread reads through `file` and its clones at a time.)
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
            .with_row_groups(vec![g as usize])
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| file_err(path, e))?;
        let mut row = starts[g as usize];
        let mut index = 0u64;
        for b in reader {
            let batch = b.map_err(|e| file_err(path, format!("row group {g}: {e}")))?;
            let n = batch.num_rows() as u64;
            let chunk = Chunk::Arrow {
                key: (g, index),
                first_line: row + 1,
                batch,
            };
            if tx.send(Ok(chunk)).is_err() {
                return Ok(());
            }
            progress.fetch_add(n, Ordering::Relaxed);
            index += 1;
            row += n;
        }
        if tx.send(Ok(Chunk::End { key: (g, index) })).is_err() {
            return Ok(());
        }
    }
}
