//! `driftdb bench checkpoint` (BENCHMARKS.md, "Checkpoints and handover"): what it costs to
//! checkpoint a node's store to an object store (a local directory) and to take it over on an
//! empty data directory.
//!
//! An embedded node on a temp dir gets `models` models of `features` numeric features and
//! `hours` of 15-minute windows of `values` rows each, folded by the engine and written as
//! ingest writes them; the store is settled. Then, timed:
//! 1. the first checkpoint (every file uploaded);
//! 2. one more window for every model, and the next checkpoint (only the files written since);
//! 3. the restore of the newest checkpoint into an empty directory (download, SHA-256 check);
//! 4. opening a node on it (what `serve` does next) and one query answered from it.
//!
//! Restore + open is the handover time before the replay of what came after the checkpoint,
//! which runs at the ingest rate.

use std::time::Instant;

use clap::Args;
use driftdb_engine::ingest::NoBaselines;
use driftdb_engine::time::{Clock, ManualClock, Timestamp};
use driftdb_server::auth::Principal;
use driftdb_server::checkpoint::Checkpoints;
use driftdb_server::node::Node;

use crate::bench_alerts::{engine_batch, fleet_model, open_fleet};
use crate::bench_report::fold_window;
use crate::error::{Error, Result};
use crate::output;
use crate::rng::{SplitMix as Rng, peak_rss_mib};

/// Options of `driftdb bench checkpoint`.
#[derive(Debug, Args, Clone)]
pub struct CheckpointBenchArgs {
    /// Models in the store.
    #[arg(long, default_value_t = 20)]
    pub models: usize,
    /// Numeric features per model.
    #[arg(long, default_value_t = 500)]
    pub features: usize,
    /// Hours of 15-minute windows in the store.
    #[arg(long, default_value_t = 24)]
    pub hours: usize,
    /// Rows per model and window.
    #[arg(long, default_value_t = 100)]
    pub values: usize,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

const T0: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Runs `driftdb bench checkpoint`.
pub async fn checkpoint(a: CheckpointBenchArgs) -> Result<()> {
    if a.models == 0 || a.features == 0 || a.hours == 0 || a.values == 0 {
        return Err(Error::Invalid(
            "models, features, hours and values must be positive".into(),
        ));
    }
    let tmp = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
    let (data, objects, restored) = (
        tmp.path().join("data"),
        tmp.path().join("objects"),
        tmp.path().join("restored"),
    );
    let windows = a.hours * 4;
    let clock = ManualClock::new(Timestamp(T0 + (windows as i64 + 2) * 900_000));
    let node = open_fleet(&data, &clock)?;
    let setup = Instant::now();
    let (n2, a2) = (node.clone(), a.clone());
    tokio::task::spawn_blocking(move || load(&n2, &a2, 0..windows))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    node.store.settle()?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let series_windows = (a.models * (a.features + 1) * windows) as u64;

    let url = format!("file://{}", objects.display());
    let cps = Checkpoints::open(&url, 4, None, data.join(".checkpoint-work"))?;
    let now = clock.now().millis();
    let t = Instant::now();
    let full = cps.save(&node.store, now).await?;
    let full_secs = t.elapsed().as_secs_f64();

    // One more window for every model: what a 15-minute checkpoint uploads.
    let (n2, a2) = (node.clone(), a.clone());
    tokio::task::spawn_blocking(move || load(&n2, &a2, windows..windows + 1))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let t = Instant::now();
    let next = cps.save(&node.store, now + 1).await?;
    let next_secs = t.elapsed().as_secs_f64();
    drop(node);

    let t = Instant::now();
    let r = cps
        .restore(&restored)
        .await?
        .ok_or_else(|| Error::Internal("no checkpoint to restore".into()))?;
    let restore_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let taken = open_fleet(&restored, &clock)?;
    let open_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let out = taken
        .query(
            &Principal::unrestricted(),
            format!(
                "count(m0.f000) from {} to {}",
                Timestamp(T0).to_rfc3339(),
                Timestamp(T0 + (windows as i64 + 1) * 900_000).to_rfc3339()
            ),
        )
        .await?;
    let query_ms = t.elapsed().as_secs_f64() * 1e3;
    let counted = out.table.to_json()[0]["value"].as_f64().unwrap_or(f64::NAN);
    let want = ((windows + 1) * a.values) as f64;
    if (counted - want).abs() > 0.5 {
        return Err(Error::Internal(format!(
            "the restored store counts {counted} rows of m0.f000, the loaded one {want}"
        )));
    }
    let handover = restore_secs + open_secs;
    if a.json {
        output::line(
            &serde_json::json!({
                "models": a.models, "features": a.features, "windows": windows,
                "values": a.values, "series_windows": series_windows,
                "store_bytes": full.bytes, "files": full.files,
                "full_save_seconds": full_secs, "full_save_mb_per_s": mb(full.bytes) / full_secs,
                "next_save_seconds": next_secs, "next_uploaded_bytes": next.uploaded_bytes,
                "next_bytes": next.bytes,
                "restore_seconds": restore_secs, "restore_mb_per_s": mb(r.bytes) / restore_secs,
                "open_seconds": open_secs, "first_query_ms": query_ms,
                "handover_seconds": handover, "setup_seconds": setup_secs,
                "peak_rss_mib": peak_rss_mib(),
            })
            .to_string(),
        );
    } else {
        output::line(&format!(
            "store of {} models × {} features × {windows} windows ({series_windows} series-windows): {:.1} MB in {} files (setup {setup_secs:.1} s)",
            a.models,
            a.features,
            mb(full.bytes),
            full.files
        ));
        output::line(&format!(
            "  first checkpoint {full_secs:.2} s ({:.0} MB/s); after one more window {next_secs:.2} s, uploading {:.1} MB of {:.1} MB",
            mb(full.bytes) / full_secs,
            mb(next.uploaded_bytes),
            mb(next.bytes)
        ));
        output::line(&format!(
            "  restore {restore_secs:.2} s ({:.0} MB/s, checked) + open {open_secs:.2} s = handover {handover:.2} s before the replay; first query {query_ms:.0} ms",
            mb(r.bytes) / restore_secs
        ));
    }
    Ok(())
}

/// Folds windows `range` of every model into the store, as ingest writes them.
fn load(node: &Node, a: &CheckpointBenchArgs, range: std::ops::Range<usize>) -> Result<()> {
    let mut rng = Rng(0xc4ec7 + range.start as u64);
    for m in 0..a.models {
        let def = fleet_model(&format!("m{m}"), a.features);
        if node.registry.get(&def.id).is_err() {
            node.registry.create(def.clone())?;
        }
        for w in range.clone() {
            let start = T0 + w as i64 * 900_000;
            let batch = engine_batch(&def, &mut rng, a.values, Timestamp(start + 60_000), 0.0);
            node.store.write(&fold_window(&def, &batch, &NoBaselines))?;
        }
    }
    Ok(())
}
