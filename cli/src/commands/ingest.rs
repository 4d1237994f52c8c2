//! `driftdb ingest`, `driftdb labels` and `driftdb reference load`: a file read by the columnar
//! readers (`crate::files::pipeline`), its batches sent over a few gRPC streams with several
//! batches in flight on each, the acknowledgements counted, a summary printed, and the exit
//! status set by what was rejected:
//!
//! - 0 when every row was accepted (duplicates and rows sampled out are not errors);
//! - 1 when more rows were rejected (by the file's reader or by the server) than
//!   `--max-rejected` allows (0 by default); the summary line still goes to stdout and the first
//!   rejected rows to stderr;
//! - 1 when the server refused a whole stream or the connection broke, after the summary of what
//!   was sent until then.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use clap::Args;
use driftdb_proto::v1 as pb;
use tokio_stream::StreamExt;

use super::{ServerArg, progress_bar, track};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::files::batch::{Catalog, Converted, Ctx, Kind, ModelInfo, Payload};
use crate::files::values::{TS_RULE, TsUnit, clip};
use crate::files::{names_models, pipeline, progress_total};
use crate::output;
use driftdb_server::convert::model_from_pb;

/// How many rejected rows a run may have: a count, or a fraction of the rows read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MaxRejected {
    /// At most this many rows.
    Count(u64),
    /// At most this share of the rows read (0–1).
    Fraction(f64),
}

impl MaxRejected {
    pub(crate) fn allows(self, rejected: u64, read: u64) -> bool {
        match self {
            MaxRejected::Count(n) => rejected <= n,
            MaxRejected::Fraction(f) => rejected as f64 <= f * read as f64,
        }
    }

    pub(crate) fn describe(self) -> String {
        match self {
            MaxRejected::Count(n) => n.to_string(),
            MaxRejected::Fraction(f) => format!("{}%", f * 100.0),
        }
    }
}

/// Parses `--max-rejected`: `N` rows, or a fraction (`0.01`) or percentage (`1%`) of the rows.
pub(crate) fn parse_max_rejected(s: &str) -> std::result::Result<MaxRejected, String> {
    let t = s.trim();
    let bad =
        || format!("{t:?}: expected a row count (100), a fraction (0.01) or a percentage (1%)");
    if let Some(p) = t.strip_suffix('%') {
        let f: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&f) {
            return Err(bad());
        }
        return Ok(MaxRejected::Fraction(f / 100.0));
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(MaxRejected::Count(n));
    }
    let f: f64 = t.parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&f) {
        return Err(bad());
    }
    Ok(MaxRejected::Fraction(f))
}

const EXIT_HELP: &str = "\
Exit status: 0 when every row was accepted (duplicates and rows sampled out are not errors);
1 when any row was rejected (the summary line on stdout, the first rejected rows on stderr), unless
--max-rejected allows that many; 1 when the server refused the stream.";

/// Options shared by the file commands.
#[derive(Debug, Args, Clone)]
pub(crate) struct FileOpts {
    /// Rows per gRPC batch (a batch is also split so that no message exceeds 32 MiB).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) batch_size: usize,
    /// Unit of numeric timestamps: auto (by magnitude: |v| < 1e11 seconds, < 1e14
    /// milliseconds, < 1e17 microseconds, otherwise nanoseconds), s, ms, us or ns. Timestamp
    /// columns of Parquet files carry their own unit; text is RFC 3339.
    #[arg(long, value_enum, default_value_t = TsUnit::Auto)]
    pub(crate) ts_unit: TsUnit,
    /// Rejected rows tolerated before the exit status is 1: a count (100), a fraction of the
    /// rows read (0.01) or a percentage (1%). Default 0.
    #[arg(long, value_parser = parse_max_rejected)]
    pub(crate) max_rejected: Option<MaxRejected>,
}

