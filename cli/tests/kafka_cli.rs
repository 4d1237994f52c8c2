//! The Kafka source against a real Kafka-protocol broker: `tansu` (built into
//! `target/tools/bin` by `scripts/setup.sh --test`, or `$DRIFTDB_TANSU`) on 127.0.0.1.
//!
//! - The golden windows and labels produced to 3 partitions give the same numbers as the same
//!   files ingested with `driftdb ingest`/`labels` (which the golden test checks against
//!   scipy); a malformed record and a record of an unknown model reach the dead-letter topic
//!   with their headers; lag drains to zero.
//! - `kill -9` of driftdb mid-topic and a restart count every record exactly once (the same
//!   numbers as an uninterrupted run), and so does a new node on an empty data directory that
//!   restores the checkpoint taken mid-topic (docs/SCALE_OUT.md) and replays from its offsets; that run's small batches and one batch of read-ahead
//!   overload the write path, so consumption is held back and goes on, without loss.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

use super::common::{GOLDEN, http_get, http_post, load_golden_model, ready_addrs, text};

const WINDOWS: usize = 16_000;
const LABELS: usize = 11_847;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A tansu broker on a free loopback port, in memory; killed when dropped.
struct Broker {
    child: Child,
    addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker() -> Broker {
    let bin = std::env::var_os("DRIFTDB_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/tools/bin/tansu"));
    assert!(
        bin.exists(),
        "the Kafka broker tansu is not at {} (run scripts/setup.sh --test, or set DRIFTDB_TANSU)",
        bin.display()
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("tcp://{addr}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu starts");
    let b = Broker { child, addr };
    let end = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&b.addr).is_err() {
        assert!(Instant::now() < end, "tansu did not listen on {}", b.addr);
        std::thread::sleep(Duration::from_millis(50));
    }
    b
}

fn create_topics(b: &Broker, topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, n)| NewTopic::new(t, *n, TopicReplication::Fixed(1)))
        .collect();
    let res = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in res {
        r.unwrap();
    }
}

/// Produces `(partition, key, value)` records, one per record batch, and waits until the
/// broker has them all.
///
/// tansu 0.6.0 answers a fetch from an offset inside a stored record batch with the batches
/// after it, skipping the rest of that batch (a Kafka broker returns the batch that holds the
/// offset and the client skips the records before it). A consumer resuming mid-batch — after a
/// restart, or after a partition was paused and resumed — would lose records on that broker,
/// so every record is its own batch.
fn produce(b: &Broker, topic: &str, recs: &[(i32, Option<&str>, Vec<u8>)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    for (part, key, value) in recs {
        let mut r: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic)
            .partition(*part)
            .payload(value.as_slice());
        if let Some(k) = key {
            r = r.key(*k);
        }
        let mut r = r;
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        format!("{e}").contains("Queue full"),
                        "produce to {topic}: {e}"
                    );
                    p.poll(Duration::from_millis(50));
                    r = back;
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// The golden file's lines, spread round-robin over `partitions`, keyed by the model id.
fn golden_records(file: &str, partitions: i32) -> Vec<(i32, Option<&'static str>, Vec<u8>)> {
    std::fs::read_to_string(root().join(GOLDEN).join(file))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            (
                (i as i32) % partitions,
                Some("fraud"),
                l.as_bytes().to_vec(),
            )
        })
        .collect()
}

