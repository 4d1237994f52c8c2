//! `driftdb query` as users run it: the built binary against a server on 127.0.0.1:0 (in this
//! process, clock fixed a day after the data). The aligned table or `--json` rows on stdout,
//! warnings on stderr, and a non-zero exit with a one-line reason on errors.

use std::process::{Command, Output};
use std::sync::Arc;

use driftdb_cli::client::Client;
use driftdb_engine::model::{FeatureKind, ModelDef, Task};
use driftdb_engine::time::{ManualClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_server::auth::AuthMode;
use driftdb_server::convert::model_to_pb;
use driftdb_server::node::Node;
use driftdb_storage::StoreConfig;
use serde_json::Value;
use tokio_stream::StreamExt;

const HOUR: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z";

fn def(id: &str) -> ModelDef {
    ModelDef {
        id: id.into(),
        task: Task::Binary,
        window: "15m".into(),
        grace: "5m".into(),
        max_label_delay: "30d".into(),
        segments: vec![],
        segment_cap: 64,
        features: [
            ("stable".to_string(), FeatureKind::Numeric),
            ("drifty".to_string(), FeatureKind::Numeric),
        ]
        .into_iter()
        .collect(),
        sampling: 1.0,
        team: None,
    }
}

/// `n` rows over one hour from `ts0`; `drifty` moved up by `shift`.
fn batch(model: &str, prefix: &str, n: usize, ts0: i64, shift: f64) -> pb::InferenceBatch {
    let level = |i: usize, m: usize| ((i * m + 7) % 1000) as f64 / 10.0;
    pb::InferenceBatch {
        model_id: model.into(),
        request_ids: (0..n).map(|i| format!("{prefix}{i}")).collect(),
        ts_ms: (0..n)
            .map(|i| ts0 + i as i64 * 3_600_000 / n as i64)
            .collect(),
        model_versions: vec!["v1".into()],
        features: vec![
            pb::FeatureColumn {
                name: "stable".into(),
                numbers: (0..n).map(|i| level(i, 7919)).collect(),
                ..Default::default()
            },
            pb::FeatureColumn {
                name: "drifty".into(),
                numbers: (0..n).map(|i| level(i, 104_729) + shift).collect(),
                ..Default::default()
            },
        ],
        scores: (0..n).map(|i| level(i, 337) / 100.0).collect(),
        ..Default::default()
    }
}

struct Server {
    url: String,
    running: driftdb_server::serve::Running,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let t0 = Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let clock = ManualClock::new(Timestamp(t0.0 + 86_400_000));
    // The CLI's query output is what is tested here; auth is covered by tests/auth.rs.
    let node = Node::open(
        dir.path(),
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
    for id in ["shop", "bare"] {
        c.models
            .create_model(pb::CreateModelRequest {
                model: Some(model_to_pb(&def(id), vec![])),
            })
            .await
            .unwrap();
    }
    let header = pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Header(pb::ReferenceHeader {
            model_id: "shop".into(),
            model_version: "v1".into(),
            replace: false,
        })),
    };
    let rows = pb::ReferenceChunk {
        chunk: Some(pb::reference_chunk::Chunk::Rows(batch(
            "shop",
            "ref",
            2000,
            t0.0 - 86_400_000,
            0.0,
        ))),
    };
    c.models
        .upload_reference(tokio_stream::iter(vec![header, rows]))
        .await
        .unwrap();
    let mut acks = c
        .ingest
        .ingest_inferences(tokio_stream::iter(vec![
            batch("shop", "live", 1000, t0.0, 50.0),
            batch("bare", "b", 100, t0.0, 0.0),
        ]))
        .await
        .unwrap()
        .into_inner();
    while let Some(a) = acks.next().await {
        assert_eq!(a.unwrap().rejected, 0);
    }
    Server {
        url,
        running,
        _dir: dir,
    }
}

/// Runs the built `driftdb` with `args` off the async runtime.
async fn driftdb(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_driftdb"))
            .args(&args)
            .env_remove("DRIFTDB_SERVER")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn query_args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec!["query".to_string(), "--server".into(), url.into()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_prints_tables_json_warnings_and_errors() {
    let s = start().await;

    // --json: an array of row objects keyed by the query/DRIFTQL.md column names.
    let out = driftdb(query_args(
        &s.url,
        &["--json", &format!("psi(shop.*) {HOUR} step 15m")],
    ))
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{rows:?}");
    for r in rows {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "baseline_n",
                "feature",
                "metric",
                "model",
                "n",
                "time",
                "value",
                "version"
            ]
        );
        assert_eq!(r["metric"], "psi");
        let psi = r["value"].as_f64().unwrap();
        if r["feature"] == "drifty" {
            assert!(psi > 1.0, "{r}");
        } else {
            assert!(psi < 0.1, "{r}");
        }
    }

    // Default: the aligned table; no warnings for a model with a reference.
    let out = driftdb(query_args(&s.url, &[&format!("psi(shop.*) {HOUR}")])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "model",
            "version",
            "feature",
            "metric",
            "value",
            "n",
            "baseline_n"
        ]
    );
    assert!(lines.next().unwrap().starts_with("-----"), "{table}");
    assert!(table.trim_end().ends_with("(2 rows)"), "{table}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));

    // Warnings go to stderr, prefixed, after a table that still prints.
    let out = driftdb(query_args(&s.url, &[&format!("psi(bare.*) {HOUR}")])).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(2 rows)"),
        "{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("warning: ") && l.contains("no reference")),
        "{err}"
    );

    // Errors: non-zero exit, nothing on stdout, one line naming the line and column.
    let out = driftdb(query_args(&s.url, &["--json", "psi(shop.*) ovr 1h"])).await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("line 1, column 13"), "{err}");
    let out = driftdb(query_args(&s.url, &["psi(nope.*) over 1h"])).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("\"nope\" not found"),
        "{}",
        text(&out.stderr)
    );

    // An unreachable server is an error too.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = driftdb(query_args(&format!("http://{closed}"), &["psi(shop.*)"])).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );

    // --help shows examples.
    let out = driftdb(vec!["query".into(), "--help".into()]).await;
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Examples:"), "{help}");
    assert!(
        help.matches("driftdb query '").count() + help.matches("driftdb query --json '").count()
            >= 3,
        "{help}"
    );

    s.running.shutdown().await.unwrap();
}