#[derive(Debug, Args)]
#[command(after_help = format!("{EXIT_HELP}\n\nTimestamps: RFC 3339 text; {TS_RULE}."))]
pub(crate) struct IngestArgs {
    /// Inference file (.jsonl, .csv, .parquet).
    file: PathBuf,
    /// Model id of rows without `model_id` (default: the only model the key can see).
    #[arg(long)]
    model: Option<String>,
    /// Producer id for idempotent replays of batches. Default: `file:<name>:<random hex>`, new
    /// on every run (re-sent rows are still skipped as duplicates by their request id). With
    /// several streams, stream k sends as `<producer>/k`.
    #[arg(long)]
    producer: Option<String>,
    /// Read and convert the file and encode its batches, but send nothing (for timing the
    /// reader); the summary counts the rows the file itself rejected.
    #[arg(long, hide = true)]
    dry_run: bool,
    /// Concurrent gRPC streams.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    streams: u64,
    #[command(flatten)]
    opts: FileOpts,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Debug, Args)]
#[command(after_help = format!("{EXIT_HELP}\n\nLabels without `model_id` go to --model, or to the only model the key can see; otherwise the command stops before sending anything.\nTimestamps: RFC 3339 text; {TS_RULE}."))]
pub(crate) struct LabelsArgs {
    /// Label file (.jsonl, .csv, .parquet).
    file: PathBuf,
    /// Model id of labels without `model_id` (default: the only model the key can see).
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    opts: FileOpts,
    #[command(flatten)]
    server: ServerArg,
}

#[derive(Debug, Args)]
#[command(after_help = format!("{EXIT_HELP}\n\nTimestamps: RFC 3339 text; {TS_RULE}."))]
pub(crate) struct ReferenceLoadArgs {
    /// Model id.
    #[arg(long)]
    model: String,
    /// Model version.
    #[arg(long)]
    version: String,
    /// Replace an existing profile of this version.
    #[arg(long)]
    replace: bool,
    /// Reference rows (.jsonl, .csv, .parquet), labels inline as `label`.
    file: PathBuf,
    #[command(flatten)]
    opts: FileOpts,
    #[command(flatten)]
    server: ServerArg,
}

/// Model definitions from the server, fetched once each (from the reader threads).
#[derive(Debug)]
struct GrpcCatalog {
    handle: tokio::runtime::Handle,
    client: Client,
    cache: Mutex<HashMap<String, std::result::Result<Arc<ModelInfo>, String>>>,
}

impl GrpcCatalog {
    async fn fetch(client: &mut Client, id: &str) -> std::result::Result<Arc<ModelInfo>, String> {
        match client
            .models
            .get_model(pb::GetModelRequest { id: id.to_string() })
            .await
        {
            Ok(r) => match r.into_inner().model.map(model_from_pb) {
                Some(Ok(def)) => Ok(Arc::new(ModelInfo::new(def))),
                Some(Err(e)) => Err(format!("model {}: {e}", clip(id))),
                None => Err(format!("model {}: the server sent no definition", clip(id))),
            },
            Err(s) if s.code() == tonic::Code::NotFound => {
                Err(format!("unknown model {}", clip(id)))
            }
            Err(s) => Err(format!("model {}: {}", clip(id), transport_error(&s))),
        }
    }

    /// Fetches `id` now (from async code), caching the answer.
    async fn prefetch(&self, id: &str) -> std::result::Result<Arc<ModelInfo>, String> {
        let mut c = self.client.clone();
        let r = GrpcCatalog::fetch(&mut c, id).await;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id.to_string(), r.clone());
        }
        r
    }
}

impl Catalog for GrpcCatalog {
    fn model(&self, id: &str) -> std::result::Result<Arc<ModelInfo>, String> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "model cache poisoned".to_string())?;
        if let Some(r) = cache.get(id) {
            return r.clone();
        }
        if cache.len() >= 10_000 {
            return Err("more than 10,000 models named in one file".into());
        }
        let mut c = self.client.clone();
        let r = self.handle.block_on(GrpcCatalog::fetch(&mut c, id));
        cache.insert(id.to_string(), r.clone());
        r
    }
}