/// A `driftdb serve` child with a config file; killed when dropped.
struct Served {
    child: Child,
    grpc: String,
    http: String,
    key: String,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // What the server said, for the failure's report.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} (last 60 lines)", self.log.display());
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn serve(data: &Path, kafka: Option<Value>) -> Served {
    serve_with(data, kafka, None)
}

/// [`serve`] with a `"checkpoint"` section.
fn serve_with(data: &Path, kafka: Option<Value>, checkpoint: Option<Value>) -> Served {
    let mut sections = serde_json::json!({});
    if let Some(k) = kafka {
        sections["kafka"] = k;
    }
    if let Some(c) = checkpoint {
        sections["checkpoint"] = c;
    }
    serve_sections(data, sections)
}

/// [`serve`] with the config's sections in `sections` (an object).
fn serve_sections(data: &Path, sections: Value) -> Served {
    std::fs::create_dir_all(data).unwrap();
    let mut cfg = serde_json::json!({"retention": "3650d", "downsample_after": "3600d"});
    for (k, v) in sections.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let cfg_path = data.with_extension("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let log_path = data.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(&cfg_path)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("driftdb starts");
    let (grpc, http) = ready_addrs(&mut child);
    let key = std::fs::read_to_string(data.join("admin.key"))
        .unwrap()
        .trim()
        .to_string();
    Served {
        child,
        grpc: format!("http://{grpc}"),
        http,
        key,
        log: log_path,
    }
}

fn driftdb(s: &Served, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(args)
        .args(["--server", &s.grpc])
        .current_dir(root())
        .env_remove("DRIFTDB_SERVER")
        .env("DRIFTDB_API_KEY", &s.key)
        .output()
        .unwrap()
}

fn run_ok(s: &Served, args: &[&str]) -> String {
    let o = driftdb(s, args);
    assert!(
        o.status.success(),
        "driftdb {args:?}: {}{}",
        text(&o.stderr),
        text(&o.stdout)
    );
    text(&o.stdout)
}

fn load_model(s: &Served) {
    load_golden_model(|args| run_ok(s, args));
}

/// `/metrics` as `series → value` (the series' text with its labels).
fn metrics(s: &Served) -> BTreeMap<String, f64> {
    let (status, _, body) = http_get(&s.http, "/metrics", Some(&s.key));
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

fn records(s: &Served, result: &str) -> f64 {
    metrics(s)
        .get(&format!(
            "driftdb_kafka_records_total{{result=\"{result}\"}}"
        ))
        .copied()
        .unwrap_or(0.0)
}

/// Waits (at most `secs`) until `cond` holds.
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Order-independent numbers over the eight golden windows: counts, binned drift,
/// performance and label coverage.
fn queries() -> Vec<String> {
    let range = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z step 15m";
    let mut q = Vec::new();
    for m in ["count", "rows", "psi", "js", "missing_rate"] {
        q.push(format!("{m}(fraud.*) {range}"));
    }
    q.push(format!("chi2(fraud.merchant_cat) {range}"));
    q.push(format!("count(fraud.*) {range} by channel, country"));
    for m in ["auc", "ece", "brier", "label_coverage", "positive_rate"] {
        q.push(format!("{m}(fraud) {range}"));
    }
    q
}

fn answers(s: &Served) -> Vec<Value> {
    queries()
        .iter()
        .map(|q| {
            let out = run_ok(s, &["query", "--json", q]);
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{q}: {e}: {out}"))
        })
        .collect()
}

/// The same rows, and numbers equal to 1e-9 (relative).
fn assert_same(what: &str, got: &[Value], want: &[Value]) {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    for ((q, g), w) in queries().iter().zip(got).zip(want) {
        assert!(
            g.as_array().is_some_and(|a| !a.is_empty()),
            "{what}: {q} gave no rows: {g}"
        );
        assert!(same(g, w), "{what}: {q}\n got: {g}\nwant: {w}");
    }
}

fn total_count(s: &Served) -> f64 {
    let out = run_ok(
        s,
        &[
            "query",
            "--json",
            "count(fraud.amount) from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z",
        ],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .and_then(|a| a.first())
        .and_then(|r| r.get("value"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

fn lag_drained(s: &Served, partitions: usize) -> bool {
    let m = metrics(s);
    let lags: Vec<f64> = m
        .iter()
        .filter(|(k, _)| k.starts_with("driftdb_kafka_lag_records{"))
        .map(|(_, v)| *v)
        .collect();
    lags.len() == partitions && lags.iter().all(|v| *v == 0.0)
}

#[test]
fn golden_data_through_three_partitions_matches_file_ingest() {
    let b = broker();
    create_topics(&b, &[("inferences", 3), ("labels", 3), ("dead", 1)]);
    let dir = tempfile::tempdir().unwrap();
    let k = serve(
        &dir.path().join("kafka"),
        Some(serde_json::json!({
            "brokers": b.addr, "group_id": "golden", "topic": "inferences",
            "label_topic": "labels", "dead_letter_topic": "dead", "max_batch_records": 2000,
        })),
    );
    let f = serve(&dir.path().join("files"), None);
    load_model(&k);
    load_model(&f);

    let mut recs = golden_records("windows.jsonl", 3);
    // Two bad records at the end of partition 0 and 1: not JSON, and an unknown model.
    let bad_at = [
        recs.iter().filter(|r| r.0 == 0).count(),
        recs.iter().filter(|r| r.0 == 1).count(),
    ];
    recs.push((0, Some("fraud"), b"{not json".to_vec()));
    recs.push((
        1,
        Some("nope"),
        br#"{"request_id":"x","ts":"2026-03-01T00:00:00Z","features":{}}"#.to_vec(),
    ));
    produce(&b, "inferences", &recs);
    wait_for("the inference records", 180, || {
        records(&k, "applied") >= WINDOWS as f64 && records(&k, "rejected") >= 2.0
    });
    produce(&b, "labels", &golden_records("labels.jsonl", 3));
    wait_for("the label records", 180, || {
        records(&k, "applied") >= (WINDOWS + LABELS) as f64
    });
    assert_eq!(records(&k, "applied"), (WINDOWS + LABELS) as f64);
    assert_eq!(records(&k, "rejected"), 2.0);
    assert_eq!(records(&k, "replayed"), 0.0);

    let out = run_ok(&f, &["ingest", &format!("{GOLDEN}windows.jsonl")]);
    assert!(out.contains("16000 accepted, 0 rejected"), "{out}");
    let out = run_ok(
        &f,
        &[
            "labels",
            &format!("{GOLDEN}labels.jsonl"),
            "--model",
            "fraud",
        ],
    );
    assert!(out.contains("11847 joined"), "{out}");
    assert_eq!(total_count(&k), WINDOWS as f64);
    assert_same("kafka vs files", &answers(&k), &answers(&f));

    // The dead-letter topic holds both bad records, with where they came from and why.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b.addr)
        .set("group.id", "dead-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["dead"]).unwrap();
    let mut dead = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while dead.len() < 2 && Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let h: BTreeMap<String, String> = m
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            dead.push((h, m.payload().unwrap_or_default().to_vec()));
        }
    }
    assert_eq!(dead.len(), 2, "dead-letter records: {dead:?}");
    dead.sort_by(|a, b| a.0["driftdb-source-partition"].cmp(&b.0["driftdb-source-partition"]));
    for (i, (h, _)) in dead.iter().enumerate() {
        assert_eq!(h["driftdb-source-topic"], "inferences");
        assert_eq!(h["driftdb-source-partition"], i.to_string());
        assert_eq!(h["driftdb-source-offset"], bad_at[i].to_string());
    }
    assert_eq!(dead[0].1, b"{not json");
    assert!(
        dead[1].0["driftdb-error"].contains("nope"),
        "{:?}",
        dead[1].0
    );
    wait_for("lag to drain", 60, || lag_drained(&k, 6));
    let m = metrics(&k);
    assert_eq!(m["driftdb_kafka_dead_lettered_total"], 2.0);
    assert!(m["driftdb_kafka_rebalances_total"] >= 1.0);
}

#[test]
fn kill_9_mid_topic_counts_every_record_once() {
    let b = broker();
    create_topics(&b, &[("inferences", 3)]);
    let dir = tempfile::tempdir().unwrap();
    let kafka = |group: &str, batch: usize, ahead: usize| {
        serde_json::json!({
            "brokers": b.addr, "group_id": group, "topic": "inferences",
            "max_batch_records": batch, "max_batch_ms": 50, "read_ahead_batches": ahead,
        })
    };
    let b_dir = dir.path().join("b");
    // b is checkpointed to a local object store on request only, to take one mid-topic.
    let cp_url = format!("file://{}", dir.path().join("checkpoints").display());
    let mut bsrv = serve_with(
        &b_dir,
        Some(kafka("b", 300, 2)),
        Some(serde_json::json!({"url": cp_url, "every": "0"})),
    );
    // The model exists before its records are produced (records of an unknown model are
    // rejected, not held).
    load_model(&bsrv);
    // The uninterrupted run gets its model before it consumes: a first start without Kafka.
    let a_dir = dir.path().join("a");
    load_model(&serve(&a_dir, None));
    // The first half of the topic, then a checkpoint of b holding exactly that half (taken
    // between productions, so it is mid-topic whatever b's speed).
    let all = golden_records("windows.jsonl", 3);
    let half = WINDOWS / 2;
    produce(&b, "inferences", &all[..half]);
    wait_for("b to apply the first half", 180, || {
        records(&bsrv, "applied") >= half as f64
    });
    // ... and to save every partition's offset (lag is measured from the saved offsets).
    wait_for("b's lag to drain", 60, || lag_drained(&bsrv, 3));
    let (status, body) = http_post(&bsrv.http, "/admin/checkpoint", &bsrv.key);
    assert_eq!(status, 200, "{body}");
    let saved: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(saved["seq"], 1, "{saved}");
    let at_checkpoint = half as f64;
    // The second half; kill b -9 mid-topic (some of it applied, not all), then restart it.
    produce(&b, "inferences", &all[half..]);
    wait_for("b to apply some of the second half", 120, || {
        records(&bsrv, "applied") >= (half + 1000) as f64
    });
    let before = records(&bsrv, "applied");
    assert!(
        before < WINDOWS as f64,
        "b finished before the kill ({before})"
    );
    bsrv.child.kill().unwrap();
    bsrv.child.wait().unwrap();
    drop(bsrv);
    // The restart joins as a new group: where it resumes comes from the store's checkpoints,
    // never from Kafka's committed offsets, so group `b`'s would not matter anyway; a fresh
    // group proves that (it would otherwise start at `earliest`) and does not wait out the
    // killed member's session (tansu's rebalance after that expiry sometimes assigned no
    // partition at all; see docs/KAFKA.md).
    let bsrv = serve(&b_dir, Some(kafka("b-restarted", 300, 2)));
    // b's machine is lost too: c starts on an empty data directory with b's checkpoint URL,
    // restores the checkpoint and replays the topic from the offsets it holds. b's operator
    // key is in the restored store; its file is copied as an operator would.
    let c_dir = dir.path().join("c");
    std::fs::create_dir_all(&c_dir).unwrap();
    std::fs::copy(b_dir.join("admin.key"), c_dir.join("admin.key")).unwrap();
    let csrv = serve_with(
        &c_dir,
        Some(kafka("c", 300, 2)),
        Some(serde_json::json!({"url": cp_url, "every": "0"})),
    );
    let log = std::fs::read_to_string(&csrv.log).unwrap();
    assert!(
        log.contains("driftdb: restored checkpoint 1 from file://"),
        "{log}"
    );
    // The uninterrupted run starts on the full topic: librdkafka fetches megabytes at once,
    // and 100-record batches (each a durable write) with one batch of read-ahead per writer
    // overload the write path whatever the broker's speed, so partitions are paused and
    // resumed.
    let a = serve(&a_dir, Some(kafka("a", 100, 1)));
    for (name, s) in [
        ("uninterrupted", &a),
        ("restarted", &bsrv),
        ("restored", &csrv),
    ] {
        wait_for(&format!("{name}: lag to drain"), 180, || lag_drained(s, 3));
        let mut last = 0.0;
        let end = Instant::now() + Duration::from_secs(240);
        while last < WINDOWS as f64 && Instant::now() < end {
            last = total_count(s);
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            last,
            WINDOWS as f64,
            "{name}: rows counted; metrics {:?}",
            metrics(s)
        );
    }
    assert_eq!(total_count(&a), WINDOWS as f64);
    assert_eq!(total_count(&bsrv), WINDOWS as f64);
    assert_same("restarted vs uninterrupted", &answers(&bsrv), &answers(&a));
    assert_same("restored vs uninterrupted", &answers(&csrv), &answers(&a));
    // c resumed at the checkpoint's offsets, not at the topic's start, nor at b's kill: it
    // applied exactly what the checkpoint did not hold.
    assert_eq!(
        records(&csrv, "applied"),
        WINDOWS as f64 - at_checkpoint,
        "replayed {}",
        records(&csrv, "replayed")
    );
    assert_eq!(records(&csrv, "replayed"), 0.0);
    let m = metrics(&a);
    assert!(m["driftdb_kafka_pauses_total"] >= 1.0, "no pause: {m:?}");
    assert_eq!(
        m["driftdb_kafka_pauses_total"],
        m["driftdb_kafka_resumes_total"]
    );
    assert_eq!(records(&a, "applied"), WINDOWS as f64);
    assert_eq!(records(&a, "rejected"), 0.0);
    // The restarted run applied the rest once: the exact totals above show nothing was lost
    // or counted twice, and it never applies more than was left at the kill (`before` is
    // sampled a little before the kill, so records applied in between are durable but in
    // neither count: a lower bound from `before` would race with the kill).
    let after = records(&bsrv, "applied");
    assert!(
        after <= WINDOWS as f64 - before,
        "applied {after} after the restart, {before} before the kill"
    );
    // ... and resumed at its checkpoint, not at the topic's start: at most the batches in
    // flight at the kill are consumed again.
    assert!(
        records(&bsrv, "applied") + records(&bsrv, "replayed") <= WINDOWS as f64 - before + 600.0,
        "restart consumed {} applied + {} replayed after {before} before the kill",
        records(&bsrv, "applied"),
        records(&bsrv, "replayed")
    );
}

/// What a cluster test asks each model: counts per window, by segment, and missing rates.
fn cluster_queries(model: &str) -> Vec<String> {
    let range = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z";
    vec![
        format!("count({model}.*) {range} step 15m"),
        format!("count({model}.amount) {range} by channel, country"),
        format!("missing_rate({model}.*) {range}"),
    ]
}

/// `GET /api/v1/driftql?q=…` on `s`: status, the answering node's id and the body.
fn ask(s: &Served, q: &str) -> (u16, String, String) {
    let enc: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (status, head, body) = http_get(&s.http, &format!("/api/v1/driftql?q={enc}"), Some(&s.key));
    let node = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-driftdb-node: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    if status == 503 {
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1")
                && body.contains("\"retryable\":true"),
            "a 503 must be retryable: {head}\n{body}"
        );
    }
    (status, node, body)
}

/// The rows of every cluster query of every model, from `s`; `None` while any answer is a
/// retryable 503.
fn cluster_answers(s: &Served, models: &[String]) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    for m in models {
        for q in cluster_queries(m) {
            let (status, _, body) = ask(s, &q);
            if status == 503 {
                return None;
            }
            assert_eq!(status, 200, "{q}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            out.push(v["rows"].clone());
        }
    }
    Some(out)
}

/// `driftdb report --format json` of `model` over the golden range through `s`, without what
/// differs between runs (when and through which server it was made).
fn report_of(s: &Served, model: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.json");
    let path = path.to_str().unwrap();
    let range = [
        "--from",
        "2026-03-01T00:00:00Z",
        "--to",
        "2026-03-01T02:00:00Z",
    ];
    let args = [
        &["report", "--model", model, "--format", "json", "-o", path][..],
        &range,
    ]
    .concat();
    run_ok(s, &args);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    assert!(o.remove("generated_at_ms").is_some() && o.remove("source").is_some());
    assert!(o.len() > 3, "{v}");
    v
}

/// `driftdb alerts list --json` through `s`: each alert's node and what identifies its
/// episode and state (rule, series, window, state).
fn grpc_alerts(s: &Served) -> Vec<(String, String)> {
    run_ok(s, &["alerts", "list", "--json", "--limit", "1000"])
        .lines()
        .map(|l| {
            let a: Value = serde_json::from_str(l).unwrap();
            let key = [
                "rule_id",
                "model",
                "version",
                "feature",
                "segment",
                "window_start",
                "state",
            ]
            .map(|k| a[k].to_string())
            .join("|");
            (a["node"].as_str().unwrap_or_default().to_string(), key)
        })
        .collect()
}

/// The gRPC `DriftSummary` of `model` over the golden range through `s`, as JSON.
fn summary_of(s: &Served, model: &str) -> Value {
    use driftdb_cli::client::{Client, ClientConfig};
    use driftdb_proto::v1 as pb;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async {
        let cfg = ClientConfig::url(&s.grpc).with_key(&s.key);
        let mut c = Client::connect_with(&cfg).await.unwrap();
        c.query
            .drift_summary(pb::DriftSummaryRequest {
                model_id: model.into(),
                from: "2026-03-01T00:00:00Z".into(),
                to: "2026-03-01T02:00:00Z".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    });
    let table = |t: Option<pb::Table>| {
        let t = driftdb_server::convert::table_from_pb(t.unwrap_or_default());
        serde_json::json!({ "columns": t.columns, "rows": t.to_json() })
    };
    serde_json::json!({
        "drifted_features": table(r.drifted_features),
        "prediction_shift": table(r.prediction_shift),
        "performance": table(r.performance),
        "version": r.model_version,
        "from": r.from,
        "to": r.to,
        "warnings": r.warnings,
    })
}

/// Equal JSON, numbers within a relative 1e-12: the nodes' sums add the same rows in other
/// batches than the single node's, so a mean may differ in its last bit.
fn same_up_to_rounding(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_up_to_rounding(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_up_to_rounding(v, w)))
        }
        _ => a == b,
    }
}

/// A series of a remote read: labels and samples.
type ReadSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

/// A Prometheus remote read of `driftdb_rows` of the models `m…` over the golden range on
/// `s`: each series' labels and samples, in label order; `None` on a retryable 503.
fn remote_rows(s: &Served) -> Option<Vec<ReadSeries>> {
    use driftdb_proto::prometheus as pb;
    let matcher = |ty: pb::label_matcher::Type, name: &str, value: &str| pb::LabelMatcher {
        r#type: ty as i32,
        name: name.into(),
        value: value.into(),
    };
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            // 2026-03-01T00:00Z to 02:00Z.
            start_timestamp_ms: 1_772_323_200_000,
            end_timestamp_ms: 1_772_330_400_000,
            matchers: vec![
                matcher(pb::label_matcher::Type::Eq, "__name__", "driftdb_rows"),
                matcher(pb::label_matcher::Type::Re, "model", "m[0-9]+"),
            ],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&prost::Message::encode_to_vec(&req))
        .unwrap();
    driftdb_server::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, bytes) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("http://{}/api/v1/read", s.http))
            .bearer_auth(&s.key)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    });
    if status == 503 {
        return None;
    }
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let raw = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
    let resp: pb::ReadResponse = prost::Message::decode(raw.as_slice()).unwrap();
    let mut out: Vec<_> = resp.results[0]
        .timeseries
        .iter()
        .map(|t| {
            (
                t.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect(),
                t.samples.iter().map(|x| (x.timestamp, x.value)).collect(),
            )
        })
        .collect();
    out.sort_by(|a: &ReadSeries, b| a.0.cmp(&b.0));
    Some(out)
}

