//! `driftdb demo` as a newcomer runs it: the built binary, no server, no setup. It must finish
//! on its own, exit 0, and show the drift, the root cause and every alert of its scenario.

use std::process::Command;

#[test]
fn demo_shows_drift_explain_and_alerts_then_exits() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["demo", "--windows", "12", "--rows", "1500", "--data"])
        .arg(data.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let has = |s: &str| assert!(stdout.contains(s), "missing {s:?} in:\n{stdout}");
    // Input drift fires on the two drifted inputs only, after 2 windows (windows 5 and 6).
    has("FIRING   high     input-drift: psi of amount on fraud@v1 [all]");
    has("FIRING   high     input-drift: psi of merchant_category on fraud@v1 [all]");
    assert!(
        !stdout.contains("input-drift: psi of hour_of_day"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("input-drift: psi of account_age_days"),
        "{stdout}"
    );
    // Calibration breaks in apac only, pages, triggers retraining, then resolves.
    has("FIRING   critical calibration: ece of $score on fraud@v1 [region=apac]");
    has("RESOLVED critical Resolved calibration: ece of $score on fraud@v1 [region=apac]");
    assert!(!stdout.contains("calibration: ece of $score on fraud@v1 [region=eu]"));
    assert!(!stdout.contains("calibration: ece of $score on fraud@v1 [region=us]"));
    has("webhook received → PagerDuty trigger");
    has("webhook received → PagerDuty resolve");
    has("webhook received → retraining pipeline triggered for fraud");
    has("webhook received → Slack message: input-drift");
    // The tables: drift per feature, and explain naming the miscalibrated region.
    has("$ driftdb query 'psi(fraud.*)");
    has("$ driftdb query 'explain(fraud)");
    has("drifted: psi");
    has("critical calibration  fraud@v1.$score [region=apac]");
    has("[pagerduty delivered, retrain delivered, pagerduty delivered]");
    has("high     input-drift  fraud@v1.amount [all]  psi = ");
    // The demo's data went where it was told.
    assert!(data.path().join("CURRENT").exists());
}
