//! `POST /api/v1/read` against a real server: SAMPLES and STREAMED_XOR_CHUNKS answers decoded
//! independently here (snappy, protobuf, frame lengths and CRC-32C), every value compared with
//! what DriftQL returns for the same window, matchers of all four kinds, several queries per
//! request, headers, closed windows only, and errors.

use std::net::SocketAddr;

use driftdb_proto::prometheus as pp;
use prost::Message;

use super::fixture::{self, WIDTH, driftql, end, expected_samples, start};
use super::http::{Response, request};

pub fn matcher(t: pp::label_matcher::Type, name: &str, value: &str) -> pp::LabelMatcher {
    pp::LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

pub fn eq(name: &str, value: &str) -> pp::LabelMatcher {
    matcher(pp::label_matcher::Type::Eq, name, value)
}

fn query(from: i64, to: i64, matchers: Vec<pp::LabelMatcher>) -> pp::Query {
    pp::Query {
        start_timestamp_ms: from,
        end_timestamp_ms: to,
        matchers,
        hints: Some(pp::ReadHints {
            step_ms: 15_000,
            func: "avg_over_time".into(),
            start_ms: from,
            end_ms: to,
            ..Default::default()
        }),
    }
}

/// POSTs a read request the way Prometheus does.
pub async fn read(addr: SocketAddr, req: &pp::ReadRequest) -> Response {
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap();
    request(
        addr,
        "POST",
        "/api/v1/read",
        &[
            ("Content-Encoding", "snappy"),
            ("Accept-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Read-Version", "0.1.0"),
        ],
        &body,
    )
    .await
}

pub fn decode_samples(r: &Response) -> pp::ReadResponse {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
    pp::ReadResponse::decode(raw.as_slice()).unwrap()
}

/// Splits a streamed body into frames, checking every length and CRC-32C.
pub fn decode_frames(mut body: &[u8]) -> Vec<pp::ChunkedReadResponse> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let b = body[0];
            body = &body[1..];
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let len = len as usize;
        let crc = u32::from_be_bytes(body[..4].try_into().unwrap());
        let msg = &body[4..4 + len];
        assert_eq!(crc32c::crc32c(msg), crc, "frame {} checksum", out.len());
        out.push(pp::ChunkedReadResponse::decode(msg).unwrap());
        body = &body[4 + len..];
    }
    out
}

pub fn label<'a>(labels: &'a [pp::Label], name: &str) -> &'a str {
    labels
        .iter()
        .find(|l| l.name == name)
        .map_or("", |l| l.value.as_str())
}

/// The samples of a query result as `(time, region label, value)`, sorted like
/// [`expected_samples`].
fn flatten(r: &pp::QueryResult) -> Vec<(i64, String, f64)> {
    let mut out = Vec::new();
    for ts in &r.timeseries {
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted, "labels sorted and unique");
        assert!(
            ts.samples
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp),
            "samples ascending"
        );
        for s in &ts.samples {
            out.push((
                s.timestamp,
                label(&ts.labels, "region").to_string(),
                s.value,
            ));
        }
    }
    out.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    out
}

fn same(got: &[(i64, String, f64)], want: &[(i64, String, f64)], what: &str) {
    assert!(!want.is_empty(), "{what}: DriftQL returned nothing");
    assert_eq!(got.len(), want.len(), "{what}: {got:?}\nvs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, &g.1), (w.0, &w.1), "{what}");
        assert_eq!(g.2.to_bits(), w.2.to_bits(), "{what} at {} {}", g.0, g.1);
    }
}

/// The request of the SAMPLES and STREAMED tests: four queries, every matcher type.
fn four_queries() -> Vec<pp::Query> {
    use pp::label_matcher::Type::{Neq, Nre, Re};
    vec![
        query(
            start(),
            end(),
            vec![
                eq("__name__", "driftdb_psi"),
                eq("model", "shop"),
                eq("feature", "amount"),
            ],
        ),
        query(
            start(),
            end(),
            vec![
                matcher(Re, "__name__", "driftdb_(auc|ece)"),
                eq("model", "shop"),
                matcher(Neq, "region", ""),
            ],
        ),
        query(
            start(),
            end(),
            vec![
                eq("__name__", "driftdb_quantile"),
                eq("quantile", "0.99"),
                matcher(Re, "region", "e."),
            ],
        ),
        query(
            start() - 3_600_000,
            end() + 3_600_000,
            vec![
                eq("__name__", "driftdb_ks"),
                eq("model", "shop"),
                matcher(Nre, "feature", "amount|\\$score"),
                eq("region", ""),
            ],
        ),
    ]
}