/// `GET path?query` of the Prometheus API on `s`: its `data`, sorted when a list.
fn prom_data(s: &Served, path: &str, query: &[(&str, &str)]) -> Value {
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let (status, _, body) = http_get(&s.http, &format!("{path}?{q}"), Some(&s.key));
    assert_eq!(status, 200, "{path}: {body}");
    let mut data = serde_json::from_str::<Value>(&body).unwrap()["data"].take();
    if let Some(a) = data.as_array_mut() {
        a.sort_by_key(|v| v.to_string());
    }
    data
}

fn metric(s: &Served, name: &str) -> f64 {
    metrics(s).get(name).copied().unwrap_or(0.0)
}

/// Two nodes in one consumer group (docs/SCALE_OUT.md): each model's records land once, on
/// the node owning its partition; either node answers for every model (the other's by
/// forwarding) exactly as a single node consuming everything does; `kill -9` of one node
/// moves its partitions to the survivor, which replays them and then answers for every model
/// the same, with only retryable 503s meanwhile.
/// A webhook receiver on 127.0.0.1 (a thread per connection, HTTP/1.1 with keep-alive): every
/// POST's path and JSON body.
struct Hooks {
    url: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl Hooks {
    fn start() -> Hooks {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let hits = std::sync::Arc::default();
        let h = std::sync::Arc::clone(&hits);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    let _ = Hooks::answer(c, &h);
                });
            }
        });
        Hooks { url, hits }
    }

    fn answer(
        mut c: std::net::TcpStream,
        hits: &std::sync::Mutex<Vec<(String, Value)>>,
    ) -> std::io::Result<()> {
        use std::io::{BufRead, Read, Write};
        c.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut r = std::io::BufReader::new(c.try_clone()?);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                r.read_line(&mut h)?;
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body)?;
            hits.lock()
                .unwrap()
                .push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
        }
    }

    /// How many times each event id reached `path`.
    fn events(&self, path: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (p, body) in self.hits.lock().unwrap().iter() {
            if p == path {
                let id = body["event_id"].as_str().unwrap_or("?").to_string();
                *out.entry(id).or_default() += 1;
            }
        }
        out
    }
}

