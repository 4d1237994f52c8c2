//! `driftdb ingest`, `labels` and `reference load` on files as users make them: Parquet written
//! the way pandas and pyarrow write it (every TIMESTAMP unit with and without a time zone,
//! DATE, epoch integers, RFC 3339 strings, dictionary-encoded strings, nullable integers,
//! booleans, several row groups), CSV with a BOM, CRLF and quoted fields, JSONL nested and flat;
//! exit codes, `--max-rejected`, labels without `model_id`, client flags before the subcommand,
//! producer ids per run, batches split under the gRPC message limit, and error messages that
//! do not echo unbounded input. The built binary runs against a server on 127.0.0.1:0 in this
//! process (clock fixed a day after the data).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int64Array,
    LargeStringArray, RecordBatch, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
};
use driftdb_cli::client::Client;
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_storage::StoreConfig;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde_json::Value;

/// 2026-03-01T00:00:00Z in ms.
const T0: i64 = 1_772_323_200_000;
const HOUR: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z";

fn def(id: &str, features: &[(&str, FeatureKind)], segments: &[&str]) -> ModelDef {
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: segments.iter().map(|s| s.to_string()).collect(),
        segment_cap: 64,
        features: features.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        sampling: 1.0,
        team: None,
    }
}

struct Server {
    url: String,
    _running: driftdb_server::serve::Running,
    dir: tempfile::TempDir,
}

impl Server {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn start(models: Vec<ModelDef>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp(T0 + 86_400_000));
    let node = Node::open(
        &dir.path().join("data"),
        StoreConfig::default(),
        Arc::new(clock),
        AuthMode::Disabled,
    )
    .unwrap();
    let running = driftdb_server::serve::start(
        node,
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let url = format!("http://{}", running.bound.grpc);
    let mut c = Client::connect(&url).await.unwrap();
    for m in models {
        c.models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&m, vec![])),
            })
            .await
            .unwrap();
    }
    Server {
        url,
        _running: running,
        dir,
    }
}

/// Runs the binary (off the runtime's threads) with `--server` after the subcommand.
async fn driftdb(url: &str, args: &[&str]) -> Output {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--server".to_string(), url.to_string()]);
    raw(all).await
}

async fn raw(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_driftdb"))
            .args(&args)
            .env_remove("DRIFTDB_SERVER")
            .env_remove("DRIFTDB_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        out(o),
        err(o)
    )
}

/// The one value of a DriftQL query over the data's hour.
async fn value(url: &str, q: &str) -> f64 {
    let o = driftdb(url, &["query", "--json", &format!("{q} {HOUR}")]).await;
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    rows[0]["value"].as_f64().unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch, row_group: usize) {
    let f = std::fs::File::create(path).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group))
        .build();
    let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