/// A gRPC status as a one-line message with a hint for the usual causes.
pub(crate) fn transport_error(s: &tonic::Status) -> String {
    let msg = if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_string()
    };
    let hint = match s.code() {
        tonic::Code::ResourceExhausted
            if msg.contains("message length too large") || msg.contains("larger than max") =>
        {
            " (a batch exceeded the gRPC message limit: lower --batch-size)"
        }
        tonic::Code::Unavailable
        | tonic::Code::Unknown
        | tonic::Code::Internal
        | tonic::Code::Cancelled
            if msg.contains("h2")
                || msg.contains("transport")
                || msg.contains("connection")
                || msg.contains("broken pipe") =>
        {
            " (the connection to the server broke: check that the server is running and reachable, and its log; a message over its size limit or a proxy in between also ends streams this way)"
        }
        tonic::Code::Unauthenticated => " (pass an API key with --api-key or DRIFTDB_API_KEY)",
        tonic::Code::PermissionDenied => {
            " (the API key lacks the scope this needs: ingest, and read to look models up)"
        }
        _ => "",
    };
    format!("{}{hint}", msg.lines().next().unwrap_or(""))
}

fn status_err(s: tonic::Status) -> Error {
    Error::Transport(transport_error(&s))
}

/// The model of records without `model_id`, decided before anything is sent: `--model`, else
/// the only model the key can see when the file names none.
async fn default_model(
    client: &mut Client,
    file: &Path,
    model: Option<String>,
    what: &str,
) -> Result<(Option<String>, String)> {
    if let Some(m) = model {
        return Ok((Some(m), String::new()));
    }
    let names = names_models(file)?;
    if names {
        return Ok((None, "no model_id (pass --model)".to_string()));
    }
    let models = match client.models.list_models(pb::ListModelsRequest {}).await {
        Ok(r) => r.into_inner().models,
        Err(s) => {
            return Err(Error::Invalid(format!(
                "{}: the {what} name no model_id; pass --model (cannot list the models: {})",
                file.display(),
                transport_error(&s)
            )));
        }
    };
    match models.as_slice() {
        [one] => Ok((Some(one.id.clone()), String::new())),
        [] => Err(Error::Invalid(format!(
            "{}: the {what} name no model_id and the server has no model this key can see; create one with `driftdb model create`",
            file.display()
        ))),
        many => {
            let mut ids: Vec<&str> = many.iter().map(|m| m.id.as_str()).collect();
            ids.sort_unstable();
            let list = if ids.len() > 20 {
                format!("{}, … ({} models)", ids[..20].join(", "), ids.len())
            } else {
                ids.join(", ")
            };
            Err(Error::Invalid(format!(
                "{}: the {what} name no model_id and this key sees several models ({list}); pass --model",
                file.display()
            )))
        }
    }
}

/// Counts of a run.
#[derive(Debug, Default)]
struct Totals {
    /// Records read (sent or rejected in the file).
    read: u64,
    accepted: u64,
    rejected: u64,
    file_rejected: u64,
    duplicates: u64,
    invalid_values: u64,
    sampled_out: u64,
    joined: u64,
    pending: u64,
    /// Labels that arrived after their prediction's join record expired (not errors).
    expired: u64,
    /// The first rejected rows: line, reason.
    errors: Vec<(u64, String)>,
}

const KEEP: usize = 1000;

impl Totals {
    fn note(&mut self, line: u64, reason: String) {
        if self.errors.len() < KEEP {
            self.errors.push((line, reason));
        }
    }

    fn add_file(&mut self, c: &mut Converted) {
        self.read += c.rows;
        self.file_rejected += c.rejected;
        for (l, e) in c.errors.drain(..) {
            self.note(l, e);
        }
    }

    fn apply_batch_ack(&mut self, ack: pb::BatchAck, lines: &[u64]) {
        self.accepted += ack.accepted;
        self.rejected += ack.rejected;
        self.duplicates += ack.duplicates;
        self.invalid_values += ack.invalid_values;
        self.sampled_out += ack.sampled_out;
        if ack.replayed {
            self.duplicates += lines.len() as u64;
        }
        for e in ack.errors {
            let line = lines.get(e.row as usize).copied().unwrap_or(0);
            self.note(line, e.reason);
        }
    }