const RANGE: &str = "from 2026-03-01T00:00:00Z to 2026-03-01T02:00:00Z step 15m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_read_samples_equal_driftql() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;

    let req = pp::ReadRequest {
        queries: four_queries(),
        accepted_response_types: vec![],
    };
    let resp = decode_samples(&read(addr, &req).await);
    assert_eq!(resp.results.len(), 4, "one result per query, in order");

    // 1: PSI of amount, overall and per region.
    // Series sort by their label pairs, as Prometheus' labels.Compare does: at the fourth
    // pair ("region", ...) sorts before ("version", ...), so the segments come first.
    let r = &resp.results[0];
    assert_eq!(r.timeseries.len(), 3);
    assert_eq!(label(&r.timeseries[0].labels, "region"), "eu");
    assert_eq!(label(&r.timeseries[1].labels, "region"), "us");
    let l = &r.timeseries[2].labels;
    let names: Vec<&str> = l.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "feature", "model", "version"]);
    assert_eq!(label(l, "version"), "v1");
    assert_eq!(r.timeseries[2].samples.len(), fixture::WINDOWS as usize);
    assert_eq!(r.timeseries[2].samples[0].timestamp, start() + WIDTH);
    let mut want = expected_samples(
        &driftql(&mut s, &format!("psi(shop.amount) {RANGE}")).await,
        None,
    );
    want.extend(expected_samples(
        &driftql(&mut s, &format!("psi(shop.amount) {RANGE} by region")).await,
        Some("region"),
    ));
    want.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    same(&flatten(r), &want, "psi(shop.amount)");
    // The drift is real and grows.
    let overall: Vec<f64> = r.timeseries[2].samples.iter().map(|s| s.value).collect();
    assert!(overall[7] > overall[0] && overall[7] > 0.2, "{overall:?}");

    // 2: AUC and ECE per region, not overall.
    let r = &resp.results[1];
    assert_eq!(r.timeseries.len(), 4);
    for (i, (name, region)) in [
        ("driftdb_auc", "eu"),
        ("driftdb_auc", "us"),
        ("driftdb_ece", "eu"),
        ("driftdb_ece", "us"),
    ]
    .iter()
    .enumerate()
    {
        let ts = &r.timeseries[i];
        assert_eq!(label(&ts.labels, "__name__"), *name);
        assert_eq!(label(&ts.labels, "region"), *region);
        assert_eq!(label(&ts.labels, "feature"), "$score");
        let metric = name.trim_start_matches("driftdb_");
        let t = driftql(
            &mut s,
            &format!("{metric}(shop) {RANGE} where region = \"{region}\""),
        )
        .await;
        let got = flatten(&pp::QueryResult {
            timeseries: vec![ts.clone()],
        });
        same(&got, &expected_samples(&t, Some("region")), name);
    }

    // 3: p99 latency of the regions matching e. (only eu), any model with latency.
    let r = &resp.results[2];
    assert_eq!(r.timeseries.len(), 1);
    assert_eq!(label(&r.timeseries[0].labels, "quantile"), "0.99");
    assert_eq!(label(&r.timeseries[0].labels, "feature"), "$latency");
    let t = driftql(
        &mut s,
        &format!("quantile(0.99, shop.$latency) {RANGE} where region = \"eu\""),
    )
    .await;
    same(&flatten(r), &expected_samples(&t, Some("region")), "p99");

    // 4: KS of every numeric feature but amount and $score, overall only: tenure. The range
    // reaches past the data on both sides.
    let r = &resp.results[3];
    assert_eq!(r.timeseries.len(), 1);
    assert_eq!(label(&r.timeseries[0].labels, "feature"), "tenure");
    let t = driftql(&mut s, &format!("ks(shop.tenure) {RANGE}")).await;
    same(&flatten(r), &expected_samples(&t, None), "ks(shop.tenure)");

    // Ranges are inclusive: (start + 15m, start + 30m] holds exactly one window end.
    let req = pp::ReadRequest {
        queries: vec![query(
            start() + WIDTH + 1,
            start() + 2 * WIDTH,
            vec![
                eq("__name__", "driftdb_rows"),
                eq("model", "recs"),
                eq("region", ""),
            ],
        )],
        accepted_response_types: vec![0],
    };
    let resp = decode_samples(&read(addr, &req).await);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 1);
    assert_eq!(
        ts[0].samples,
        vec![pp::Sample {
            value: 120.0,
            timestamp: start() + 2 * WIDTH
        }]
    );

    // Nothing matches: an empty result, still one per query.
    let req = pp::ReadRequest {
        queries: vec![query(start(), end(), vec![eq("__name__", "up")])],
        accepted_response_types: vec![],
    };
    let resp = decode_samples(&read(addr, &req).await);
    assert_eq!(resp.results.len(), 1);
    assert!(resp.results[0].timeseries.is_empty());

    s.running.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_read_streamed_chunks_decode_to_the_samples() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;
    let samples = decode_samples(
        &read(
            addr,
            &pp::ReadRequest {
                queries: four_queries(),
                accepted_response_types: vec![0],
            },
        )
        .await,
    );
    // Prometheus 2.55+ asks for [STREAMED_XOR_CHUNKS, SAMPLES].
    let r = read(
        addr,
        &pp::ReadRequest {
            queries: four_queries(),
            accepted_response_types: vec![1, 0],
        },
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse")
    );
    assert_eq!(r.header("content-encoding"), None);
    let frames = decode_frames(&r.body);
    // Rebuild the per-query series from the frames: a series never resumes after another one
    // started, and queries come in order.
    let mut rebuilt: Vec<Vec<pp::TimeSeries>> = vec![Vec::new(); 4];
    let mut last_query = 0;
    for f in &frames {
        assert!(f.query_index >= last_query, "queries in order");
        last_query = f.query_index;
        for cs in &f.chunked_series {
            let series = &mut rebuilt[f.query_index as usize];
            let same_as_last = series.last().is_some_and(|l| l.labels == cs.labels);
            if !same_as_last {
                assert!(
                    series.iter().all(|l| l.labels != cs.labels),
                    "series resumed after another one"
                );
                series.push(pp::TimeSeries {
                    labels: cs.labels.clone(),
                    ..Default::default()
                });
            }
            let dst = series.last_mut().unwrap();
            for c in &cs.chunks {
                assert_eq!(c.r#type, pp::chunk::Encoding::Xor as i32);
                let decoded = driftdb_prom::xor::decode(&c.data).unwrap();
                assert!(decoded.len() <= 120);
                assert_eq!(decoded.first().unwrap().0, c.min_time_ms);
                assert_eq!(decoded.last().unwrap().0, c.max_time_ms);
                dst.samples
                    .extend(decoded.into_iter().map(|(t, v)| pp::Sample {
                        value: v,
                        timestamp: t,
                    }));
            }
        }
    }
    for (qi, series) in rebuilt.iter().enumerate() {
        let labels: Vec<_> = series.iter().map(|s| s.labels.clone()).collect();
        let mut sorted = labels.clone();
        sorted.sort_by(|a, b| {
            let key = |l: &Vec<pp::Label>| {
                l.iter()
                    .map(|x| (x.name.clone(), x.value.clone()))
                    .collect::<Vec<_>>()
            };
            key(a).cmp(&key(b))
        });
        assert_eq!(labels, sorted, "query {qi}: series in label order");
        assert_eq!(series, &samples.results[qi].timeseries, "query {qi}");
    }
    assert_eq!(rebuilt.iter().map(Vec::len).sum::<usize>(), 9);

    // Only STREAMED accepted: still streamed.
    let r = read(
        addr,
        &pp::ReadRequest {
            queries: four_queries(),
            accepted_response_types: vec![1],
        },
    )
    .await;
    assert_eq!(decode_frames(&r.body).len(), frames.len());
    s.running.take().unwrap().shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_read_serves_closed_windows_and_refuses_bad_requests() {
    let mut s = fixture::loaded().await;
    let addr = s.running.as_ref().unwrap().bound.http;
    let rows = |from: i64, to: i64| pp::ReadRequest {
        queries: vec![query(
            from,
            to,
            vec![
                eq("__name__", "driftdb_rows"),
                eq("model", "shop"),
                eq("region", ""),
            ],
        )],
        accepted_response_types: vec![],
    };

    // At 01:10 the window [00:45, 01:00) is past its 5-minute grace, [01:00, 01:15) is open.
    s.clock.set(driftdb_engine::time::Timestamp(
        start() + 4 * WIDTH + 600_000,
    ));
    let resp = decode_samples(&read(addr, &rows(start(), end())).await);
    let times: Vec<i64> = resp.results[0].timeseries[0]
        .samples
        .iter()
        .map(|s| s.timestamp)
        .collect();
    assert_eq!(
        times,
        (1..=4).map(|k| start() + k * WIDTH).collect::<Vec<_>>()
    );
    // At 01:04 the window ending at 01:00 is still in its grace period.
    s.clock.set(driftdb_engine::time::Timestamp(
        start() + 4 * WIDTH + 240_000,
    ));
    let resp = decode_samples(&read(addr, &rows(start(), end())).await);
    assert_eq!(resp.results[0].timeseries[0].samples.len(), 3);
    s.clock
        .set(driftdb_engine::time::Timestamp(start() + 86_400_000));

    // The series API's ±9.2e18 ms range: clamped to retention and now, not an overflow.
    let resp = decode_samples(&read(addr, &rows(i64::MIN + 1, i64::MAX)).await);
    assert_eq!(
        resp.results[0].timeseries[0].samples.len(),
        fixture::WINDOWS as usize
    );

    // Errors are a status and a text body (Prometheus shows the text as a warning).
    let r = request(addr, "POST", "/api/v1/read", &[], b"definitely not snappy").await;
    assert_eq!(r.status, 400);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text().contains("snappy"), "{}", r.text());

    let mut bad = rows(start(), end());
    bad.accepted_response_types = vec![7];
    let r = read(addr, &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("response type"), "{}", r.text());

    let mut bad = rows(start(), end());
    bad.queries[0]
        .matchers
        .push(matcher(pp::label_matcher::Type::Re, "feature", "(unclosed"));
    let r = read(addr, &bad).await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("invalid regular expression"),
        "{}",
        r.text()
    );

    let not_protobuf = snap::raw::Encoder::new()
        .compress_vec(b"\xff\xff\xff\xff")
        .unwrap();
    let r = request(addr, "POST", "/api/v1/read", &[], &not_protobuf).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("ReadRequest"), "{}", r.text());
    s.running.take().unwrap().shutdown().await.unwrap();
}
