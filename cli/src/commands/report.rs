//! `driftdb report`: one self-contained HTML page (or its content as JSON) of a model's drift,
//! performance and `explain` over a range.
//!
//! Offline (`--reference` and `--current` files, `--model` a definition JSON): both files are
//! read by the same readers as `driftdb ingest`, the reference profile is built and the current
//! rows folded by the engine in this process ([`driftdb_report::memory`]), and the report is
//! computed by DriftQL's operators over those windows — no server, no data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use clap::{Args, ValueEnum};
use driftdb_engine::ingest::{InferenceBatch, RowPlan};
use driftdb_engine::model::ModelDef;
use driftdb_engine::reference::{ReferenceBuilder, ReferenceProfile};
use driftdb_engine::time::{DurationMs, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_query::{Context, MemoryCatalog};
use driftdb_report::build::{Request, build};
use driftdb_report::memory::MemoryFold;
use driftdb_server::convert::batch_from_pb;

use super::ServerArg;
use super::ingest::{FileOpts, MaxRejected};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::files::batch::{Ctx, FixedCatalog, Kind, Payload};
use crate::files::pipeline;
use crate::output;

/// What `-o` receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// One self-contained HTML page (inline CSS and SVG; no scripts, no external URLs).
    Html,
    /// The same content as data (schema `driftdb.report.v1`), for CI gates and notebooks.
    Json,
}

const REPORT_HELP: &str = "\
Examples:
  # from a running server (--server, DRIFTDB_API_KEY as for every command):
  driftdb report --model fraud --from 2026-03-01T00:00:00Z --to 2026-03-08T00:00:00Z \\
      --step 1d --by region -o drift.html
  driftdb report --model fraud --from now-24h -o drift.html
  # straight from files, no server (the notebook / CI workflow):
  driftdb report --model model.json --reference ref.parquet --current cur.parquet -o drift.html
  driftdb report --model model.json --reference ref.csv --current today.jsonl \\
      --format json --fail-on-drift -o drift.json