    fn apply_label_ack(&mut self, ack: pb::LabelAck, lines: &[u64]) {
        self.joined += ack.joined;
        self.pending += ack.pending;
        self.rejected += ack.rejected;
        self.duplicates += ack.duplicates;
        self.sampled_out += ack.sampled_out;
        self.expired += ack.expired;
        if ack.replayed {
            self.duplicates += lines.len() as u64;
        }
        for e in ack.errors {
            let line = lines.get(e.row as usize).copied().unwrap_or(0);
            self.note(line, e.reason);
        }
    }

    fn all_rejected(&self) -> u64 {
        self.rejected + self.file_rejected
    }

    /// Prints the first rejected rows to stderr, in file order.
    fn print_errors(&mut self) {
        self.errors.sort();
        for (line, e) in self.errors.iter().take(20) {
            eprintln!("  line {line}: {e}");
        }
        let n = self.all_rejected();
        if n > 20 && !self.errors.is_empty() {
            eprintln!("  … and {} more", n - self.errors.len().min(20) as u64);
        }
    }

    /// The verdict: an error when more rows were rejected than allowed.
    fn verdict(&self, max: Option<MaxRejected>, noun: &str) -> Result<()> {
        let n = self.all_rejected();
        let max = max.unwrap_or(MaxRejected::Count(0));
        if max.allows(n, self.read) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{n} of {} {noun} rejected (allowed: {}; see --max-rejected)",
            self.read,
            max.describe()
        )))
    }
}

/// The default producer id: the file's name and 64 random bits, new on every run.
fn default_producer(file: &Path) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    // RandomState's keys come from the operating system's random source.
    h.write_u32(std::process::id());
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    format!("file:{name}:{:016x}", h.finish())
}

/// Rows per stream in flight besides the one being written.
const IN_FLIGHT: usize = 3;

/// The row lines of each batch sent on a stream, waiting for its ack.
type LineQueue = Arc<Mutex<VecDeque<Vec<u64>>>>;

struct Stream<M> {
    tx: tokio::sync::mpsc::Sender<M>,
    lines: LineQueue,
    done: tokio::task::JoinHandle<Result<()>>,
    producer: String,
    seq: u64,
}

async fn ack_loop<A>(
    mut acks: tonic::Streaming<A>,
    lines: LineQueue,
    totals: Arc<Mutex<Totals>>,
    apply: fn(&mut Totals, A, &[u64]),
) -> Result<()> {
    while let Some(ack) = acks.next().await {
        let ack = ack.map_err(status_err)?;
        let l = lines
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or_default();
        if let Ok(mut t) = totals.lock() {
            apply(&mut t, ack, &l);
        }
    }
    Ok(())
}

async fn open_inferences(
    client: &mut Client,
    totals: &Arc<Mutex<Totals>>,
    producer: String,
) -> Result<Stream<pb::InferenceBatch>> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let acks = client
        .ingest
        .ingest_inferences(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status_err)?
        .into_inner();
    let lines = LineQueue::default();
    let done = tokio::spawn(ack_loop(
        acks,
        Arc::clone(&lines),
        Arc::clone(totals),
        Totals::apply_batch_ack,
    ));
    Ok(Stream {
        tx,
        lines,
        done,
        producer,
        seq: 0,
    })
}

async fn open_labels(
    client: &mut Client,
    totals: &Arc<Mutex<Totals>>,
    producer: String,
) -> Result<Stream<pb::LabelBatch>> {
    let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
    let acks = client
        .ingest
        .ingest_labels(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status_err)?
        .into_inner();
    let lines = LineQueue::default();
    let done = tokio::spawn(ack_loop(
        acks,
        Arc::clone(&lines),
        Arc::clone(totals),
        Totals::apply_label_ack,
    ));
    Ok(Stream {
        tx,
        lines,
        done,
        producer,
        seq: 0,
    })
}