/// A rule on `model` that breaches while the window's mean `amount` is above 500, firing and
/// resolving on single windows, delivered to `url`.
fn amount_rule(model: &str, url: &str) -> Value {
    serde_json::json!({
        "id": format!("big-{model}"), "model": model, "selector": "amount", "metric": "mean",
        "comparison": ">", "threshold": 500, "consecutive": 1, "segment": "all",
        "severity": "high", "actions": [{"kind": "webhook", "url": url}],
    })
}

/// Rows of `model` (copies of the golden row `line`) in three 15-minute windows from the one
/// open at `now_ms` (or the next, when that one closes within 3 minutes: its rows must all
/// arrive before the clock closes it): 30 with a large amount in the 1st, 30 small in the 2nd,
/// 30 large in the 3rd, and one just after the start of the 4th, whose event time closes the
/// 3rd (grace 1 s). With [`amount_rule`] each model fires, resolves and fires again: 3 alerts.
fn alert_rows(model: &str, line: &str, now_ms: i64) -> Vec<Vec<u8>> {
    const W: i64 = 900_000;
    let mut first = now_ms / W * W;
    if now_ms - first > W - 180_000 {
        first += W;
    }
    let mut out = Vec::new();
    let mut row = |ts: i64, amount: f64, i: usize| {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["model_id"] = Value::from(model);
        v["request_id"] = Value::from(format!("alert-{model}-{i}"));
        v["ts"] = Value::from(driftdb_engine::time::Timestamp(ts).to_rfc3339());
        v["features"]["amount"] = Value::from(amount);
        out.push(v.to_string().into_bytes());
    };
    for (k, amount) in [(0, 1000.0), (1, 1.0), (2, 1000.0)] {
        for i in 0..30 {
            row(
                first + k * W + i * 20_000,
                amount,
                (k as usize) * 30 + i as usize,
            );
        }
    }
    row(first + 3 * W + 2_000, 1.0, 90);
    out
}