Offline, --model is the model definition JSON (docs/DATA_MODEL.md, \"Models\"); the reference
profile is built for --version (default v1) from --reference, and rows of --current without a
model_version are taken as that version. Inline `label` columns of --current join their rows, so
performance and calibration appear. The range is the current file's windows unless --from/--to
narrow it.

Exit status: 0 when the report was written; 1 on an error, when more rows were rejected than
--max-rejected allows (the report is not written), or with --fail-on-drift when the verdict is
drift (the report is written first).";

#[derive(Debug, Args)]
#[command(after_help = REPORT_HELP)]
pub(crate) struct ReportArgs {
    /// The model: its id on the server, or with --reference/--current its definition JSON
    /// file.
    #[arg(long)]
    model: String,
    /// Model version (offline: the version the reference profile is built for).
    #[arg(long)]
    version: Option<String>,
    /// Reference rows (.jsonl, .csv, .parquet), labels inline as `label`: report offline.
    #[arg(long, requires = "current")]
    reference: Option<PathBuf>,
    /// Current rows (.jsonl, .csv, .parquet) compared with --reference.
    #[arg(long, requires = "reference")]
    current: Option<PathBuf>,
    /// Range start: RFC 3339 or now-D (server default: 24 h before --to; offline: the first
    /// window of --current).
    #[arg(long)]
    from: Option<String>,
    /// Range end, exclusive: RFC 3339 or now-D (server default: the end of the current
    /// window; offline: the end of the last window of --current).
    #[arg(long)]
    to: Option<String>,
    /// Column width of the heatmap and performance charts (e.g. 1h, 1d); a multiple of the
    /// model's window. Default: the window, widened so at most 200 columns are drawn.
    #[arg(long)]
    step: Option<String>,
    /// Segment key for a per-segment drift table.
    #[arg(long)]
    by: Option<String>,
    /// Output file (`-` for stdout).
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// html (default) or json.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    format: ReportFormat,
    /// Exit with status 1 when the verdict is drift (after writing the report).
    #[arg(long)]
    fail_on_drift: bool,
    #[command(flatten)]
    opts: FileOpts,
    #[command(flatten)]
    server: ServerArg,
}

/// `driftdb report`.
pub(crate) async fn report(a: ReportArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let report = match (a.reference.clone(), a.current.clone()) {
        (Some(reference), Some(current)) => {
            let a = Arc::new(a);
            let args = Arc::clone(&a);
            let r = tokio::task::spawn_blocking(move || offline(&args, &reference, &current))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            return finish(&a, r, started);
        }
        _ => from_server(&a).await?,
    };
    finish(&a, report, started)
}

/// The report of a model on a running server (built there, drawn here).
async fn from_server(a: &ReportArgs) -> Result<driftdb_report::Report> {
    if a.model.ends_with(".json") && Path::new(&a.model).is_file() {
        return Err(Error::Invalid(format!(
            "--model {} is a definition file: pass --reference and --current to report from \
             files, or a model id to report from a server",
            a.model
        )));
    }
    let mut c = Client::connect_with(&a.server.config()).await?;
    let r = c
        .query
        .report(pb::ReportRequest {
            model_id: a.model.clone(),
            model_version: a.version.clone().unwrap_or_default(),
            from: a.from.clone().unwrap_or_default(),
            to: a.to.clone().unwrap_or_default(),
            step: a.step.clone().unwrap_or_default(),
            by: a.by.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    let mut report: driftdb_report::Report = serde_json::from_str(&r.json)
        .map_err(|e| Error::Transport(format!("the server's report is not readable: {e}")))?;
    report.source = format!("server {}", a.server.server);
    Ok(report)
}

fn finish(
    a: &ReportArgs,
    report: driftdb_report::Report,
    started: std::time::Instant,
) -> Result<()> {
    let body = match a.format {
        ReportFormat::Html => driftdb_report::render::html(&report),
        ReportFormat::Json => {
            serde_json::to_string_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?
        }
    };
    write_out(&a.output, &body)?;
    let v = &report.verdict;
    eprintln!(
        "report: {} of {} features drifted; {} bytes written to {} in {:.2} s",
        v.drifted,
        v.features,
        body.len(),
        a.output.display(),
        started.elapsed().as_secs_f64()
    );
    if a.fail_on_drift && v.drift {
        return Err(Error::Invalid(format!(
            "verdict: drift ({} of {} features drifted; --fail-on-drift)",
            v.drifted, v.features
        )));
    }
    Ok(())
}

fn write_out(path: &Path, body: &str) -> Result<()> {
    if path.as_os_str() == "-" {
        output::line(body);
        return Ok(());
    }
    std::fs::write(path, body).map_err(|e| Error::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    })
}

fn read_def(path: &Path) -> Result<ModelDef> {
    let err = |detail: String| Error::File {
        path: path.display().to_string(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let def: ModelDef = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
    def.validate()?;
    Ok(def)
}

/// Rows read and rejected from one file.
#[derive(Debug, Default)]
struct FileCounts {
    read: u64,
    rejected: u64,
    errors: Vec<(u64, String)>,
}

impl FileCounts {
    fn note(&mut self, line: u64, reason: String) {
        self.rejected += 1;
        if self.errors.len() < 20 {
            self.errors.push((line, reason));
        }
    }

    /// Prints the first rejected rows and fails past `max`.
    fn verdict(&mut self, file: &Path, max: Option<MaxRejected>) -> Result<()> {
        self.errors.sort();
        for (line, e) in &self.errors {
            eprintln!("  {}: line {line}: {e}", file.display());
        }
        let max = max.unwrap_or(MaxRejected::Count(0));
        if max.allows(self.rejected, self.read) {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "{}: {} of {} rows rejected (allowed: {}; see --max-rejected)",
            file.display(),
            self.rejected,
            self.read,
            max.describe()
        )))
    }
}

/// Takes one engine batch, its inline labels and the file line of each row; returns the rows
/// it rejected (file line, reason).
type BatchSink<'a> =
    dyn FnMut(InferenceBatch, Vec<Option<f64>>, Vec<u64>) -> Result<Vec<(u64, String)>> + 'a;

/// One batch of the current file, its row pass made, on its way to the fold.
type Planned = (InferenceBatch, Vec<Option<f64>>, RowPlan, Vec<u64>);

/// One batch of the current file folded, on its way into the windows.
type Folded = (
    driftdb_report::memory::Folded,
    InferenceBatch,
    Vec<Option<f64>>,
    Vec<u64>,
);

/// A file being read by the ingest readers (their threads start converting at once).
struct Reading {
    ctx: Arc<Ctx>,
    pipeline: pipeline::Pipeline,
}

/// Starts reading `file` as rows of `def`.
fn start_reading(file: &Path, def: &ModelDef, opts: &FileOpts) -> Result<Reading> {
    crate::files::format_of(file)?;
    let mut ctx = Ctx::new(Kind::Reference, Arc::new(FixedCatalog::of([def.clone()])));
    ctx.ts_unit = opts.ts_unit;
    ctx.batch_rows = opts.batch_size.max(1);
    ctx.default_model = Some(def.id.clone());
    ctx.only_model = Some(def.id.clone());
    let ctx = Arc::new(ctx);
    let pipeline = pipeline::start(file, Arc::clone(&ctx), Arc::new(AtomicU64::new(0)))?;
    Ok(Reading { ctx, pipeline })
}

/// Hands every engine batch of `file` (with its inline labels and the file line of each row)
/// to `each`.
fn read_file(
    file: &Path,
    reading: Reading,
    def: &ModelDef,
    version: &str,
    counts: &mut FileCounts,
    each: &mut BatchSink<'_>,
) -> Result<()> {
    let Reading { ctx, mut pipeline } = reading;
    while let Some(item) = pipeline.rx.blocking_recv() {
        let c = item?;
        counts.read += c.rows;
        counts.rejected += c.rejected;
        for (line, e) in c.errors {
            if counts.errors.len() < 20 {
                counts.errors.push((line, e));
            }
        }
        for out in c.batches {
            let Payload::Rows(mut b) = out.payload else {
                continue;
            };
            if b.model_versions.is_empty() {
                b.model_versions.push(version.to_string());
            }
            for v in &mut b.model_versions {
                if v.is_empty() {
                    *v = version.to_string();
                }
            }
            let (batch, labels) = batch_from_pb(b, &def.features)?;
            for (line, reason) in each(batch, labels, out.lines)? {
                counts.note(line, reason);
            }
        }
    }
    let unknown = ctx
        .unknown_columns
        .lock()
        .map(|u| u.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    if !unknown.is_empty() {
        eprintln!(
            "warning: {}: columns ignored (no field, segment or feature of {}): {}",
            file.display(),
            def.id,
            unknown.join(", ")
        );
    }
    Ok(())
}

/// The file line of row `row` of a batch whose rows came from `lines`.
fn line_of(lines: &[u64], row: usize) -> u64 {
    lines.get(row).copied().unwrap_or(0)
}

/// Folds every row of `file` into `fold`, in three stages on threads of their own so that they
/// overlap: the reading and the row pass of a batch, the column folds of the one before (which
/// take the cores while the others wait), and the merge of the one before that into the windows.
fn fold_file(
    file: &Path,
    reading: Reading,
    def: &ModelDef,
    version: &str,
    counts: &mut FileCounts,
    fold: &mut MemoryFold,
) -> Result<()> {
    let mut planner = fold.planner();
    let folder = fold.folder();
    let (planned_tx, planned_rx) = std::sync::mpsc::sync_channel::<Planned>(1);
    let (folded_tx, folded_rx) = std::sync::mpsc::sync_channel::<Folded>(1);
    let (read, merged) = std::thread::scope(|s| {
        let stage = s.spawn(move || {
            let mut read = FileCounts::default();
            let r = read_file(
                file,
                reading,
                def,
                version,
                &mut read,
                &mut |batch, labels, lines| {
                    let plan = planner.plan(&batch, &labels);
                    // The next stage hangs up only when it failed: its error is the one reported,
                    // and reading stops.
                    planned_tx
                        .send((batch, labels, plan, lines))
                        .map_err(|_| Error::Internal("the fold stopped".into()))?;
                    Ok(Vec::new())
                },
            );
            (r, read)
        });
        let merge = s.spawn(move || -> Result<Vec<(u64, String)>> {
            let mut rejected = Vec::new();
            for (folded, batch, labels, lines) in folded_rx.iter() {
                let r = fold.absorb(folded, &labels)?;
                rejected.extend(r.into_iter().map(|(row, why)| (line_of(&lines, row), why)));
                // The batch's strings are freed here, off the folding thread.
                drop(batch);
            }
            Ok(rejected)
        });
        for (batch, labels, plan, lines) in planned_rx.iter() {
            let folded = folder.fold(&batch, plan);
            if folded_tx.send((folded, batch, labels, lines)).is_err() {
                break;
            }
        }
        drop(folded_tx);
        drop(planned_rx);
        let merged = merge
            .join()
            .map_err(|_| Error::Internal("the merge of folded batches panicked".into()));
        let read = stage
            .join()
            .map_err(|_| Error::Internal("the file reader panicked".into()));
        (read, merged)
    });
    let (read, c) = read?;
    counts.read += c.read;
    counts.rejected += c.rejected;
    counts.errors.extend(c.errors);
    for (line, reason) in merged?? {
        counts.note(line, reason);
    }
    read
}

/// The offline report: reference profile and current windows built in this process.
fn offline(a: &ReportArgs, reference: &Path, current: &Path) -> Result<driftdb_report::Report> {
    let def = read_def(Path::new(&a.model))?;
    let version = a.version.clone().unwrap_or_else(|| "v1".to_string());
    let now = now_ms();
    let started = std::time::Instant::now();

    // The current file is read after the reference: reading both at once was slower (the
    // current rows' fold needs the profile, and the readers' threads take the cores from it).
    let ref_reading = start_reading(reference, &def, &a.opts)?;
    let mut builder = ReferenceBuilder::new(&def, &version)?;
    let mut ref_counts = FileCounts::default();
    read_file(
        reference,
        ref_reading,
        &def,
        &version,
        &mut ref_counts,
        &mut |batch, labels, lines| {
            Ok(builder
                .add(&batch, &labels)?
                .into_iter()
                .map(|r| (line_of(&lines, r.row), r.reason))
                .collect())
        },
    )?;
    ref_counts.verdict(reference, a.opts.max_rejected)?;
    let profile: ReferenceProfile = builder.finish(Timestamp(now))?;
    let reference_secs = started.elapsed().as_secs_f64();

    let mut fold = MemoryFold::new(def.clone(), Some(profile.clone()))?;
    let mut cur_counts = FileCounts::default();
    fold_file(
        current,
        start_reading(current, &def, &a.opts)?,
        &def,
        &version,
        &mut cur_counts,
        &mut fold,
    )?;
    cur_counts.verdict(current, a.opts.max_rejected)?;
    eprintln!(
        "read: reference {} rows in {:.2} s, current {} rows in {:.2} s",
        ref_counts.read,
        reference_secs,
        cur_counts.read,
        started.elapsed().as_secs_f64() - reference_secs
    );
    let Some((first, end)) = fold.span() else {
        return Err(Error::Invalid(format!(
            "{}: no rows were folded, nothing to report",
            current.display()
        )));
    };
    let from = match &a.from {
        Some(t) => Timestamp::parse_rfc3339(t)?,
        None => first,
    };
    let to = match &a.to {
        Some(t) => Timestamp::parse_rfc3339(t)?,
        None => end,
    };
    let step_ms = a
        .step
        .as_deref()
        .map(|s| DurationMs::parse(s).map(|d| d.millis()))
        .transpose()?;
    let mut catalog = MemoryCatalog::new();
    catalog.add_model(def.clone());
    catalog.add_reference(profile);
    let reader = fold.into_reader();
    let ctx = Context {
        reader: &reader,
        catalog: &catalog,
        now: to,
    };
    let req = Request {
        model: def.id.clone(),
        version: Some(version),
        from,
        to,
        step_ms,
        by: a.by.clone(),
        source: format!(
            "files: reference {} ({} rows), current {} ({} rows)",
            file_name(reference),
            ref_counts.read,
            file_name(current),
            cur_counts.read
        ),
        generated_at_ms: now,
    };
    Ok(build(&ctx, &req)?)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn now_ms() -> i64 {
    use driftdb_engine::time::Clock;
    driftdb_engine::time::SystemClock.now().0
}
