//! A real Prometheus (Debian's package) reading driftdb through remote read with a team's key
//! in its `authorization` settings: it gets that team's series and no other; without a key it
//! gets none.

use std::collections::BTreeSet;

use driftdb_server::auth::Scope;
use serde_json::Value;

use super::fixture::{SecureServer, t0};
use crate::prom::prometheus::{prom, secs, start_prometheus};

fn models(j: &Value) -> BTreeSet<String> {
    j["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["model"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_reads_with_a_team_key_and_sees_its_team_only() {
    let s = SecureServer::start().await;
    let range = [
        ("query", "driftdb_rows".to_string()),
        ("start", secs(t0().0)),
        ("end", secs(t0().0 + 3_600_000)),
        ("step", "900".to_string()),
    ];
    let params: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let dir = tempfile::tempdir().unwrap();
    let key = s.keys.alpha_only(Scope::Read).to_string();
    let (p, addr) = start_prometheus(dir.path(), s.http(), Some(&key)).await;
    let j = prom(addr, "/api/v1/query_range", &params).await;
    assert!(j.get("warnings").is_none(), "{j}");
    assert_eq!(models(&j), BTreeSet::from(["alpha_m".to_string()]), "{j}");
    drop(p);

    let dir = tempfile::tempdir().unwrap();
    let (p, addr) = start_prometheus(dir.path(), s.http(), None).await;
    let j = prom(addr, "/api/v1/query_range", &params).await;
    assert!(models(&j).is_empty(), "{j}");
    assert!(j["warnings"].to_string().contains("401"), "{j}");
    drop(p);
    s.stop().await;
}