/// A pandas/pyarrow-shaped frame of `n` rows with the given `ts` column: `request_id` (large
/// string, as pandas' string dtype writes it), `model_version`, `region` and `device`
/// (dictionary-encoded), `x` (nullable int64), `c` (dictionary strings), `b` (booleans),
/// `score` (float64).
fn frame(prefix: &str, n: usize, ts: ArrayRef) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let region: DictionaryArray<Int32Type> = (0..n).map(|i| ["eu", "us", "apac"][i % 3]).collect();
    let device: DictionaryArray<Int32Type> = (0..n)
        .map(|i| {
            if i % 5 == 0 {
                None
            } else {
                Some(["web", "app"][i % 2])
            }
        })
        .collect();
    let c: DictionaryArray<Int32Type> = (0..n).map(|i| ["red", "green"][i % 2]).collect();
    RecordBatch::try_from_iter(vec![
        (
            "request_id",
            Arc::new(LargeStringArray::from_iter_values(ids.iter())) as ArrayRef,
        ),
        ("ts", ts),
        (
            "model_version",
            Arc::new(StringArray::from_iter_values((0..n).map(|_| "v1"))) as ArrayRef,
        ),
        ("region", Arc::new(region) as ArrayRef),
        ("device", Arc::new(device) as ArrayRef),
        (
            "x",
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| (i % 10 != 0).then_some(i as i64)),
            )) as ArrayRef,
        ),
        ("c", Arc::new(c) as ArrayRef),
        (
            "b",
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 3 == 0)))) as ArrayRef,
        ),
        (
            "score",
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| (i % 100) as f64 / 100.0),
            )) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn pq_model() -> ModelDef {
    def(
        "pq",
        &[
            ("x", FeatureKind::Numeric),
            ("c", FeatureKind::Categorical),
            ("b", FeatureKind::Categorical),
        ],
        &["region", "device"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_as_pandas_and_pyarrow_write_it() {
    let s = start(vec![pq_model()]).await;
    const N: usize = 1000;
    // Event times spread over the hour, in every representation.
    let ms: Vec<i64> = (0..N as i64).map(|i| T0 + i * 3_600).collect();
    let tz = |a: ArrayRef| a;
    let variants: Vec<(&str, ArrayRef)> = vec![
        (
            "ns_utc",
            tz(Arc::new(
                TimestampNanosecondArray::from(
                    ms.iter().map(|m| m * 1_000_000).collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )),
        ),
        (
            "ns_naive",
            Arc::new(TimestampNanosecondArray::from(
                ms.iter().map(|m| m * 1_000_000).collect::<Vec<_>>(),
            )),
        ),
        (
            "us_utc",
            Arc::new(
                TimestampMicrosecondArray::from(ms.iter().map(|m| m * 1000).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
        ),
        (
            "us_naive",
            Arc::new(TimestampMicrosecondArray::from(
                ms.iter().map(|m| m * 1000).collect::<Vec<_>>(),
            )),
        ),
        (
            "ms_utc",
            Arc::new(TimestampMillisecondArray::from(ms.clone()).with_timezone("UTC")),
        ),
        (
            "ms_berlin",
            Arc::new(TimestampMillisecondArray::from(ms.clone()).with_timezone("Europe/Berlin")),
        ),
        (
            "ms_naive",
            Arc::new(TimestampMillisecondArray::from(ms.clone())),
        ),
        (
            "s_utc",
            Arc::new(
                TimestampSecondArray::from(ms.iter().map(|m| m / 1000).collect::<Vec<_>>())
                    .with_timezone("UTC"),
            ),
        ),
        (
            "s_naive",
            Arc::new(TimestampSecondArray::from(
                ms.iter().map(|m| m / 1000).collect::<Vec<_>>(),
            )),
        ),
        (
            "date",
            Arc::new(Date32Array::from(vec![(T0 / 86_400_000) as i32; N])),
        ),
        ("int_ms", Arc::new(Int64Array::from(ms.clone()))),
        (
            "int_s",
            Arc::new(Int64Array::from(
                ms.iter().map(|m| m / 1000).collect::<Vec<_>>(),
            )),
        ),
        (
            "rfc3339",
            Arc::new(StringArray::from_iter_values(
                ms.iter().map(|m| Timestamp(*m).to_rfc3339()),
            )),
        ),
    ];
    let n_variants = variants.len();
    for (name, ts) in variants {
        let path = s.path(&format!("{name}.parquet"));
        // Several row groups, read in parallel and sent in file order.
        write_parquet(&path, &frame(name, N, ts), 300);
        let o = driftdb(&s.url, &["ingest", path.to_str().unwrap(), "--model", "pq"]).await;
        assert!(o.status.success(), "{name}: {}", show(&o));
        assert!(
            out(&o).contains(&format!("read {N} rows: {N} accepted, 0 rejected")),
            "{name}: {}",
            show(&o)
        );
    }
    let total = (N * n_variants) as f64;
    // Every row counted once; nullable ints missing where null, dictionary strings and
    // booleans as categories, segments from dictionary columns.
    assert_eq!(value(&s.url, "rows(pq.x)").await, total);
    assert_eq!(value(&s.url, "count(pq.x)").await, total * 0.9);
    assert_eq!(value(&s.url, "distinct(pq.c)").await, 2.0);
    assert_eq!(value(&s.url, "distinct(pq.b)").await, 2.0);
    let o = driftdb(
        &s.url,
        &["query", "--json", &format!("rows(pq.x) {HOUR} by region")],
    )
    .await;
    let rows: Value = serde_json::from_slice(&o.stdout).unwrap();
    let by: Vec<f64> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_f64().unwrap())
        .collect();
    assert_eq!(by.iter().sum::<f64>(), total, "{rows}");
}

/// A JSONL file for the model `ex` (feature `f`, binary score): `bad_file` rows hold a string
/// in `f` (rejected by the reader), `bad_server` rows a score of 1.5 (rejected by the server).
fn ex_file(path: &Path, prefix: &str, n: usize, bad_file: &[usize], bad_server: &[usize]) {
    let mut s = String::new();
    for i in 0..n {
        let f = if bad_file.contains(&i) {
            "\"abc\"".to_string()
        } else {
            format!("{}", i as f64 / 2.0)
        };
        let score = if bad_server.contains(&i) { 1.5 } else { 0.25 };
        s.push_str(&format!(
            "{{\"request_id\":\"{prefix}{i}\",\"ts\":\"{}\",\"model_id\":\"ex\",\"model_version\":\"v1\",\"features\":{{\"f\":{f}}},\"score\":{score}}}\n",
            Timestamp(T0 + i as i64 * 1000).to_rfc3339()
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_status_follows_rejected_rows() {
    let s = start(vec![def("ex", &[("f", FeatureKind::Numeric)], &[])]).await;
    let p = s.path("ex.jsonl");
    let ps = p.to_str().unwrap();

    ex_file(&p, "ok-", 50, &[], &[]);
    let o = driftdb(&s.url, &["ingest", ps]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(out(&o).contains("50 accepted, 0 rejected"), "{}", show(&o));

    // Some rejected, in the file and by the server: 1, summary on stdout, lines on stderr.
    ex_file(&p, "some-", 50, &[3, 7], &[10]);
    let o = driftdb(&s.url, &["ingest", ps]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out(&o).contains("read 50 rows: 47 accepted, 3 rejected (1 by the server, 2 in the file)"),
        "{}",
        show(&o)
    );
    let e = err(&o);
    assert!(
        e.contains("line 4: feature \"f\": \"abc\" is not a number"),
        "{e}"
    );
    assert!(e.contains("line 8:"), "{e}");
    assert!(e.contains("line 11:"), "{e}");
    assert!(e.contains("3 of 50 rows rejected"), "{e}");

    // All rejected: 1.
    ex_file(&p, "all-", 20, &(0..20).collect::<Vec<_>>(), &[]);
    let o = driftdb(&s.url, &["ingest", ps]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(out(&o).contains("0 accepted, 20 rejected"), "{}", show(&o));

    // Tolerated by --max-rejected (a count, then a percentage), not beyond.
    ex_file(&p, "tol-", 100, &[1, 2], &[5]);
    let o = driftdb(&s.url, &["ingest", ps, "--max-rejected", "3"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    ex_file(&p, "tol2-", 100, &[1, 2], &[5]);
    let o = driftdb(&s.url, &["ingest", ps, "--max-rejected", "2%"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    ex_file(&p, "tol3-", 100, &[1, 2], &[5]);
    let o = driftdb(&s.url, &["ingest", ps, "--max-rejected", "0.05"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Re-running a file: duplicates are not errors.
    let o = driftdb(&s.url, &["ingest", ps, "--max-rejected", "3"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(out(&o).contains("97 duplicates skipped"), "{}", show(&o));

    // reference load: the same verdict.
    let o = driftdb(
        &s.url,
        &["reference", "load", "--model", "ex", "--version", "v1", ps],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(out(&o).contains("2 rejected in the file"), "{}", show(&o));
    let o = driftdb(
        &s.url,
        &[
            "reference",
            "load",
            "--model",
            "ex",
            "--version",
            "v1",
            "--replace",
            "--max-rejected",
            "3",
            ps,
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_per_run() {
    let s = start(vec![def("ex", &[("f", FeatureKind::Numeric)], &[])]).await;
    let p = s.path("reused.jsonl");
    let ps = p.to_str().unwrap();
    // Two different files written to the same path land in full.
    ex_file(&p, "first", 1500, &[], &[]);
    let o = driftdb(&s.url, &["ingest", ps, "--batch-size", "500"]).await;
    assert!(
        out(&o).contains("1500 accepted, 0 rejected"),
        "{}",
        show(&o)
    );
    ex_file(&p, "second", 2500, &[], &[]);
    let o = driftdb(&s.url, &["ingest", ps, "--batch-size", "500"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        out(&o)
            .contains("2500 accepted, 0 rejected (0 by the server, 0 in the file), 0 duplicates"),
        "{}",
        show(&o)
    );
    // The same file again: duplicates by request id, exit 0.
    let o = driftdb(&s.url, &["ingest", ps, "--batch-size", "500"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        out(&o)
            .contains("0 accepted, 0 rejected (0 by the server, 0 in the file), 2500 duplicates"),
        "{}",
        show(&o)
    );
    assert_eq!(value(&s.url, "rows(ex.f)").await, 4000.0);
}

fn label_file(path: &Path, prefix: &str, n: usize, extra: &str) {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "{{\"request_id\":\"{prefix}{i}\",\"ts\":\"{}\",\"label\":{}}}\n",
            Timestamp(T0 + 3_600_000).to_rfc3339(),
            i % 2
        ));
    }
    s.push_str(extra);
    std::fs::write(path, s).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_without_model_id() {
    let s = start(vec![def("ex", &[("f", FeatureKind::Numeric)], &[])]).await;
    let p = s.path("preds.jsonl");
    ex_file(&p, "r", 100, &[], &[]);
    let o = driftdb(&s.url, &["ingest", p.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", show(&o));
    let l = s.path("labels.jsonl");
    let ls = l.to_str().unwrap();

    // One model: the labels go to it.
    label_file(&l, "r", 40, "");
    let o = driftdb(&s.url, &["labels", ls]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        out(&o).contains("read 40 labels: 40 joined, 0 pending"),
        "{}",
        show(&o)
    );

    // Several models: fails before sending anything, naming them.
    let mut c = Client::connect(&s.url).await.unwrap();
    c.models
        .create_model(pb::CreateModelRequest {
            model: Some(model_to_pb(
                &def("other", &[("g", FeatureKind::Numeric)], &[]),
                vec![],
            )),
        })
        .await
        .unwrap();
    label_file(&l, "r", 80, "");
    let o = driftdb(&s.url, &["labels", ls]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let e = err(&o);
    assert!(
        e.contains("several models (ex, other); pass --model"),
        "{e}"
    );
    assert!(out(&o).is_empty(), "{}", show(&o));
    // --model: the 40 new labels join; the 40 earlier ones are duplicates (nothing was sent by
    // the refused run).
    let o = driftdb(&s.url, &["labels", ls, "--model", "ex"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        out(&o).contains("read 80 labels: 40 joined, 0 pending (waiting for their prediction), 0 rejected (0 by the server, 0 in the file), 40 duplicates"),
        "{}",
        show(&o)
    );

    // A last line naming an unknown model: the summary of what was sent, then status 1.
    label_file(
        &l,
        "r",
        90,
        "{\"request_id\":\"zz\",\"model_id\":\"nope\",\"label\":1}\n",
    );
    let o = driftdb(
        &s.url,
        &["labels", ls, "--model", "ex", "--batch-size", "10"],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out(&o).contains("read 91 labels: 10 joined"),
        "{}",
        show(&o)
    );
    assert!(
        err(&o).contains("line 91: unknown model \"nope\""),
        "{}",
        show(&o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_flags_before_the_subcommand() {
    let s = start(vec![def("ex", &[("f", FeatureKind::Numeric)], &[])]).await;
    let o = raw(vec![
        "--server".into(),
        s.url.clone(),
        "--api-key".into(),
        "ddb_unused".into(),
        "model".into(),
        "list".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    assert!(out(&o).contains("ex"), "{}", show(&o));
    let m = s.path("m.json");
    std::fs::write(
        &m,
        r#"{"id":"made","task":"binary","window":"15m","features":{"a":"numeric"}}"#,
    )
    .unwrap();
    let o = raw(vec![
        "--server".into(),
        s.url.clone(),
        "model".into(),
        "create".into(),
        "--file".into(),
        m.to_str().unwrap().into(),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    let p = s.path("ex.jsonl");
    ex_file(&p, "j", 5, &[], &[]);
    let o = raw(vec![
        "--json".into(),
        "--server".into(),
        s.url.clone(),
        "ingest".into(),
        p.to_str().unwrap().into(),
        "--model".into(),
        "ex".into(),
    ])
    .await;
    assert!(o.status.success(), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["accepted"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_jsonl_shapes() {
    let s = start(vec![def(
        "cv",
        &[
            ("amount", FeatureKind::Numeric),
            ("country", FeatureKind::Categorical),
        ],
        &["region"],
    )])
    .await;
    // CSV: a BOM, CRLF, quoted fields (a comma and a quote inside), times with offsets, epoch
    // seconds and milliseconds, an empty cell (missing), an unknown column (a warning).
    let csv = format!(
        "\u{feff}request_id,ts,model_version,region,amount,country,score,notes\r\n\
         c1,2026-03-01T01:00:00+01:00,v1,eu,1.5,\"DE, Berlin\",0.1,x\r\n\
         c2,2026-03-01 00:10:00.5Z,v1,\"us\",,FR,0.2,\"say \"\"hi\"\"\"\r\n\
         c3,{},v1,eu,3,DE,0.3,\r\n\
         c4,{},v1,eu,4,DE,0.4,\r\n\
         c5,not-a-time,v1,eu,5,DE,0.5,\r\n",
        T0 / 1000 + 60,
        T0 + 120_000
    );
    let p = s.path("rows.csv");
    std::fs::write(&p, csv).unwrap();
    let o = driftdb(&s.url, &["ingest", p.to_str().unwrap(), "--model", "cv"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out(&o).contains("read 5 rows: 4 accepted, 1 rejected"),
        "{}",
        show(&o)
    );
    let e = err(&o);
    assert!(e.contains("line 6: ts \"not-a-time\""), "{e}");
    assert!(
        e.contains("warning: ignored 1 column(s)") && e.contains("\"notes\""),
        "{e}"
    );
    assert_eq!(value(&s.url, "count(cv.amount)").await, 3.0);
    assert_eq!(value(&s.url, "distinct(cv.country)").await, 3.0);

    // JSONL: flat columns, epoch numbers, a nested unknown feature (rejected with its name),
    // an unbounded value (clipped in the message).
    let long = "9".repeat(5000);
    let lines = [
        format!(
            r#"{{"request_id":"j1","ts":{},"model_version":"v1","region":"eu","amount":2,"country":"DE"}}"#,
            T0 / 1000 + 5
        ),
        format!(
            r#"{{"request_id":"j2","ts":{},"model_version":"v1","segments":{{"region":"us"}},"features":{{"amount":2,"colour":"red"}}}}"#,
            T0
        ),
        format!(
            r#"{{"request_id":"j3","ts":"{long}x","model_version":"v1","features":{{"amount":1}}}}"#
        ),
        format!(
            r#"{{"request_id":"j4","ts":{},"model_version":"v1","features":{{"amount":1,"country":"PL"}}}}"#,
            T0 * 1000
        ),
    ];
    let p = s.path("rows.jsonl");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let o = driftdb(&s.url, &["ingest", p.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        out(&o).contains("read 4 rows: 2 accepted, 2 rejected"),
        "{}",
        show(&o)
    );
    let e = err(&o);
    assert!(
        e.contains("line 2: feature \"colour\" is not a feature of model \"cv\""),
        "{e}"
    );
    let l3 = e.lines().find(|l| l.contains("line 3:")).unwrap();
    assert!(l3.len() < 200 && l3.contains("(5001 bytes)"), "{l3}");
    // Epoch seconds and microseconds landed in the data's hour.
    assert_eq!(value(&s.url, "rows(cv.amount)").await, 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_split_under_the_message_limit() {
    // 9,000 rows × 1,000 features in one --batch-size: 72 MB of doubles, over the 64 MiB
    // gRPC limit unless split.
    const F: usize = 1000;
    const N: usize = 9000;
    let names: Vec<String> = (0..F).map(|i| format!("f{i:04}")).collect();
    let feats: Vec<(&str, FeatureKind)> = names
        .iter()
        .map(|n| (n.as_str(), FeatureKind::Numeric))
        .collect();
    let s = start(vec![def("wide", &feats, &[])]).await;
    let mut cols: Vec<(String, ArrayRef)> = vec![
        (
            "request_id".into(),
            Arc::new(StringArray::from_iter_values(
                (0..N).map(|i| format!("w{i}")),
            )),
        ),
        (
            "ts".into(),
            Arc::new(TimestampMillisecondArray::from(vec![T0; N]).with_timezone("UTC")),
        ),
        (
            "model_version".into(),
            Arc::new(StringArray::from_iter_values((0..N).map(|_| "v1"))),
        ),
    ];
    for (j, n) in names.iter().enumerate() {
        cols.push((
            n.clone(),
            Arc::new(Float64Array::from_iter_values(
                (0..N).map(|i| ((i * 31 + j * 17) % 1009) as f64 * 0.37),
            )),
        ));
    }
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let p = s.path("wide.parquet");
    write_parquet(&p, &batch, N);
    let o = driftdb(
        &s.url,
        &[
            "ingest",
            p.to_str().unwrap(),
            "--model",
            "wide",
            "--batch-size",
            "9000",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        out(&o).contains("9000 accepted, 0 rejected"),
        "{}",
        show(&o)
    );
}