#[test]
fn two_nodes_share_the_topic_and_survive_a_kill_9() {
    const MODELS: usize = 6;
    const PER_MODEL: usize = 1_500;
    let b = broker();
    create_topics(&b, &[("preds", 4)]);
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<String> = (0..MODELS).map(|i| format!("m{i}")).collect();
    let hooks = Hooks::start();
    // Models, rules and the operator key are made on one store, then copied to every node's
    // directory before the nodes start (as an operator seeds a fleet's nodes). Windows close
    // a second after their end, so the alert rows' event times close them during the test.
    let seed = dir.path().join("seed");
    {
        let s = serve(&seed, None);
        let golden = std::fs::read_to_string(root().join(GOLDEN).join("model.json")).unwrap();
        for m in &models {
            let mut def: Value = serde_json::from_str(&golden).unwrap();
            def["id"] = Value::from(m.as_str());
            def["grace"] = Value::from("1s");
            let p = dir.path().join(format!("{m}.json"));
            std::fs::write(&p, def.to_string()).unwrap();
            run_ok(&s, &["model", "create", "--file", p.to_str().unwrap()]);
            let r = dir.path().join(format!("{m}.rule.json"));
            let rule = amount_rule(m, &format!("{}/fleet", hooks.url));
            std::fs::write(&r, rule.to_string()).unwrap();
            run_ok(&s, &["rules", "add", "--file", r.to_str().unwrap()]);
        }
    }
    let dirs: Vec<PathBuf> = ["a", "b", "solo"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    for d in &dirs {
        let st = Command::new("cp")
            .arg("-a")
            .arg(&seed)
            .arg(d)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let kafka = |group: &str| {
        serde_json::json!({
            "brokers": b.addr, "group_id": group, "topic": "preds", "max_batch_ms": 50,
            "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
        })
    };
    let cluster = serde_json::json!({"publish_every": "300ms", "member_ttl": "3s"});
    let solo = serve_sections(&dirs[2], serde_json::json!({"kafka": kafka("solo")}));
    // The single node's alerts go to their own path.
    for m in &models {
        let r = dir.path().join(format!("{m}.solo-rule.json"));
        let rule = amount_rule(m, &format!("{}/solo", hooks.url));
        std::fs::write(&r, rule.to_string()).unwrap();
        run_ok(&solo, &["rules", "add", "--file", r.to_str().unwrap()]);
    }
    let na = serve_sections(
        &dirs[0],
        serde_json::json!({"kafka": kafka("fleet"), "cluster": cluster}),
    );
    let mut nb = serve_sections(
        &dirs[1],
        serde_json::json!({"kafka": kafka("fleet"), "cluster": cluster}),
    );
    // Each model's records keyed by its id, in partition i % 4: the golden rows with the
    // model id replaced.
    let lines: Vec<String> = std::fs::read_to_string(root().join(GOLDEN).join("windows.jsonl"))
        .unwrap()
        .lines()
        .take(PER_MODEL)
        .map(str::to_string)
        .collect();
    let mut recs = Vec::new();
    let now_ms = {
        use driftdb_engine::time::Clock as _;
        driftdb_engine::time::SystemClock.now().millis()
    };
    for (i, m) in models.iter().enumerate() {
        for l in &lines {
            let v = l.replace("\"model_id\":\"fraud\"", &format!("\"model_id\":\"{m}\""));
            recs.push(((i % 4) as i32, Some(m.as_str()), v.into_bytes()));
        }
        // Then rows of the coming hour, whose windows close and alert while the test runs.
        for v in alert_rows(m, &lines[0], now_ms) {
            recs.push(((i % 4) as i32, Some(m.as_str()), v));
        }
    }
    let per_model = PER_MODEL + alert_rows("m", &lines[0], now_ms).len();
    wait_for("both nodes to own partitions", 60, || {
        metric(&na, "driftdb_cluster_owned_partitions") >= 1.0
            && metric(&nb, "driftdb_cluster_owned_partitions") >= 1.0
            && metric(&na, "driftdb_cluster_owned_partitions")
                + metric(&nb, "driftdb_cluster_owned_partitions")
                == 4.0
    });
    produce(&b, "preds", &recs);
    let total = (MODELS * per_model) as f64;
    wait_for("the single node to apply everything", 180, || {
        records(&solo, "applied") == total
    });
    // Every record once across the two nodes.
    wait_for("the two nodes to apply everything", 180, || {
        records(&na, "applied") + records(&nb, "applied") == total
    });
    let want = cluster_answers(&solo, &models).expect("a single node never answers 503");
    // Both nodes answer for every model as the single node does (once membership carries
    // the models: a node that has not heard yet answers 503, retryable).
    for (name, s) in [("a", &na), ("b", &nb)] {
        let mut got = None;
        wait_for(&format!("{name} to answer for every model"), 60, || {
            got = cluster_answers(s, &models);
            got.is_some()
        });
        assert_eq!(
            got.unwrap(),
            want,
            "{name}'s answers differ from a single node's"
        );
        // Over gRPC too (`driftdb query`, `driftdb report`): a model the other node serves is
        // answered by it.
        for (m, want_rows) in models.iter().zip(want.chunks(3)) {
            for (q, want_q) in cluster_queries(m).iter().zip(want_rows) {
                let out = run_ok(s, &["query", "--json", q]);
                let got: Value = serde_json::from_str(&out).unwrap();
                assert_eq!(&got, want_q, "{name}: gRPC {q}");
            }
            let (got, want) = (summary_of(s, m), summary_of(&solo, m));
            assert!(
                same_up_to_rounding(&got, &want),
                "{name}: the drift summary of {m}: {got}\nwant {want}"
            );
            let (got, want) = (report_of(s, m), report_of(&solo, m));
            assert!(
                same_up_to_rounding(&got, &want),
                "{name}: the report of {m}: {got}\nwant {want}"
            );
        }
    }
    // A Prometheus remote read through either node sees every model's series, each from the
    // node serving it, as the single node has them.
    let want_read = remote_rows(&solo).expect("a single node never answers 503");
    let models_read: std::collections::BTreeSet<String> = want_read
        .iter()
        .filter_map(|(l, _)| l.iter().find(|(k, _)| k == "model").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(models_read.len(), MODELS, "{want_read:?}");
    for (name, s) in [("a", &na), ("b", &nb)] {
        assert_eq!(
            remote_rows(s).as_ref(),
            Some(&want_read),
            "{name}'s remote read differs from a single node's"
        );
    }
    // ... and so do the series listing and the label values.
    let listing = [
        ("match[]", "{__name__=\"driftdb_rows\",model=~\"m[0-9]+\"}"),
        ("start", "2026-03-01T00:00:00Z"),
        ("end", "2026-03-01T02:00:00Z"),
    ];
    let want_series = prom_data(&solo, "/api/v1/series", &listing);
    assert!(
        want_series.as_array().is_some_and(|a| a.len() >= MODELS),
        "{want_series}"
    );
    let want_models = prom_data(&solo, "/api/v1/label/model/values", &listing);
    assert_eq!(
        want_models.as_array().map(Vec::len),
        Some(MODELS),
        "{want_models}"
    );
    for s in [&na, &nb] {
        assert_eq!(prom_data(s, "/api/v1/series", &listing), want_series);
        assert_eq!(
            prom_data(s, "/api/v1/label/model/values", &listing),
            want_models
        );
    }
    // Each node answered some models itself and relayed the others to their owner.
    for (name, s, other) in [("a", &na, &nb), ("b", &nb, &na)] {
        let mut mine = 0;
        let mut relayed = 0;
        for m in &models {
            let (status, node, _) = ask(s, &cluster_queries(m)[0]);
            assert_eq!(status, 200);
            let me = format!("http://{}", s.http);
            let them = format!("http://{}", other.http);
            if node == me {
                mine += 1;
            } else {
                assert_eq!(node, them, "{name}: {m} answered by {node}");
                relayed += 1;
            }
        }
        assert!(
            mine >= 1 && relayed >= 1,
            "{name}: {mine} answered, {relayed} relayed"
        );
        assert!(metric(s, "driftdb_cluster_requests_total{result=\"forwarded\"}") >= 1.0);
    }
    assert_eq!(records(&na, "replayed") + records(&nb, "replayed"), 0.0);
    // Every model fired, resolved and fired again: on the single node, and once across the
    // two nodes (each model's windows evaluated by its owner only).
    let alerts = 3 * MODELS;
    wait_for("every alert to reach the receiver", 60, || {
        hooks.events("/solo").len() == alerts && hooks.events("/fleet").len() == alerts
    });
    let want_events = hooks.events("/solo");
    assert!(want_events.values().all(|n| *n == 1), "{want_events:?}");
    assert_eq!(hooks.events("/fleet"), want_events, "before the kill");
    // The alert history and the model list through either node are the fleet's: every
    // episode once, named by the node that fired it; every model, with the node serving it.
    let ids = [format!("http://{}", na.http), format!("http://{}", nb.http)];
    // The history lists episodes: each by its firing's event id (a resolution updates it).
    let want_history: BTreeMap<String, usize> = want_events
        .iter()
        .filter(|(id, _)| id.contains("/firing/"))
        .map(|(id, n)| (id.clone(), *n))
        .collect();
    assert_eq!(want_history.len(), 2 * MODELS);
    let mut want_grpc: Vec<String> = grpc_alerts(&solo).into_iter().map(|(_, k)| k).collect();
    want_grpc.sort();
    assert_eq!(want_grpc.len(), 2 * MODELS, "{want_grpc:?}");
    let mut served = Vec::new();
    for s in [&na, &nb] {
        let (status, _, body) = http_get(&s.http, "/alerts?limit=1000", Some(&s.key));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let mut got: BTreeMap<String, usize> = BTreeMap::new();
        for a in v["alerts"].as_array().unwrap() {
            assert!(ids.iter().any(|i| a["node"] == i.as_str()), "{a}");
            *got.entry(a["event_id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(got, want_history, "GET /alerts through {}", s.http);
        // `driftdb alerts list` (gRPC) lists the fleet's episodes too, each named by the node
        // that fired it, as the single node lists its own.
        let listed = grpc_alerts(s);
        assert!(listed.iter().all(|(n, _)| ids.contains(n)), "{listed:?}");
        let mut got: Vec<String> = listed.into_iter().map(|(_, k)| k).collect();
        got.sort();
        assert_eq!(got, want_grpc, "driftdb alerts list through {}", s.http);
        let (status, _, body) = http_get(&s.http, "/models/m0/alerts", Some(&s.key));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["alerts"].as_array().map(Vec::len), Some(2), "{v}");
        let (status, _, body) = http_get(&s.http, "/models", Some(&s.key));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let list: Vec<(String, String)> = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["served_by"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(list.len(), MODELS, "{v}");
        for (m, by) in &list {
            let (_, answered_by, _) = ask(s, &cluster_queries(m)[0]);
            assert_eq!(by, &answered_by, "{m}: served_by");
        }
        served.push(list);
    }
    assert_eq!(served[0], served[1], "both nodes list the same owners");
    // kill -9 b: its partitions move to a (after b's session times out), which has never
    // consumed them and replays them from the start.
    let a_before = records(&na, "applied");
    nb.child.kill().unwrap();
    let killed = Instant::now();
    nb.child.wait().unwrap();
    drop(nb);
    // From the kill on, every answer of a is either the single node's or a retryable 503
    // (b's models while their partitions have no live owner, then while a replays them),
    // never a partial count.
    let asked: Vec<String> = models.iter().flat_map(|m| cluster_queries(m)).collect();
    let mut refused = 0;
    let mut answered = 0;
    wait_for(
        "a to own every partition and answer for every model",
        180,
        || {
            let mut all = true;
            for (q, w) in asked.iter().zip(&want) {
                let (status, _, body) = ask(&na, q);
                if status == 503 {
                    refused += 1;
                    all = false;
                    continue;
                }
                assert_eq!(status, 200, "{q}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(&v["rows"], w, "during the handover, {q}");
                answered += 1;
            }
            match remote_rows(&na) {
                None => all = false,
                Some(r) => assert_eq!(r, want_read, "remote read during the handover"),
            }
            all && metric(&na, "driftdb_cluster_owned_partitions") == 4.0
        },
    );
    let handover = killed.elapsed();
    assert!(
        refused > 0,
        "b's models were answered while their partitions moved"
    );
    assert_eq!(metric(&na, "driftdb_cluster_warming_partitions"), 0.0);
    assert_eq!(
        remote_rows(&na).as_ref(),
        Some(&want_read),
        "after the handover"
    );
    // a applied exactly b's share again, once.
    assert_eq!(
        records(&na, "applied"),
        total,
        "a applied {a_before} before the kill"
    );
    assert_eq!(records(&na, "rejected"), 0.0);
    // a evaluates b's models from where b's published record left them (b had evaluated
    // every closed window and delivered its alerts): no alert fires or is delivered again.
    wait_for("a to evaluate every closed window", 30, || {
        metric(&na, "driftdb_rule_windows_pending") == 0.0
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hooks.events("/fleet"),
        want_events,
        "after the handover: every alert once"
    );
    let log = std::fs::read_to_string(&na.log).unwrap();
    assert!(
        log.contains("rule evaluation taken over"),
        "a took over b's models' rule evaluation"
    );
    eprintln!(
        "during the handover ({:.1} s from the kill to every answer right): {answered} answers, {refused} refused as moving; a rejoined the group {} times",
        handover.as_secs_f64(),
        log.matches("rejoining the consumer group").count()
    );
}

/// `--cluster` without Kafka, or with an unusable setting, stops `serve` before it listens,
/// with a message saying what is missing.
#[test]
fn cluster_flags_are_checked_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_driftdb"))
            .arg("serve")
            .arg("--data")
            .arg(dir.path())
            .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--cluster"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("cluster: needs Kafka with an inference topic"),
        "{}",
        text(&o.stderr)
    );
    let o = run(&[
        "--kafka-brokers",
        "127.0.0.1:1",
        "--kafka-topic",
        "preds",
        "--advertise",
        "10.0.0.5:9090",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("must be an http:// or https:// URL"),
        "{}",
        text(&o.stderr)
    );
    assert!(
        text(&o.stdout).is_empty(),
        "no ready line: {}",
        text(&o.stdout)
    );
}

/// `driftdb bench cluster` at a small size: every row consumed once per final owner, and the
/// handover's figures add up.
#[test]
fn bench_cluster_reports_consumption_and_handover() {
    let b = broker();
    let o = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["bench", "cluster", "--brokers", &b.addr, "--json"])
        .args(["--rows", "8000", "--batch", "1000", "--features", "10"])
        .args(["--models", "4", "--partitions", "4", "--nodes", "1,2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_str(text(&o.stdout).trim()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{v}");
    for r in runs {
        let per_node: u64 = r["rows_per_node"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(
            per_node - r["rows_applied_twice"].as_u64().unwrap(),
            8000,
            "{r}"
        );
        assert!(r["cpu_us_per_row"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(runs[0]["handover"].is_null());
    let h = &runs[1]["handover"];
    // The survivor replays what the leaving node had consumed (it never held those
    // partitions). The group may also have given the second node nothing to consume (tansu
    // sometimes does): then there is nothing to replay.
    let lost = h["lost_node_rows"].as_u64().unwrap();
    let replayed = h["rows_replayed"].as_u64().unwrap();
    assert!(lost == 0 || replayed > 0, "{h}");
    assert!(replayed <= 8000, "{h}");
    assert!(
        h["serving_seconds"].as_f64().unwrap() >= h["caught_up_seconds"].as_f64().unwrap(),
        "{h}"
    );
}
