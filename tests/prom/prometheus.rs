//! Debian's real `prometheus` (installed by `scripts/setup.sh --test`; the test fails, it does
//! not skip, when the binary is missing) on a free loopback port, with `remote_read` pointing
//! at a test driftdb (`read_recent: true`) and a scrape job on driftdb's `/metrics`:
//!
//! 1. `/api/v1/query_range` through Prometheus returns exactly DriftQL's drift values;
//! 2. every driftdb panel query of the dashboards answers the same through Prometheus as
//!    through driftdb's own query API, and every self-monitoring panel returns data;
//! 3. our XOR chunk decoder reads the chunks Prometheus' own remote-read server streams (of
//!    samples backfilled with `promtool`), and our encoder re-encodes them to the same bytes;
//! 4. a failing driftdb — one that refuses a query, then one that is down — shows up as a
//!    warning in Prometheus' answer.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftdb_proto::prometheus as pp;
use serde_json::Value;

use super::api::{query_at, query_range};
use super::dashboards::{
    PENDING_RULES_METRICS, dashboards, interpolate, metric_names, resolve_vars, targets,
};
use super::fixture::{self, driftql, end, expected_samples, start};
use super::http::post_form;
use super::remote_read::{decode_frames, eq, label};

/// Kills and reaps the child when dropped, so a failing assertion never leaks a Prometheus.
pub(crate) struct Running {
    child: Child,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `name` on `PATH`, or in `/usr/bin`.
fn binary(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("`{name}` not found: run `bash scripts/setup.sh --test`, which installs Debian's prometheus package")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a real Prometheus scraping driftdb's `/metrics` and reading its series through
/// remote read; with `bearer`, both send `Authorization: Bearer <key>` (Prometheus'
/// `authorization.credentials`).
pub(crate) async fn start_prometheus(
    dir: &Path,
    driftdb: SocketAddr,
    bearer: Option<&str>,
) -> (Running, SocketAddr) {
    let config = dir.join("prometheus.yml");
    let auth = bearer
        .map(|k| format!("    authorization:\n      credentials: {k}\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: driftdb\n    scrape_interval: 1s\n{auth}    static_configs:\n      - targets: ['{driftdb}']\n\
             remote_read:\n  - url: http://{driftdb}/api/v1/read\n    read_recent: true\n    remote_timeout: 30s\n{auth}"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(binary("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut p = Running { child, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!("prometheus exited ({status}):\n{}", p.log());
        }
        if let Ok(Ok(mut c)) =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = c
                .write_all(b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            let _ = c.read_to_end(&mut buf).await;
            if buf.starts_with(b"HTTP/1.1 200") {
                return (p, addr);
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 60 s:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prometheus' answer to a form POST; asserts success.
pub(crate) async fn prom(addr: SocketAddr, path: &str, params: &[(&str, &str)]) -> Value {
    let r = post_form(addr, path, params).await;
    assert_eq!(r.status, 200, "{path} {params:?}: {}", r.text());
    let j = r.json();
    assert_eq!(j["status"], "success", "{j}");
    j
}

pub(crate) fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// A result as sorted `(labels, [(time ms, value)])`.
fn series_of(data: &Value) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut out: Vec<(String, Vec<(i64, f64)>)> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points: Vec<&Value> = match s.get("values") {
                Some(v) => v.as_array().unwrap().iter().collect(),
                None => vec![&s["value"]],
            };
            (
                s["metric"].to_string(),
                points
                    .iter()
                    .map(|p| {
                        (
                            (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                            p[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Samples backfilled into Prometheus' TSDB before it starts: timestamps (whole seconds, so
/// the text format carries them exactly) whose delta-of-deltas fall in every bucket of the XOR
/// encoding, values whose XORs take every path.
fn backfill_samples(base_s: i64) -> Vec<(&'static str, Vec<(i64, f64)>)> {
    let mut regular = Vec::new();
    let mut irregular = Vec::new();
    let mut flat = Vec::new();
    let mut t = base_s;
    let jumps = [
        15, 15, 16, 15, 22, 15, 90, 15, 600, 15, 15, 1300, 15, 14, 15,
    ];
    // Everything stays more than an hour in the past, or Prometheus' head would refuse the
    // samples it scrapes now as out of bounds.
    for i in 0..400i64 {
        regular.push(((base_s + 15 * i) * 1000, (i as f64 * 0.37).sin() * 1e3));
        flat.push(((base_s + 30 * i) * 1000, 42.5));
        if i >= 100 {
            continue;
        }
        t += jumps[i as usize % jumps.len()];
        let v = match i % 5 {
            0 => i as f64,
            1 => -0.001 * i as f64,
            2 => 1e300 / (i + 1) as f64,
            3 => 0.0,
            _ => 123_456.789,
        };
        irregular.push((t * 1000, v));
    }
    vec![
        ("flat", flat),
        ("irregular", irregular),
        ("regular", regular),
    ]
}

fn write_openmetrics(path: &Path, series: &[(&str, Vec<(i64, f64)>)]) {
    let mut f = std::fs::File::create(path).unwrap();
    writeln!(f, "# TYPE xor_check gauge").unwrap();
    for (case, samples) in series {
        for (t, v) in samples {
            writeln!(f, "xor_check{{case=\"{case}\"}} {v:?} {}", t / 1000).unwrap();
        }
    }
    writeln!(f, "# EOF").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_driftdb_through_remote_read() {
    let mut s = fixture::loaded().await;
    let driftdb = s.running.as_ref().unwrap().bound.http;
    let dir = tempfile::tempdir().unwrap();

    // Backfill the XOR test series with promtool into the TSDB Prometheus will open.
    // The real time: Prometheus scrapes and keeps samples near its own wall clock.
    let now_s = driftdb_engine::time::Clock::now(&driftdb_engine::time::SystemClock).0 / 1000;
    let base_s = (now_s - 5 * 3600) / 7200 * 7200;
    let backfill = backfill_samples(base_s);
    let om = dir.path().join("backfill.om");
    write_openmetrics(&om, &backfill);
    let out = Command::new(binary("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(dir.path().join("tsdb"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let (p, addr) = start_prometheus(dir.path(), driftdb, None).await;

    // 1. Drift values through Prometheus equal DriftQL's.
    let q = r#"driftdb_psi{model="shop", feature="amount"}"#;
    let j = prom(
        addr,
        "/api/v1/query_range",
        &[
            ("query", q),
            ("start", &secs(start())),
            ("end", &secs(end())),
            ("step", "900"),
        ],
    )
    .await;
    assert!(j.get("warnings").is_none(), "{j}");
    let got = series_of(&j["data"]);
    assert_eq!(got.len(), 3, "{j}");
    let range = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z step 15m";
    let overall = expected_samples(
        &driftql(&mut s, &format!("psi(shop.amount) {range}")).await,
        None,
    );
    let by_region = expected_samples(
        &driftql(&mut s, &format!("psi(shop.amount) {range} by region")).await,
        Some("region"),
    );
    for (labels, points) in &got {
        let region = serde_json::from_str::<Value>(labels).unwrap()["region"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let want: Vec<(i64, f64)> = overall
            .iter()
            .chain(&by_region)
            .filter(|w| w.1 == region)
            .map(|w| (w.0, w.2))
            .collect();
        assert_eq!(want.len(), fixture::WINDOWS as usize);
        assert_eq!(points.len(), want.len(), "{labels}");
        for (g, w) in points.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{labels}");
            assert_eq!(g.1.to_bits(), w.1.to_bits(), "{labels} at {}", g.0);
        }
    }

    // 2. Dashboard queries: the same answer through Prometheus as from driftdb itself.
    let mut compared = 0;
    let mut selfmon = Vec::new();
    for (name, d) in dashboards() {
        let vars = resolve_vars(driftdb, &name, &d).await;
        for t in targets(&name, &d) {
            if t.selfmon {
                selfmon.push(t);
                continue;
            }
            let expr = interpolate(&t.expr, &vars);
            let (ours, theirs) = if t.instant {
                let ours = query_at(driftdb, &expr, end()).await;
                let theirs = prom(
                    addr,
                    "/api/v1/query",
                    &[("query", &expr), ("time", &secs(end()))],
                )
                .await;
                (ours, theirs)
            } else {
                let ours = query_range(driftdb, &expr, start(), end(), 900).await;
                let theirs = prom(
                    addr,
                    "/api/v1/query_range",
                    &[
                        ("query", &expr),
                        ("start", &secs(start())),
                        ("end", &secs(end())),
                        ("step", "900"),
                    ],
                )
                .await;
                (ours, theirs)
            };
            assert!(theirs.get("warnings").is_none(), "{}: {theirs}", t.title);
            assert_eq!(
                ours["resultType"], theirs["data"]["resultType"],
                "{}",
                t.title
            );
            let (a, b) = (series_of(&ours), series_of(&theirs["data"]));
            assert!(!a.is_empty(), "{} / {}: empty", t.dashboard, t.title);
            assert_eq!(
                a.iter().map(|x| &x.0).collect::<Vec<_>>(),
                b.iter().map(|x| &x.0).collect::<Vec<_>>(),
                "{} / {}: {expr}",
                t.dashboard,
                t.title
            );
            for ((l, pa), (_, pb)) in a.iter().zip(&b) {
                assert_eq!(pa.len(), pb.len(), "{}: {l}", t.title);
                for (x, y) in pa.iter().zip(pb) {
                    assert_eq!(x.0, y.0, "{}: {l}", t.title);
                    // Prometheus sums and averages incrementally: allow float rounding.
                    assert!(
                        (x.1 - y.1).abs() <= 1e-12 * x.1.abs().max(1.0),
                        "{}: {l} at {}: {} vs {}",
                        t.title,
                        x.0,
                        x.1,
                        y.1
                    );
                }
            }
            compared += 1;
        }
    }
    assert!(compared >= 20, "{compared}");

    // Self-monitoring panels through the scrape of /metrics (rates need two scrapes).
    let vars = vec![("__rate_interval".to_string(), "1m".to_string())];
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in &selfmon {
        if metric_names(&t.expr)
            .iter()
            .any(|m| PENDING_RULES_METRICS.contains(&m.as_str()))
        {
            continue;
        }
        let expr = interpolate(&t.expr, &vars);
        loop {
            let j = prom(addr, "/api/v1/query", &[("query", &expr)]).await;
            if !j["data"]["result"].as_array().unwrap().is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} / {}: {expr} returned nothing:\n{}",
                t.dashboard,
                t.title,
                p.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // 3. XOR chunks as Prometheus' own remote-read server streams them.
    let req = pp::ReadRequest {
        queries: vec![pp::Query {
            start_timestamp_ms: (base_s - 3600) * 1000,
            end_timestamp_ms: (now_s + 60) * 1000,
            matchers: vec![eq("__name__", "xor_check")],
            hints: None,
        }],
        accepted_response_types: vec![pp::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let r = super::remote_read::read(addr, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let frames = decode_frames(&r.body);
    let mut decoded: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
    let mut chunks = 0;
    for f in &frames {
        for cs in &f.chunked_series {
            let case = label(&cs.labels, "case").to_string();
            if decoded.last().is_none_or(|d| d.0 != case) {
                decoded.push((case.clone(), Vec::new()));
            }
            for c in &cs.chunks {
                assert_eq!(c.r#type, pp::chunk::Encoding::Xor as i32);
                let samples = driftdb_prom::xor::decode(&c.data).unwrap();
                assert_eq!(
                    driftdb_prom::xor::encode(&samples),
                    c.data,
                    "{case}: re-encoding a Prometheus chunk of {} samples",
                    samples.len()
                );
                decoded.last_mut().unwrap().1.extend(samples);
                chunks += 1;
            }
        }
    }
    assert!(chunks >= 10, "{chunks} chunks");
    assert_eq!(decoded.len(), backfill.len());
    for ((case, got), (want_case, want)) in decoded.iter().zip(&backfill) {
        assert_eq!(case, want_case);
        assert_eq!(got.len(), want.len(), "{case}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.0, w.0, "{case}");
            assert_eq!(g.1.to_bits(), w.1.to_bits(), "{case} at {}", g.0);
        }
    }

    // Prometheus' series API reaches remote read with a ±9.2e18 ms range when given no times.
    let j = prom(
        addr,
        "/api/v1/series",
        &[("match[]", r#"driftdb_ks{model="shop", feature="tenure"}"#)],
    )
    .await;
    let regions: Vec<&str> = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["region"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(regions, ["eu", "us", ""], "{j}");

    // 4a. driftdb refuses a query (a pattern over its 4 KiB limit, valid for Prometheus): the
    // refusal is a warning, the query still succeeds.
    let long = format!(
        r#"driftdb_psi{{model="shop", feature=~"amount|{}"}}"#,
        (0..800)
            .map(|i| format!("f{i:05}"))
            .collect::<Vec<_>>()
            .join("|")
    );
    let j = prom(
        addr,
        "/api/v1/query_range",
        &[
            ("query", &long),
            ("start", &secs(start())),
            ("end", &secs(end())),
            ("step", "900"),
        ],
    )
    .await;
    let w = j["warnings"].to_string();
    assert!(w.contains("longer than 4096 bytes"), "{j}");

    // 4b. driftdb down: Prometheus answers from its own TSDB and warns.
    s.running.take().unwrap().shutdown().await.unwrap();
    let j = prom(
        addr,
        "/api/v1/query_range",
        &[
            ("query", q),
            ("start", &secs(start())),
            ("end", &secs(end())),
            ("step", "900"),
        ],
    )
    .await;
    assert_eq!(j["data"]["result"], serde_json::json!([]));
    let w = j["warnings"].to_string();
    assert!(
        w.contains(&driftdb.to_string()) || w.contains("refused"),
        "{j}"
    );
    drop(p);
}