/// Sends one message on a stream; a closed stream yields the server's reason.
async fn send_on<M>(s: &mut Stream<M>, msg: M, lines: Vec<u64>) -> Result<()> {
    if let Ok(mut q) = s.lines.lock() {
        q.push_back(lines);
    }
    if s.tx.send(msg).await.is_err() {
        return Err(match (&mut s.done).await {
            Ok(Err(e)) => e,
            _ => Error::Transport("the server closed the ingest stream".into()),
        });
    }
    Ok(())
}

async fn close_all<M>(streams: Vec<Stream<M>>) -> Option<Error> {
    let mut first = None;
    for s in streams {
        drop(s.tx);
        match s.done.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first.get_or_insert(e);
            }
            Err(e) => {
                first.get_or_insert(Error::Internal(e.to_string()));
            }
        }
    }
    first
}

/// Prints columns nobody reads, once.
fn warn_unknown(ctx: &Ctx) {
    if let Ok(u) = ctx.unknown_columns.lock()
        && !u.is_empty()
    {
        let names: Vec<String> = u.iter().take(20).map(|n| clip(n)).collect();
        eprintln!(
            "warning: ignored {} column(s) that are no field, segment or feature of the model: {}{}",
            u.len(),
            names.join(", "),
            if u.len() > 20 { ", …" } else { "" }
        );
    }
}

/// A boxed future of a stream being opened.
type Opening<'a, M> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stream<M>>> + Send + 'a>>;

/// How one kind of message travels: opening its stream, taking it out of a converted chunk,
/// stamping its producer and sequence.
struct Wire<M> {
    open: for<'a> fn(&'a mut Client, &'a Arc<Mutex<Totals>>, String) -> Opening<'a, M>,
    unwrap: fn(Payload) -> Option<M>,
    set_source: fn(&mut M, &str, u64),
}

/// One file being sent.
struct Run<'r> {
    file: &'r Path,
    ctx: &'r Arc<Ctx>,
    totals: &'r Arc<Mutex<Totals>>,
    producer: &'r str,
    streams: u64,
    what: &'r str,
}

/// Sends the file's batches over `run.streams` streams; returns the first stream error.
async fn send_file<M: Send + 'static>(
    client: &mut Client,
    run: Run<'_>,
    wire: Wire<M>,
) -> Option<Error> {
    let Run {
        file,
        ctx,
        totals,
        producer,
        streams: n_streams,
        what,
    } = run;
    let Wire {
        open,
        unwrap,
        set_source,
    } = wire;
    let total = progress_total(file).unwrap_or(0);
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(total, what);
    let ticker = track(&bar, &counter);
    let mut failure: Option<Error> = None;
    let mut streams: Vec<Stream<M>> = Vec::new();
    match pipeline::start(file, Arc::clone(ctx), Arc::clone(&counter)) {
        Err(e) => failure = Some(e),
        Ok(mut p) => {
            let mut ordinal = 0u64;
            'read: while let Some(item) = p.rx.recv().await {
                let mut conv = match item {
                    Ok(c) => c,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                if let Ok(mut t) = totals.lock() {
                    t.add_file(&mut conv);
                }
                for out in conv.batches {
                    let k = (ordinal % n_streams) as usize;
                    ordinal += 1;
                    while streams.len() <= k {
                        let name = if n_streams == 1 {
                            producer.to_string()
                        } else {
                            format!("{producer}/{}", streams.len())
                        };
                        match open(client, totals, name).await {
                            Ok(s) => streams.push(s),
                            Err(e) => {
                                failure = Some(e);
                                break 'read;
                            }
                        }
                    }
                    let Some(mut msg) = unwrap(out.payload) else {
                        continue;
                    };
                    let s = &mut streams[k];
                    s.seq += 1;
                    set_source(&mut msg, &s.producer, s.seq);
                    if let Err(e) = send_on(s, msg, out.lines).await {
                        failure = Some(e);
                        break 'read;
                    }
                }
            }
        }
    }
    let closed = close_all(streams).await;
    ticker.abort();
    bar.finish_and_clear();
    failure.or(closed)
}

