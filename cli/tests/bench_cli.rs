//! `driftdb bench checkpoint` at a small size: it runs, and what it reports adds up (the bench
//! itself refuses to report when the restored store counts other rows than the loaded one).

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_checkpoint_reports_a_restorable_store_and_a_smaller_second_upload() {
    let out = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["bench", "checkpoint", "--models", "2", "--features", "20"])
        .args(["--hours", "2", "--values", "40", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["windows"], 8);
    assert_eq!(v["series_windows"], 2 * 21 * 8);
    let (bytes, next_uploaded, next_bytes) = (
        v["store_bytes"].as_u64().unwrap(),
        v["next_uploaded_bytes"].as_u64().unwrap(),
        v["next_bytes"].as_u64().unwrap(),
    );
    assert!(bytes > 0 && next_bytes > 0);
    assert!(
        next_uploaded > 0 && next_uploaded < next_bytes,
        "the second checkpoint uploaded {next_uploaded} of {next_bytes} bytes"
    );
    for k in [
        "full_save_seconds",
        "restore_seconds",
        "open_seconds",
        "handover_seconds",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
}