fn open_inf_boxed<'a>(
    c: &'a mut Client,
    t: &'a Arc<Mutex<Totals>>,
    p: String,
) -> Opening<'a, pb::InferenceBatch> {
    Box::pin(open_inferences(c, t, p))
}

fn open_lbl_boxed<'a>(
    c: &'a mut Client,
    t: &'a Arc<Mutex<Totals>>,
    p: String,
) -> Opening<'a, pb::LabelBatch> {
    Box::pin(open_labels(c, t, p))
}

fn catalog(client: &Client) -> Arc<GrpcCatalog> {
    Arc::new(GrpcCatalog {
        handle: tokio::runtime::Handle::current(),
        client: client.clone(),
        cache: Mutex::new(HashMap::new()),
    })
}

fn make_ctx(kind: Kind, cat: Arc<GrpcCatalog>, opts: &FileOpts) -> Ctx {
    let mut ctx = Ctx::new(kind, cat);
    ctx.ts_unit = opts.ts_unit;
    ctx.batch_rows = opts.batch_size.max(1);
    ctx
}

/// `driftdb ingest FILE`.
pub(crate) async fn ingest_file(a: IngestArgs, json: bool) -> Result<()> {
    let mut client = Client::connect_with(&a.server.config()).await?;
    crate::files::format_of(&a.file)?;
    let (default, reason) = default_model(&mut client, &a.file, a.model.clone(), "rows").await?;
    let cat = catalog(&client);
    if let Some(m) = &default {
        cat.prefetch(m).await.map_err(Error::Invalid)?;
    }
    let mut ctx = make_ctx(Kind::Inferences, Arc::clone(&cat), &a.opts);
    ctx.default_model = default;
    if !reason.is_empty() {
        ctx.no_default_reason = reason;
    }
    let ctx = Arc::new(ctx);
    let totals = Arc::new(Mutex::new(Totals::default()));
    let producer = a
        .producer
        .clone()
        .unwrap_or_else(|| default_producer(&a.file));
    let started = std::time::Instant::now();
    if a.dry_run {
        return dry_run(&a.file, &ctx, &totals, started).await;
    }
    let failure = send_file(
        &mut client,
        Run {
            file: &a.file,
            ctx: &ctx,
            totals: &totals,
            producer: &producer,
            streams: a.streams,
            what: "ingest",
        },
        Wire {
            open: open_inf_boxed,
            unwrap: |p| match p {
                Payload::Rows(b) => Some(b),
                Payload::Labels(_) => None,
            },
            set_source: |b, p, s| {
                b.producer_id = p.to_string();
                b.sequence = s;
            },
        },
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    warn_unknown(&ctx);
    let mut t = totals
        .lock()
        .map_err(|_| Error::Internal("totals lock".into()))?;
    if json {
        output::line(
            &serde_json::json!({
                "file": a.file.display().to_string(),
                "read": t.read,
                "accepted": t.accepted,
                "rejected": t.all_rejected(),
                "rejected_by_server": t.rejected,
                "rejected_in_file": t.file_rejected,
                "duplicates": t.duplicates,
                "invalid_values": t.invalid_values,
                "sampled_out": t.sampled_out,
                "seconds": secs,
                "producer": producer,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "read {} rows: {} accepted, {} rejected ({} by the server, {} in the file), {} duplicates skipped, {} invalid values, {} sampled out",
            t.read,
            t.accepted,
            t.all_rejected(),
            t.rejected,
            t.file_rejected,
            t.duplicates,
            t.invalid_values,
            t.sampled_out
        ));
    }
    t.print_errors();
    if let Some(e) = failure {
        return Err(e);
    }
    t.verdict(a.opts.max_rejected, "rows")
}

/// `ingest --dry-run`: the reader and the protobuf encoding alone.
async fn dry_run(
    file: &Path,
    ctx: &Arc<Ctx>,
    totals: &Arc<Mutex<Totals>>,
    started: std::time::Instant,
) -> Result<()> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut p = pipeline::start(file, Arc::clone(ctx), counter)?;
    let (mut batches, mut bytes) = (0u64, 0u64);
    while let Some(item) = p.rx.recv().await {
        let mut c = item?;
        for out in c.batches.drain(..) {
            if let Payload::Rows(b) = out.payload {
                // Encoded as tonic would, on a blocking thread so reading goes on meanwhile.
                let n =
                    tokio::task::spawn_blocking(move || prost::Message::encode_to_vec(&b).len())
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))?;
                batches += 1;
                bytes += n as u64;
            }
        }
        if let Ok(mut t) = totals.lock() {
            t.add_file(&mut c);
        }
    }
    let t = totals
        .lock()
        .map_err(|_| Error::Internal("totals lock".into()))?;
    output::line(
        &serde_json::json!({
            "dry_run": true,
            "read": t.read,
            "rejected_in_file": t.file_rejected,
            "batches": batches,
            "encoded_bytes": bytes,
            "seconds": started.elapsed().as_secs_f64(),
        })
        .to_string(),
    );
    Ok(())
}

/// `driftdb labels FILE`.
pub(crate) async fn labels_file(a: LabelsArgs, json: bool) -> Result<()> {
    let mut client = Client::connect_with(&a.server.config()).await?;
    crate::files::format_of(&a.file)?;
    let (default, reason) = default_model(&mut client, &a.file, a.model.clone(), "labels").await?;
    let cat = catalog(&client);
    if let Some(m) = &default {
        cat.prefetch(m).await.map_err(Error::Invalid)?;
    }
    let mut ctx = make_ctx(Kind::Labels, Arc::clone(&cat), &a.opts);
    ctx.default_model = default;
    if !reason.is_empty() {
        ctx.no_default_reason = reason;
    }
    let ctx = Arc::new(ctx);
    let totals = Arc::new(Mutex::new(Totals::default()));
    let producer = default_producer(&a.file);
    let failure = send_file(
        &mut client,
        Run {
            file: &a.file,
            ctx: &ctx,
            totals: &totals,
            producer: &producer,
            streams: 1,
            what: "labels",
        },
        Wire {
            open: open_lbl_boxed,
            unwrap: |p| match p {
                Payload::Labels(b) => Some(b),
                Payload::Rows(_) => None,
            },
            set_source: |b, p, s| {
                b.producer_id = p.to_string();
                b.sequence = s;
            },
        },
    )
    .await;
    let mut t = totals
        .lock()
        .map_err(|_| Error::Internal("totals lock".into()))?;
    if json {
        output::line(
            &serde_json::json!({
                "file": a.file.display().to_string(),
                "read": t.read,
                "joined": t.joined,
                "pending": t.pending,
                "rejected": t.all_rejected(),
                "rejected_by_server": t.rejected,
                "rejected_in_file": t.file_rejected,
                "duplicates": t.duplicates,
                "sampled_out": t.sampled_out,
                "expired": t.expired,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "read {} labels: {} joined, {} pending (waiting for their prediction), {} rejected ({} by the server, {} in the file), {} duplicates, {} sampled out, {} expired",
            t.read,
            t.joined,
            t.pending,
            t.all_rejected(),
            t.rejected,
            t.file_rejected,
            t.duplicates,
            t.sampled_out,
            t.expired
        ));
    }
    t.print_errors();
    if let Some(e) = failure {
        return Err(e);
    }
    t.verdict(a.opts.max_rejected, "labels")
}

/// `driftdb reference load --model M --version V FILE`.
pub(crate) async fn reference_load(a: ReferenceLoadArgs, json: bool) -> Result<()> {
    let client = Client::connect_with(&a.server.config()).await?;
    crate::files::format_of(&a.file)?;
    let cat = catalog(&client);
    cat.prefetch(&a.model).await.map_err(Error::Invalid)?;
    let mut ctx = make_ctx(Kind::Reference, Arc::clone(&cat), &a.opts);
    ctx.default_model = Some(a.model.clone());
    ctx.only_model = Some(a.model.clone());
    let ctx = Arc::new(ctx);
    let total = progress_total(&a.file)?;
    let counter = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(total, "reference");
    let ticker = track(&bar, &counter);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ReferenceChunk>(IN_FLIGHT);
    tx.send(pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
            model_id: a.model.clone(),
            model_version: a.version.clone(),
            replace: a.replace,
        })),
    })
    .await
    .map_err(|_| Error::Internal("upload channel closed".into()))?;
    let mut models = client.models.clone();
    let call = tokio::spawn(async move {
        models
            .upload_reference(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut totals = Totals::default();
    // The file line of every row sent, in order: the server numbers rows across the upload.
    let mut sent_lines: Vec<u64> = Vec::new();
    let mut failure = None;
    match pipeline::start(&a.file, Arc::clone(&ctx), Arc::clone(&counter)) {
        Err(e) => failure = Some(e),
        Ok(mut p) => {
            'read: while let Some(item) = p.rx.recv().await {
                let mut conv = match item {
                    Ok(c) => c,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                };
                totals.add_file(&mut conv);
                for out in conv.batches {
                    let Payload::Rows(b) = out.payload else {
                        continue;
                    };
                    sent_lines.extend_from_slice(&out.lines);
                    let chunk = pb::ReferenceChunk {
                        chunk: Some(pb::reference_chunk::Chunk::Rows(b)),
                    };
                    if tx.send(chunk).await.is_err() {
                        break 'read;
                    }
                }
            }
        }
    }
    drop(tx);
    let resp = call.await.map_err(|e| Error::Internal(e.to_string()))?;
    ticker.abort();
    bar.finish_and_clear();
    warn_unknown(&ctx);
    let summary = match resp {
        Ok(r) => Some(r.into_inner()),
        Err(s) => {
            failure.get_or_insert(status_err(s));
            None
        }
    };
    let s = summary.unwrap_or_default();
    totals.rejected = s.rejected;
    for e in &s.errors {
        let line = sent_lines.get(e.row as usize).copied().unwrap_or(0);
        totals.note(line, format!("{}: {}", clip(&e.request_id), e.reason));
    }
    if json {
        output::line(
            &serde_json::json!({
                "model": a.model,
                "version": a.version,
                "read": totals.read,
                "profiled": s.rows,
                "rejected": totals.all_rejected(),
                "rejected_by_server": s.rejected,
                "rejected_in_file": totals.file_rejected,
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "reference {}@{}: {} rows profiled, {} rejected by the server, {} rejected in the file",
            a.model, a.version, s.rows, s.rejected, totals.file_rejected
        ));
    }
    totals.print_errors();
    if let Some(e) = failure {
        return Err(e);
    }
    totals.verdict(a.opts.max_rejected, "rows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_rejected_forms() {
        assert_eq!(parse_max_rejected("5"), Ok(MaxRejected::Count(5)));
        assert_eq!(parse_max_rejected("0.01"), Ok(MaxRejected::Fraction(0.01)));
        assert_eq!(parse_max_rejected("2%"), Ok(MaxRejected::Fraction(0.02)));
        assert!(parse_max_rejected("1.5").is_err());
        assert!(parse_max_rejected("-1").is_err());
        assert!(parse_max_rejected("lots").is_err());
        assert!(MaxRejected::Count(0).allows(0, 10));
        assert!(!MaxRejected::Count(0).allows(1, 10));
        assert!(MaxRejected::Fraction(0.1).allows(1, 10));
        assert!(!MaxRejected::Fraction(0.1).allows(2, 10));
    }

    #[test]
    fn default_producers_differ_per_run() {
        let p = Path::new("/tmp/x/big.jsonl");
        let (a, b) = (default_producer(p), default_producer(p));
        assert!(a.starts_with("file:big.jsonl:"), "{a}");
        assert_ne!(a, b);
    }
}
