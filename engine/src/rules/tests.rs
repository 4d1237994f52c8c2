use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::codec::{open, seal};
use crate::error::Error;
use crate::model::ModelDef;
use crate::time::Timestamp;

const T0: i64 = 1_772_323_200_000; // 2026-03-01T00:00:00Z
const W: i64 = 900_000; // 15 minutes

fn w(i: i64) -> Timestamp {
    Timestamp(T0 + i * W)
}

fn base_rule() -> Value {
    json!({
        "id": "fraud-auc-drop",
        "model": "fraud",
        "selector": "$performance",
        "metric": "auc",
        "comparison": "<",
        "threshold": {"relative": -0.05},
        "consecutive": 3,
        "segment": {"each": "region"},
        "severity": "high",
        "cooldown": "1h",
        "actions": [
            {"kind": "pagerduty", "routing_key": "R0UT1NGKEY"},
            {"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/XYZ"}
        ]
    })
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
    v
}

fn err_of(v: &Value) -> (String, String) {
    let e = RuleDef::from_value(v).expect_err("rule should be rejected");
    (e.field, e.reason)
}

fn check_lt(bound: f64, n: u32) -> Check {
    Check {
        comparison: Comparison::Lt,
        threshold: Threshold::Absolute(bound),
        consecutive: n,
        cooldown_ms: 0,
    }
}

/// Runs values through a fresh state on consecutive windows; returns (window index, transition
/// kind) pairs.
fn run(check: &Check, values: &[Option<f64>]) -> (AlertState, Vec<(usize, &'static str)>) {
    let mut s = AlertState::new();
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(t) = s.step(check, w(i as i64), *v, None) {
            out.push((
                i,
                match t {
                    Transition::Fired { .. } => "fired",
                    Transition::Resolved { .. } => "resolved",
                },
            ));
        }
    }
    (s, out)
}

const B: Option<f64> = Some(0.1); // breaches `< 0.5`
const H: Option<f64> = Some(0.9); // healthy
const N: Option<f64> = None; // no data

// ---------------------------------------------------------------- definitions and validation

#[test]
fn valid_rules_parse_with_defaults_and_round_trip() {
    let r = RuleDef::from_value(&base_rule()).unwrap();
    let RuleKind::Metric(m) = &r.kind else {
        panic!("metric rule expected")
    };
    assert_eq!(m.threshold, Threshold::Relative(-0.05));
    assert_eq!(m.segment, SegmentScope::Each("region".into()));
    assert_eq!(m.metric_spec().unwrap().label(), "auc");
    assert_eq!(r.cooldown_ms().unwrap(), 3_600_000);

    // Defaults: kind metric, consecutive 3, segment all, no actions.
    let minimal = RuleDef::from_json(
        r#"{"id":"psi-amount","model":"*","selector":"amount","metric":"psi",
            "comparison":">","threshold":0.2,"severity":"medium"}"#,
    )
    .unwrap();
    let RuleKind::Metric(m) = &minimal.kind else {
        panic!()
    };
    assert_eq!(m.consecutive, DEFAULT_CONSECUTIVE);
    assert_eq!(m.segment, SegmentScope::All);
    assert_eq!(m.threshold, Threshold::Absolute(0.2));
    assert!(minimal.actions.is_empty());
    assert_eq!(
        minimal.to_json(),
        json!({"id":"psi-amount","model":"*","kind":"metric","selector":"amount","metric":"psi",
               "comparison":">","threshold":0.2,"consecutive":3,"segment":"all",
               "severity":"medium","actions":[]})
    );

    // Serde round trip through the stored form, for every kind.
    let fresh = RuleDef::from_json(
        r#"{"id":"fresh","model":"fraud","kind":"freshness","retrain_every":"14d",
            "severity":"low","actions":[{"kind":"retrain","url":"http://127.0.0.1:9/retrain"}]}"#,
    )
    .unwrap();
    let event = RuleDef::from_json(
        r#"{"id":"on-release","model":"*","kind":"event","event":"catalog_refresh",
            "severity":"medium","actions":[{"kind":"jira","url":"https://x.atlassian.net/rest/api/2/issue","project":"ML"}]}"#,
    )
    .unwrap();
    assert_eq!(
        event.actions[0].action,
        Action::Jira {
            url: "https://x.atlassian.net/rest/api/2/issue".into(),
            project: "ML".into(),
            issue_type: "Task".into(),
            user: None,
            token: None,
        }
    );
    assert_eq!(
        r.actions[0].action,
        Action::Pagerduty {
            routing_key: "R0UT1NGKEY".into(),
            url: DEFAULT_PAGERDUTY_URL.into()
        }
    );
    for rule in [&r, &minimal, &fresh, &event] {
        let text = serde_json::to_string(rule).unwrap();
        let back: RuleDef = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, rule);
        assert_eq!(RuleDef::from_json(&text).unwrap(), *rule);
    }
    // The serde path rejects unknown fields too.
    let bad = with(base_rule(), "thresold", json!(1));
    assert!(serde_json::from_value::<RuleDef>(bad).is_err());
}

#[test]
fn invalid_rules_are_rejected_naming_the_field() {
    let long_actions: Vec<Value> = (0..17)
        .map(|_| json!({"kind": "webhook", "url": "https://example.com/h"}))
        .collect();
    let cases: Vec<(Value, &str, String)> = vec![
        (
            with(base_rule(), "id", json!("bad id!")),
            "id",
            "\"bad id!\" must be 1..=128 characters of A-Z a-z 0-9 _ . - starting with a letter or digit".into(),
        ),
        (
            with(base_rule(), "model", json!("")),
            "model",
            "\"\" must be 1..=256 bytes".into(),
        ),
        (
            with(base_rule(), "metric", json!("psx")),
            "metric",
            "unknown metric `psx`; expected a DriftQL metric such as psi, ks, auc, missing_rate or quantile(0.99)".into(),
        ),
        (
            with(with(with(base_rule(), "selector", json!("amount")), "metric", json!("quantile")), "threshold", json!(5)),
            "metric",
            "quantile needs a level, e.g. quantile(0.99)".into(),
        ),
        (
            with(base_rule(), "metric", json!("ndcg(25)")),
            "metric",
            "ndcg's K must be an integer between 1 and 20, got `25`".into(),
        ),
        (
            with(base_rule(), "metric", json!("psi(3)")),
            "metric",
            "psi takes no argument".into(),
        ),
        (
            with(base_rule(), "consecutive", json!(0)),
            "consecutive",
            "must be between 1 and 1000, got 0".into(),
        ),
        (
            with(base_rule(), "consecutive", json!(-2)),
            "consecutive",
            "invalid value: integer `-2`, expected u32".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "slack", "url": "ftp://example.com/x"}])),
            "actions[0].url",
            "scheme must be http or https, got `ftp`".into(),
        ),
        (
            with(base_rule(), "actions", json!([
                {"kind": "webhook", "url": "https://example.com/ok"},
                {"kind": "webhook", "url": "https://user:pw@example.com/hook"}
            ])),
            "actions[1].url",
            "must not contain credentials (user:password@)".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "retrain", "url": "http:///x"}])),
            "actions[0].url",
            "has no host".into(),
        ),
        (
            with(base_rule(), "severity", json!("urgent")),
            "severity",
            "unknown variant `urgent`, expected one of `low`, `medium`, `high`, `critical`".into(),
        ),
        (
            without(base_rule(), "severity"),
            "severity",
            "is required".into(),
        ),
        (
            with(base_rule(), "comparison", json!("=>")),
            "comparison",
            "unknown variant `=>`, expected one of `>`, `>=`, `<`, `<=`".into(),
        ),
        (
            with(base_rule(), "selector", json!("amount")),
            "selector",
            "auc is a performance metric and needs selector $score or $performance, not `amount`".into(),
        ),
        (
            with(with(base_rule(), "metric", json!("psi")), "threshold", json!(0.2)),
            "metric",
            "selector $performance needs a performance metric (auc, ece, rmse, ndcg …), not `psi`".into(),
        ),
        (
            with(base_rule(), "selector", json!("$foo")),
            "selector",
            "unknown special series `$foo`; expected $score, $performance, $label, $latency or $cost".into(),
        ),
        (
            with(with(base_rule(), "selector", json!("amount")), "metric", json!("cost_per_1k")),
            "selector",
            "cost_per_1k is computed on the events' cost and needs selector $cost, not `amount`".into(),
        ),
        (
            with(with(base_rule(), "selector", json!("$cost")), "metric", json!("chi2")),
            "metric",
            "chi2 applies to categorical features, and `$cost` is numeric".into(),
        ),
        (
            with(with(with(base_rule(), "selector", json!("$score")), "metric", json!("chi2")), "threshold", json!(10)),
            "metric",
            "chi2 applies to categorical features, and `$score` is numeric".into(),
        ),
        (
            with(with(with(base_rule(), "selector", json!("amount")), "metric", json!("psi")), "comparison", json!(">")),
            "threshold",
            "a relative or delta threshold needs a metric with a reference value; psi already compares the window with the reference, use a number".into(),
        ),
        (
            with(base_rule(), "threshold", json!({"relative": 0.05})),
            "threshold",
            "comparison < watches for a drop, so the change must be negative or zero, got 0.05".into(),
        ),
        (
            with(with(base_rule(), "comparison", json!(">=")), "threshold", json!({"delta": -0.1})),
            "threshold",
            "comparison >= watches for a rise, so the change must be positive or zero, got -0.1".into(),
        ),
        (
            with(base_rule(), "threshold", json!("0.2")),
            "threshold",
            "invalid type: string \"0.2\", expected a number, or an object {\"relative\": r}, {\"delta\": d}, {\"absolute\": v} or {\"anomaly\": {\"k\": 3, \"baseline\": \"trailing 7d\"}}".into(),
        ),
        (
            with(base_rule(), "threshold", json!({"ratio": 0.2})),
            "threshold",
            "unknown variant `ratio`, expected one of `absolute`, `relative`, `delta`, `anomaly`".into(),
        ),
        (
            without(base_rule(), "threshold"),
            "threshold",
            "required for a metric rule".into(),
        ),
        (
            with(base_rule(), "thresold", json!(0.2)),
            "thresold",
            "unknown field; expected one of id, model, kind, selector, metric, comparison, threshold, consecutive, segment, retrain_every, event, severity, actions, cooldown, description, min_n, inhibits".into(),
        ),
        (
            with(base_rule(), "segment", json!({"each": ""})),
            "segment",
            "\"\" must be 1..=256 bytes".into(),
        ),
        (
            with(base_rule(), "cooldown", json!("5x")),
            "cooldown",
            "`5x` is not a duration; expected e.g. 30m, 6h, 14d".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "pagerduty"}])),
            "actions[0]",
            "missing field `routing_key`".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "pagerduty", "routing_key": "has space"}])),
            "actions[0].routing_key",
            "must be 1..=128 printable ASCII characters without spaces".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "teams", "url": "https://example.com"}])),
            "actions[0]",
            "unknown variant `teams`, expected one of `pagerduty`, `slack`, `jira`, `webhook`, `retrain`, `route_to_backup`".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "webhook", "url": "https://example.com", "secret": "x"}])),
            "actions[0]",
            "unknown field `secret`, expected `url`".into(),
        ),
        (
            with(base_rule(), "actions", json!([{"kind": "jira", "url": "https://j.example.com/rest/api/2/issue", "project": "ml"}])),
            "actions[0].project",
            "`ml` is not a Jira project key (an upper-case letter, then upper-case letters, digits or _, at most 32)".into(),
        ),
        (
            with(base_rule(), "actions", Value::Array(long_actions)),
            "actions",
            "at most 16 actions, got 17".into(),
        ),
        (
            json!({"id": "f", "model": "fraud", "kind": "freshness", "retrain_every": "14d", "metric": "psi", "severity": "low"}),
            "metric",
            "only applies to metric rules".into(),
        ),
        (
            json!({"id": "f", "model": "fraud", "kind": "freshness", "severity": "low"}),
            "retrain_every",
            "required for a freshness rule".into(),
        ),
        (
            json!({"id": "f", "model": "fraud", "kind": "freshness", "retrain_every": "0d", "severity": "low"}),
            "retrain_every",
            "`0d` is not a duration; expected e.g. 30m, 6h, 14d".into(),
        ),
        (
            json!({"id": "e", "model": "fraud", "kind": "event", "event": "Catalog Refresh", "severity": "low"}),
            "event",
            "\"Catalog Refresh\" must be 1..=64 characters of a-z 0-9 _ . -, e.g. catalog_refresh or release".into(),
        ),
        (
            with(base_rule(), "retrain_every", json!("14d")),
            "retrain_every",
            "only applies to freshness rules".into(),
        ),
        (
            with(base_rule(), "kind", json!("cron")),
            "kind",
            "unknown variant `cron`, expected one of `metric`, `freshness`, `event`".into(),
        ),
        (json!([1, 2]), "rule", "must be a JSON object".into()),
    ];
    assert!(cases.len() >= 10);
    for (rule, field, reason) in &cases {
        let (f, r) = err_of(rule);
        assert_eq!(
            (f.as_str(), r.as_str()),
            (*field, reason.as_str()),
            "rule {rule}"
        );
    }

    // Values only reachable programmatically.
    let mut r = RuleDef::from_value(&base_rule()).unwrap();
    if let RuleKind::Metric(m) = &mut r.kind {
        m.threshold = Threshold::Absolute(f64::NAN);
    }
    let e = r.validate().unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("threshold", "must be a finite number, got NaN")
    );
    // The engine error carries the field too.
    let engine: Error = e.into();
    assert_eq!(
        engine.to_string(),
        "invalid rule: threshold: must be a finite number, got NaN"
    );
    assert_eq!(engine.kind(), crate::ErrorKind::InvalidArgument);

    let e = RuleDef::from_json("{not json").unwrap_err();
    assert_eq!(e.field, "rule");
    assert!(e.reason.starts_with("is not valid JSON: "), "{}", e.reason);
}

#[test]
fn metric_specs_and_selectors() {
    let q = MetricSpec::parse("Quantile( 0.99 )").unwrap();
    assert_eq!(
        (q.name(), q.param, q.label()),
        ("quantile", Some(0.99), "quantile(0.99)".into())
    );
    assert_eq!(MetricSpec::parse("ndcg").unwrap().label(), "ndcg@10");
    assert_eq!(MetricSpec::parse("ndcg@5").unwrap().param, Some(5.0));
    assert_eq!(MetricSpec::parse("ndcg(20)").unwrap().param, Some(20.0));
    assert!(MetricSpec::parse("quantile(1.5)").is_err());
    assert!(MetricSpec::parse("ndcg(0)").is_err());
    assert!(MetricSpec::parse("quantile(0.5").is_err());
    for name in [
        "psi",
        "js",
        "hellinger",
        "ks",
        "wasserstein",
        "chi2",
        "linf",
        "unseen_share",
        "missing_rate",
        "missing_rate_change",
        "mean",
        "auc",
        "ece",
        "logloss",
        "brier",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "rmse",
        "mae",
        "mape",
        "ctr",
        "cvr",
        "rpm",
        "label_coverage",
        "score_entropy",
    ] {
        let s = MetricSpec::parse(name).unwrap();
        assert_eq!(s.name(), name);
    }
    assert!(!MetricSpec::parse("psi").unwrap().has_reference_value());
    assert!(MetricSpec::parse("auc").unwrap().has_reference_value());
    assert!(MetricSpec::parse("mean").unwrap().has_reference_value());

    let g = Selector::parse("txn_*").unwrap();
    assert_eq!(g, Selector::Glob("txn_*".into()));
    assert!(g.matches("txn_amount") && !g.matches("amount") && !g.matches("$score"));
    let all = Selector::parse("*").unwrap();
    assert!(all.matches("amount") && !all.matches("$score") && !all.matches("$latency"));
    assert!(Selector::parse("$performance").unwrap().matches("$score"));
    assert!(Selector::parse("amount").unwrap().matches("amount"));
    assert!(Selector::parse("__x").is_err());

    assert!(SegmentScope::All.covers(None));
    assert!(!SegmentScope::All.covers(Some("region")));
    let each = SegmentScope::Each("region".into());
    assert!(each.covers(Some("region")) && !each.covers(Some("device")) && !each.covers(None));
}

fn fraud_model() -> ModelDef {
    serde_json::from_value(json!({
        "id": "fraud",
        "task": "binary",
        "window": "15m",
        "segments": ["region", "device"],
        "features": {"amount": "numeric", "txn_count": "numeric", "txn_country": "categorical", "merchant": "categorical"}
    }))
    .unwrap()
}

#[test]
fn targets_and_model_checks() {
    let model = fraud_model();
    let rule = |v: Value| RuleDef::from_value(&v).unwrap();
    let metric = |r: &RuleDef| match &r.kind {
        RuleKind::Metric(m) => m.clone(),
        _ => panic!(),
    };
    let psi_txn = rule(
        json!({"id":"a","model":"fraud","selector":"txn_*","metric":"psi",
        "comparison":">","threshold":0.2,"severity":"low"}),
    );
    assert_eq!(
        metric(&psi_txn).targets(&model).unwrap(),
        ["txn_count", "txn_country"]
    );
    let ks_all = rule(json!({"id":"a","model":"*","selector":"*","metric":"ks",
        "comparison":">","threshold":0.1,"severity":"low"}));
    assert_eq!(
        metric(&ks_all).targets(&model).unwrap(),
        ["amount", "txn_count"]
    );
    let auc = rule(base_rule());
    assert_eq!(metric(&auc).targets(&model).unwrap(), ["$score"]);
    auc.validate_for_model(&model).unwrap();

    // The events' cost: `cost_per_1k`, or a numeric summary of `$cost`.
    for m in ["cost_per_1k", "mean", "quantile(0.99)"] {
        let cost = rule(
            json!({"id":"c","model":"fraud","selector":"$cost","metric":m,
            "comparison":">","threshold":5,"severity":"low"}),
        );
        assert_eq!(metric(&cost).targets(&model).unwrap(), ["$cost"], "{m}");
        cost.validate_for_model(&model).unwrap();
    }

    let rmse = rule(
        json!({"id":"a","model":"fraud","selector":"$performance","metric":"rmse",
        "comparison":">","threshold":3,"severity":"low"}),
    );
    let e = rmse.validate_for_model(&model).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("metric", "rmse does not apply to binary models")
    );

    let missing = rule(
        json!({"id":"a","model":"fraud","selector":"amonut","metric":"psi",
        "comparison":">","threshold":0.2,"severity":"low"}),
    );
    let e = missing.validate_for_model(&model).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("selector", "model `fraud` has no feature `amonut`")
    );

    let ks_cat = rule(
        json!({"id":"a","model":"fraud","selector":"merchant","metric":"ks",
        "comparison":">","threshold":0.2,"severity":"low"}),
    );
    let e = ks_cat.validate_for_model(&model).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        (
            "metric",
            "no series of model `fraud` selected by `merchant` is numeric"
        )
    );

    let bad_seg = rule(with(base_rule(), "segment", json!({"each": "country"})));
    let e = bad_seg.validate_for_model(&model).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.reason.as_str()),
        ("segment", "model `fraud` has no segment key `country`")
    );

    let other = rule(with(base_rule(), "model", json!("churn")));
    assert_eq!(other.validate_for_model(&model).unwrap_err().field, "model");
    assert!(other.applies_to_model("churn") && !other.applies_to_model("fraud"));
    assert!(ks_all.applies_to_model("anything"));
}

// ---------------------------------------------------------------- state machine

#[test]
fn two_breaches_then_healthy_does_not_fire() {
    let (s, t) = run(&check_lt(0.5, 3), &[B, B, H, B, B, H]);
    assert!(t.is_empty());
    assert!(!s.is_firing());
}

#[test]
fn three_breaches_fire_once_stay_fired_and_three_healthy_resolve() {
    let seq = [B, B, B, B, B, H, H, B, H, H, H, H];
    let (s, t) = run(&check_lt(0.5, 3), &seq);
    assert_eq!(t, [(2, "fired"), (10, "resolved")]);
    assert!(!s.is_firing());
    assert_eq!(s.fired_window(), Some(w(2)));
    assert_eq!(s.resolved_window(), Some(w(10)));
}

#[test]
fn flapping_never_fires_and_a_firing_alert_rides_out_flaps() {
    let (_, t) = run(&check_lt(0.5, 3), &[B, H, B, H, B, B, H, B, B, H]);
    assert!(t.is_empty());
    // Once firing, flapping never accumulates three healthy windows: no resolve.
    let (s, t) = run(&check_lt(0.5, 3), &[B, B, B, H, B, H, H, B, H, H, B]);
    assert_eq!(t, [(2, "fired")]);
    assert!(s.is_firing());
}

#[test]
fn consecutive_one_fires_and_resolves_immediately() {
    let (_, t) = run(&check_lt(0.5, 1), &[H, B, B, H, B]);
    assert_eq!(t, [(1, "fired"), (3, "resolved"), (4, "fired")]);
}

#[test]
fn missing_windows_neither_breach_nor_heal() {
    let (s, t) = run(&check_lt(0.5, 3), &[B, N, B, N, N, B]);
    assert_eq!(t, [(5, "fired")]);
    let (_, t) = run(&check_lt(0.5, 3), &[B, B, B, H, N, H, N, H]);
    assert_eq!(t, [(2, "fired"), (7, "resolved")]);
    // NaN and ±inf count as no data as well.
    let (_, t) = run(
        &check_lt(0.5, 2),
        &[B, Some(f64::NAN), Some(f64::NEG_INFINITY), B],
    );
    assert_eq!(t, [(3, "fired")]);
    assert_eq!(s.last_window(), Some(w(5)));
}

#[test]
fn replayed_and_late_windows_are_ignored() {
    let c = check_lt(0.5, 3);
    let mut s = AlertState::new();
    assert_eq!(s.step(&c, w(0), B, None), None);
    assert_eq!(s.step(&c, w(1), B, None), None);
    let before = s;
    // Replays of seen windows, even with different values, change nothing.
    assert_eq!(s.step(&c, w(1), B, None), None);
    assert_eq!(s.step(&c, w(0), H, None), None);
    assert_eq!(s, before);
    let fired = s.step(&c, w(2), B, None);
    assert!(matches!(fired, Some(Transition::Fired { window, streak: 3, .. }) if window == w(2)));
    // Replaying the firing window after a restart (state reloaded) does not fire again.
    let mut reloaded = AlertState::decode(&s.encode()).unwrap();
    assert_eq!(reloaded.step(&c, w(2), B, None), None);
    assert_eq!(reloaded.step(&c, w(2), Some(0.0), None), None);
    assert!(reloaded.is_firing());
    // A window older than the last one (late data after close) is ignored too.
    assert_eq!(reloaded.step(&c, w(1), H, None), None);
    assert_eq!(reloaded, s);
}

#[test]
fn cooldown_suppresses_refiring_after_resolve() {
    let c = Check {
        cooldown_ms: 3_600_000,
        ..check_lt(0.5, 1)
    };
    let mut s = AlertState::new();
    assert!(matches!(
        s.step(&c, w(0), B, None),
        Some(Transition::Fired { .. })
    ));
    assert!(matches!(
        s.step(&c, w(1), H, None),
        Some(Transition::Resolved { fired_window, .. }) if fired_window == w(0)
    ));
    // 15, 30 and 45 minutes after the resolving window: held back.
    assert_eq!(s.step(&c, w(2), B, None), None);
    assert_eq!(s.step(&c, w(3), B, None), None);
    assert_eq!(s.step(&c, w(4), B, None), None);
    // 60 minutes after: fires, reporting the whole streak.
    assert!(matches!(
        s.step(&c, w(5), B, None),
        Some(Transition::Fired { streak: 4, window, .. }) if window == w(5)
    ));

    // A streak that heals during the cooldown does not fire later.
    let mut s = AlertState::new();
    s.step(&c, w(0), B, None);
    s.step(&c, w(1), H, None);
    assert_eq!(s.step(&c, w(2), B, None), None);
    assert_eq!(s.step(&c, w(3), H, None), None);
    assert_eq!(s.step(&c, w(6), H, None), None);
    assert!(!s.is_firing());
    // Without a cooldown the same sequence re-fires at once.
    let (_, t) = run(&check_lt(0.5, 1), &[B, H, B]);
    assert_eq!(t, [(0, "fired"), (1, "resolved"), (2, "fired")]);
}

#[test]
fn relative_and_delta_thresholds_follow_the_reference() {
    // AUC -5 %: reference 0.9, bound 0.855.
    let c = Check {
        comparison: Comparison::Lt,
        threshold: Threshold::Relative(-0.05),
        consecutive: 3,
        cooldown_ms: 0,
    };
    assert_eq!(
        c.evaluate(Some(0.86), Some(0.9)),
        Verdict::Healthy {
            value: 0.86,
            bound: 0.855
        }
    );
    assert_eq!(
        c.evaluate(Some(0.85), Some(0.9)),
        Verdict::Breach {
            value: 0.85,
            bound: 0.855
        }
    );
    assert_eq!(c.evaluate(Some(0.5), None), Verdict::NoData);
    assert_eq!(c.evaluate(Some(0.5), Some(f64::NAN)), Verdict::NoData);
    assert_eq!(c.evaluate(None, Some(0.9)), Verdict::NoData);

    let mut s = AlertState::new();
    assert_eq!(s.step(&c, w(0), Some(0.85), Some(0.9)), None);
    assert_eq!(s.step(&c, w(1), Some(0.80), None), None); // no reference: no data
    assert_eq!(s.step(&c, w(2), Some(0.84), Some(0.9)), None);
    assert_eq!(
        s.step(&c, w(3), Some(0.70), Some(0.9)),
        Some(Transition::Fired {
            window: w(3),
            value: 0.70,
            bound: 0.855,
            reference: Some(0.9),
            streak: 3
        })
    );

    // Relative bounds scale by the reference's magnitude, so a negative reference works.
    assert_eq!(Threshold::Relative(0.2).bound(Some(-10.0)), Some(-8.0));
    assert_eq!(Threshold::Relative(-0.05).bound(Some(0.0)), Some(0.0));
    assert_eq!(Threshold::Delta(-0.03).bound(Some(0.9)), Some(0.87));
    assert_eq!(Threshold::Absolute(0.2).bound(None), Some(0.2));
    assert_eq!(Threshold::Relative(-0.05).describe(), "reference -5%");
    assert_eq!(Threshold::Delta(0.5).describe(), "reference +0.5");
    assert_eq!(Threshold::Absolute(0.25).describe(), "0.25");
}

#[test]
fn state_codec_round_trips_and_detects_corruption() {
    let c = check_lt(0.5, 2);
    let mut states = vec![AlertState::new()];
    let mut s = AlertState::new();
    for (i, v) in [B, B, H, H, B, N].iter().enumerate() {
        s.step(&c, w(i as i64), *v, None);
        states.push(s);
    }
    // Negative timestamps (before 1970) survive too.
    let mut old = AlertState::new();
    old.step(&c, Timestamp(-W), B, None);
    states.push(old);
    for st in &states {
        let bytes = st.encode();
        assert_eq!(AlertState::decode(&bytes).unwrap(), *st);
        assert_eq!(open(&bytes).unwrap().0, ALERT_STATE_KIND);
    }

    let bytes = states[3].encode();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut c = bytes.clone();
            c[i] ^= 1 << bit;
            assert!(
                AlertState::decode(&c).is_err(),
                "flip of byte {i} bit {bit}"
            );
        }
    }
    for cut in 0..bytes.len() {
        assert!(AlertState::decode(&bytes[..cut]).is_err());
    }
    // A value of another kind is refused.
    let (_, payload) = open(&bytes).unwrap();
    assert!(matches!(
        AlertState::decode(&seal(0x20, payload)),
        Err(Error::UnknownStateKind { tag: 0x20 })
    ));
    // Well-sealed but inconsistent payloads are refused.
    assert!(matches!(
        AlertState::decode(&seal(ALERT_STATE_KIND, &[0x01, 0, 0])),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        AlertState::decode(&seal(ALERT_STATE_KIND, &[0x10, 0, 0])),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        AlertState::decode(&seal(ALERT_STATE_KIND, &[0x00, 0, 0, 7])),
        Err(Error::Malformed { .. })
    ));
    assert!(
        AlertState::decode(&seal(
            ALERT_STATE_KIND,
            &[0x00, 0xff, 0xff, 0xff, 0xff, 0x7f, 0]
        ))
        .is_err()
    );
}

proptest! {
    /// Feeding windows with duplicates and stragglers gives exactly the transitions of the
    /// clean increasing sequence, transitions alternate fired/resolved, and a state reloaded
    /// from its bytes at any point continues identically.
    #[test]
    fn replays_never_change_the_outcome(
        values in prop::collection::vec(prop::option::weighted(0.9, 0.0f64..1.0), 1..60),
        noise in prop::collection::vec((0usize..60, 0.0f64..1.0), 0..40),
        n in 1u32..5,
        cooldown in 0i64..4,
    ) {
        let c = Check { cooldown_ms: cooldown * W, ..check_lt(0.5, n) };
        let mut clean = AlertState::new();
        let expected: Vec<Transition> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| clean.step(&c, w(i as i64), *v, None))
            .collect();

        let mut s = AlertState::new();
        let mut got = Vec::new();
        let mut noise = noise.into_iter();
        for (i, v) in values.iter().enumerate() {
            got.extend(s.step(&c, w(i as i64), *v, None));
            // Replays of this or earlier windows, with arbitrary values.
            if let Some((back, x)) = noise.next() {
                let j = i.saturating_sub(back % (i + 1));
                prop_assert_eq!(s.step(&c, w(j as i64), Some(x), None), None);
            }
            s = AlertState::decode(&s.encode()).unwrap();
        }
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(s, clean);
        for pair in got.windows(2) {
            let alternate = matches!(
                pair,
                [Transition::Fired { .. }, Transition::Resolved { .. }]
                    | [Transition::Resolved { .. }, Transition::Fired { .. }]
            );
            prop_assert!(alternate);
        }
        if let Some(first) = got.first() {
            prop_assert!(matches!(first, Transition::Fired { .. }), "first transition must be a firing");
        }
    }
}

// ---------------------------------------------------------------- freshness and event rules

#[test]
fn freshness_rules_fire_when_the_model_is_stale_and_resolve_on_retrain() {
    let r = RuleDef::from_json(
        r#"{"id":"fraud-fresh","model":"fraud","kind":"freshness","retrain_every":"14d","severity":"medium"}"#,
    )
    .unwrap();
    let c = r.check().unwrap().unwrap();
    assert_eq!(c.consecutive, 1);
    let day = 86_400_000;
    let trained_v3 = Timestamp(T0);
    let mut s = AlertState::new();
    let at = |d: i64| Timestamp(T0 + d * day);
    assert_eq!(freshness_age_days(trained_v3, at(13)), 13.0);
    assert_eq!(
        s.step(
            &c,
            at(13),
            Some(freshness_age_days(trained_v3, at(13))),
            None
        ),
        None
    );
    let fired = s
        .step(
            &c,
            at(14),
            Some(freshness_age_days(trained_v3, at(14))),
            None,
        )
        .unwrap();
    let target = AlertTarget {
        model: "fraud".into(),
        version: "v3".into(),
        feature: None,
        segment: "all".into(),
    };
    let a = Alert::from_transition(&r, &target, &fired, 0);
    assert_eq!(
        a.summary,
        "fraud-fresh: fraud@v3 is 14 days old, due for retraining every 14 days"
    );
    assert_eq!(a.metric, "age_days");
    assert_eq!(a.fired_at, at(14));
    // v4 trained on day 15: the check heals and the alert resolves under the same dedup key.
    let trained_v4 = at(15);
    let resolved = s
        .step(
            &c,
            at(16),
            Some(freshness_age_days(trained_v4, at(16))),
            None,
        )
        .unwrap();
    let b = Alert::from_transition(
        &r,
        &AlertTarget {
            version: "v4".into(),
            ..target
        },
        &resolved,
        0,
    );
    assert_eq!(b.status, AlertStatus::Resolved);
    assert_eq!(b.dedup_key, a.dedup_key);
    assert_eq!(b.dedup_key, "driftdb/fraud-fresh/fraud");
    assert_eq!(
        b.summary,
        "Resolved fraud-fresh: fraud@v4 is 1 days old, retrained within 14 days"
    );
}

#[test]
fn event_rules_fire_per_announcement_with_cooldown() {
    let r = RuleDef::from_json(
        r#"{"id":"refresh","model":"*","kind":"event","event":"catalog_refresh","severity":"low","cooldown":"1h",
            "actions":[{"kind":"retrain","url":"http://127.0.0.1:7/r"}]}"#,
    )
    .unwrap();
    assert_eq!(r.check().unwrap(), None);
    let t = Timestamp(T0);
    assert!(r.fires_on_event("fraud", "catalog_refresh", None, t));
    assert!(!r.fires_on_event("fraud", "release", None, t));
    assert!(!r.fires_on_event(
        "fraud",
        "catalog_refresh",
        Some(t),
        t.saturating_add_ms(59 * 60_000)
    ));
    assert!(r.fires_on_event(
        "fraud",
        "catalog_refresh",
        Some(t),
        t.saturating_add_ms(60 * 60_000)
    ));
    let a = Alert::for_event(&r, "fraud", "v3", "catalog_refresh", t);
    assert_eq!(
        a.summary,
        "refresh: event `catalog_refresh` announced for fraud@v3"
    );
    assert_eq!(
        a.dedup_key,
        "driftdb/refresh/fraud/catalog_refresh/1772323200000"
    );
    assert_eq!(
        retrain_payload(&a).unwrap()["reason"],
        json!("refresh: event `catalog_refresh` announced for fraud@v3")
    );
}

// ---------------------------------------------------------------- alerts and payloads

fn fixed_rule() -> RuleDef {
    RuleDef::from_value(&with(
        base_rule(),
        "description",
        json!("Runbook: https://wiki.example.com/fraud <auc>"),
    ))
    .unwrap()
}

fn target() -> AlertTarget {
    AlertTarget {
        model: "fraud".into(),
        version: "v3".into(),
        feature: Some("$score".into()),
        segment: "region=eu".into(),
    }
}

fn fired_alert() -> Alert {
    let t = Transition::Fired {
        window: Timestamp(T0),
        value: 0.81,
        bound: 0.855,
        reference: Some(0.9),
        streak: 3,
    };
    Alert::from_transition(&fixed_rule(), &target(), &t, W)
}

fn resolved_alert() -> Alert {
    let t = Transition::Resolved {
        window: w(8),
        value: 0.89,
        bound: 0.855,
        reference: Some(0.9),
        fired_window: Timestamp(T0),
    };
    Alert::from_transition(&fixed_rule(), &target(), &t, W)
}

const SUMMARY: &str = "fraud-auc-drop: auc of $score on fraud@v3 [region=eu] is 0.81, below 0.855 (reference 0.9 -5%)";
const DEDUP: &str = "driftdb/fraud-auc-drop/fraud@v3/$score/region=eu";

fn details() -> Value {
    json!({
        "rule_id": "fraud-auc-drop",
        "rule_kind": "metric",
        "model": "fraud",
        "version": "v3",
        "feature": "$score",
        "segment": "region=eu",
        "metric": "auc",
        "comparison": "<",
        "value": 0.81,
        "threshold": 0.855,
        "reference": 0.9,
        "severity": "high",
        "window_start": "2026-03-01T00:00:00.000Z",
        "fired_at": "2026-03-01T00:15:00.000Z",
        "resolved_at": null,
        "event": null,
        "description": "Runbook: https://wiki.example.com/fraud <auc>"
    })
}

#[test]
fn alert_from_transition() {
    let a = fired_alert();
    assert_eq!(a.summary, SUMMARY);
    assert_eq!(a.dedup_key, DEDUP);
    assert_eq!(a.status, AlertStatus::Firing);
    assert_eq!(a.fired_at.to_rfc3339(), "2026-03-01T00:15:00.000Z");
    assert_eq!(a.resolved_at, None);
    assert_eq!(a.event_id(), format!("{DEDUP}/firing/{T0}"));
    let r = resolved_alert();
    assert_eq!(
        r.summary,
        "Resolved fraud-auc-drop: auc of $score on fraud@v3 [region=eu] is 0.89, no longer below 0.855 (reference 0.9 -5%)"
    );
    assert_eq!(r.dedup_key, a.dedup_key);
    assert_eq!(r.fired_at, a.fired_at);
    assert_eq!(
        r.resolved_at.map(Timestamp::to_rfc3339).as_deref(),
        Some("2026-03-01T02:15:00.000Z")
    );
    assert_ne!(r.event_id(), a.event_id());
}

#[test]
fn pagerduty_payloads() {
    assert_eq!(
        pagerduty_payload(&fired_alert(), "R0UT1NGKEY"),
        json!({
            "routing_key": "R0UT1NGKEY",
            "event_action": "trigger",
            "dedup_key": DEDUP,
            "payload": {
                "summary": SUMMARY,
                "source": "driftdb/fraud@v3",
                "severity": "error",
                "timestamp": "2026-03-01T00:15:00.000Z",
                "component": "$score",
                "group": "fraud",
                "class": "auc",
                "custom_details": details()
            },
            "client": "driftdb"
        })
    );
    assert_eq!(
        pagerduty_payload(&resolved_alert(), "R0UT1NGKEY"),
        json!({"routing_key": "R0UT1NGKEY", "event_action": "resolve", "dedup_key": DEDUP})
    );
    let sev: Vec<&str> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ]
    .iter()
    .map(|s| s.pagerduty())
    .collect();
    assert_eq!(sev, ["critical", "error", "warning", "info"]);
}

#[test]
fn slack_payloads() {
    let text = "fraud-auc-drop: auc of $score on fraud@v3 [region=eu] is 0.81, below 0.855 (reference 0.9 -5%)";
    assert_eq!(
        slack_payload(&fired_alert()),
        json!({
            "text": text,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "FIRING · high · fraud-auc-drop"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*Model*\nfraud@v3"},
                    {"type": "mrkdwn", "text": "*Series*\n$score [region=eu]"},
                    {"type": "mrkdwn", "text": "*Metric*\nauc"},
                    {"type": "mrkdwn", "text": "*Value*\n0.81"},
                    {"type": "mrkdwn", "text": "*Threshold*\n&lt; 0.855"},
                    {"type": "mrkdwn", "text": "*Reference*\n0.9"},
                    {"type": "mrkdwn", "text": "*Window*\n2026-03-01T00:00:00.000Z"},
                    {"type": "mrkdwn", "text": "*Fired at*\n2026-03-01T00:15:00.000Z"}
                ]},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": "Runbook: https://wiki.example.com/fraud &lt;auc&gt;"}
                ]}
            ]
        })
    );
    let r = slack_payload(&resolved_alert());
    assert_eq!(
        r["blocks"][0]["text"]["text"],
        json!("RESOLVED · high · fraud-auc-drop")
    );
    assert_eq!(
        r["blocks"][2]["fields"][7]["text"],
        json!("*Resolved at*\n2026-03-01T02:15:00.000Z")
    );
}

#[test]
fn jira_payloads() {
    let description = format!(
        "{SUMMARY}\n\nRule: fraud-auc-drop\nModel: fraud@v3\nSeries: $score [region=eu]\nMetric: auc\n\
         Value: 0.81\nThreshold: < 0.855\nReference: 0.9\nSeverity: high\n\
         Window: 2026-03-01T00:00:00.000Z\nFired at: 2026-03-01T00:15:00.000Z\nDedup key: {DEDUP}\n\
         \nRunbook: https://wiki.example.com/fraud <auc>\n"
    );
    assert_eq!(
        jira_payload(&fired_alert(), "ML", "Bug"),
        Some(json!({
            "fields": {
                "project": {"key": "ML"},
                "summary": format!("[driftdb] {SUMMARY}"),
                "description": description,
                "issuetype": {"name": "Bug"}
            }
        }))
    );
    assert_eq!(jira_payload(&resolved_alert(), "ML", "Bug"), None);
}

#[test]
fn generic_retrain_and_backup_payloads() {
    let mut expected = json!({
        "schema": "driftdb.alert.v1",
        "status": "firing",
        "event_id": format!("{DEDUP}/firing/{T0}"),
        "dedup_key": DEDUP,
        "summary": SUMMARY,
    });
    if let (Some(e), Value::Object(d)) = (expected.as_object_mut(), details()) {
        e.extend(d);
    }
    assert_eq!(generic_payload(&fired_alert()), expected);
    let g = generic_payload(&resolved_alert());
    assert_eq!(g["status"], json!("resolved"));
    assert_eq!(g["resolved_at"], json!("2026-03-01T02:15:00.000Z"));
    assert_eq!(g["value"], json!(0.89));

    assert_eq!(
        retrain_payload(&fired_alert()),
        Some(json!({
            "action": "retrain",
            "model": "fraud",
            "version": "v3",
            "reason": SUMMARY,
            "rule_id": "fraud-auc-drop",
            "severity": "high",
            "fired_at": "2026-03-01T00:15:00.000Z",
            "event_id": format!("{DEDUP}/firing/{T0}")
        }))
    );
    assert_eq!(retrain_payload(&resolved_alert()), None);
    assert_eq!(
        route_to_backup_payload(&fired_alert(), Some("v2")),
        Some(json!({
            "action": "route_to_backup",
            "model": "fraud",
            "version": "v3",
            "backup_version": "v2",
            "reason": SUMMARY,
            "rule_id": "fraud-auc-drop",
            "severity": "high",
            "fired_at": "2026-03-01T00:15:00.000Z",
            "event_id": format!("{DEDUP}/firing/{T0}")
        }))
    );
    assert_eq!(
        route_to_backup_payload(&fired_alert(), None).unwrap()["backup_version"],
        Value::Null
    );
    assert_eq!(route_to_backup_payload(&resolved_alert(), None), None);
}

#[test]
fn render_dispatches_by_action_kind() {
    let rule = RuleDef::from_value(&with(
        base_rule(),
        "actions",
        json!([
            {"kind": "pagerduty", "routing_key": "K", "url": "http://127.0.0.1:1/pd"},
            {"kind": "slack", "url": "http://127.0.0.1:1/slack"},
            {"kind": "jira", "url": "http://127.0.0.1:1/jira", "project": "ML", "issue_type": "Bug"},
            {"kind": "webhook", "url": "http://127.0.0.1:1/hook"},
            {"kind": "retrain", "url": "http://127.0.0.1:1/retrain"},
            {"kind": "route_to_backup", "url": "http://127.0.0.1:1/route", "backup_version": "v2"}
        ]),
    ))
    .unwrap();
    let fired = fired_alert();
    let resolved = resolved_alert();
    let sent: Vec<(ActionKind, bool, bool)> = rule
        .actions
        .iter()
        .map(|a| {
            (
                a.kind(),
                render(a, &fired).is_some(),
                render(a, &resolved).is_some(),
            )
        })
        .collect();
    for (kind, on_fire, on_resolve) in &sent {
        assert!(on_fire);
        assert_eq!(*on_resolve, kind.sends_on_resolve(), "{kind:?}");
    }
    let d = render(&rule.actions[0], &fired).unwrap();
    assert_eq!(d.url, "http://127.0.0.1:1/pd");
    assert_eq!(d.kind, ActionKind::Pagerduty);
    assert_eq!(d.body, pagerduty_payload(&fired, "K"));
    let d = render(&rule.actions[2], &fired).unwrap();
    assert_eq!(d.body["fields"]["issuetype"]["name"], json!("Bug"));
    let d = render(&rule.actions[5], &fired).unwrap();
    assert_eq!(d.body["backup_version"], json!("v2"));
}

#[test]
fn long_identities_keep_dedup_keys_within_limits() {
    let long = "f".repeat(250);
    let mk = |feature: &str| {
        let t = AlertTarget {
            feature: Some(feature.to_string()),
            ..target()
        };
        let tr = Transition::Fired {
            window: Timestamp(T0),
            value: 0.1,
            bound: 0.5,
            reference: None,
            streak: 3,
        };
        Alert::from_transition(&fixed_rule(), &t, &tr, W)
    };
    let a = mk(&format!("{long}a"));
    let b = mk(&format!("{long}b"));
    assert!(a.dedup_key.chars().count() <= 255 && b.dedup_key.chars().count() <= 255);
    assert_ne!(a.dedup_key, b.dedup_key);
    assert_eq!(a.dedup_key, mk(&format!("{long}a")).dedup_key);
    // Multi-byte names are cut on a character boundary.
    let c = mk(&"é".repeat(200));
    assert!(c.dedup_key.len() <= 255);

    // Summaries are cut for PagerDuty (1024) and Slack's header (150).
    let mut big = fired_alert();
    big.summary = "x".repeat(5000);
    big.rule_id = "r".repeat(200);
    let pd = pagerduty_payload(&big, "K");
    assert_eq!(
        pd["payload"]["summary"].as_str().unwrap().chars().count(),
        1024
    );
    let sl = slack_payload(&big);
    assert_eq!(
        sl["blocks"][0]["text"]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        150
    );
    assert_eq!(sl["text"].as_str().unwrap().chars().count(), 3000);
    let jira = jira_payload(&big, "ML", "Task").unwrap();
    assert_eq!(
        jira["fields"]["summary"].as_str().unwrap().chars().count(),
        255
    );
}

// ---------------------------------------------------------------- retries

#[test]
fn backoff_schedule_is_deterministic_and_capped() {
    use std::time::Duration;
    let p = RetryPolicy::default();
    let secs: Vec<u64> = (0..=12).map(|n| p.delay(n).as_secs()).collect();
    assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    assert_eq!(p.delay(u32::MAX), Duration::from_secs(300));
    assert_eq!(p.delay(64), Duration::from_secs(300));

    let first = Timestamp(T0);
    let at = |s: i64| first.saturating_add_ms(s * 1000);
    assert_eq!(
        p.next_attempt(1, first, first),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        p.next_attempt(3, first, at(3)),
        Some(Duration::from_secs(4))
    );
    assert_eq!(
        p.next_attempt(40, first, at(3600)),
        Some(Duration::from_secs(300))
    );
    // The last attempt lands exactly on the deadline; after it, dead-letter.
    let day = 24 * 3600;
    assert_eq!(
        p.next_attempt(300, first, at(day - 100)),
        Some(Duration::from_secs(100))
    );
    assert_eq!(p.next_attempt(301, first, at(day)), None);
    assert_eq!(p.next_attempt(301, first, at(day + 5)), None);

    // A receiver down for an hour: attempts keep coming every ≤ 5 minutes and none is
    // dead-lettered.
    let mut now = first;
    let mut failures = 1;
    while now < at(3600) {
        let d = p.next_attempt(failures, first, now).unwrap();
        assert!(d <= Duration::from_secs(300));
        now = now.saturating_add_ms(d.as_millis() as i64);
        failures += 1;
    }
    assert_eq!(failures, 1 + 9 + 11); // 1..256 s doublings, then 300 s steps to cover the hour

    let custom = RetryPolicy {
        initial: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        dead_letter_after: Duration::from_secs(10),
    };
    let ms: Vec<u128> = (1..=6).map(|n| custom.delay(n).as_millis()).collect();
    assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(custom.next_attempt(1, first, at(10)), None);

    assert_eq!(classify_status(200), DeliveryOutcome::Delivered);
    assert_eq!(classify_status(202), DeliveryOutcome::Delivered);
    assert_eq!(classify_status(429), DeliveryOutcome::Retry);
    assert_eq!(classify_status(503), DeliveryOutcome::Retry);
    assert_eq!(classify_status(408), DeliveryOutcome::Retry);
    assert_eq!(classify_status(400), DeliveryOutcome::Permanent);
    assert_eq!(classify_status(301), DeliveryOutcome::Permanent);
}

#[test]
fn a_rule_accepts_every_metric_of_the_catalog_or_says_why_not() {
    use crate::catalog::{METRICS, Param};
    for m in METRICS {
        let text = match m.param {
            Param::Level => format!("{}(0.9)", m.name),
            Param::CutOff => format!("{}(5)", m.name),
            Param::None => m.name.to_string(),
        };
        match (MetricSpec::parse(&text), m.not_in_rules) {
            (Ok(spec), None) => assert_eq!(spec.name(), m.name),
            (Err(e), Some(why)) => assert!(e.contains(why), "{e}"),
            (got, why) => panic!("{}: {got:?} but the catalog says {why:?}", m.name),
        }
    }
}

// ---------------------------------------------------------------- inhibition, min_n, silences

#[test]
fn inhibits_and_min_n_parse_validate_and_round_trip() {
    let v = with(
        with(
            json!({"id": "missing-x", "model": "fraud", "selector": "amount",
                   "metric": "missing_rate", "comparison": ">", "threshold": 0.2,
                   "severity": "critical"}),
            "inhibits",
            json!(["drift-*", "psi-amount"]),
        ),
        "min_n",
        json!(500),
    );
    let r = RuleDef::from_value(&v).unwrap();
    assert_eq!(r.inhibits, vec!["drift-*", "psi-amount"]);
    assert!(r.inhibits_rule("drift-amount"));
    assert!(r.inhibits_rule("psi-amount"));
    assert!(!r.inhibits_rule("psi-country"));
    let RuleKind::Metric(m) = &r.kind else {
        panic!("metric rule")
    };
    assert_eq!(m.min_n, Some(500));
    let back = RuleDef::from_value(&r.to_json()).unwrap();
    assert_eq!(back, r);
    assert_eq!(r.to_json()["min_n"], 500);
    // Absent fields stay absent in the JSON form.
    let plain = RuleDef::from_value(&base_rule()).unwrap();
    assert!(plain.inhibits.is_empty());
    assert!(plain.to_json().get("inhibits").is_none());
    assert!(plain.to_json().get("min_n").is_none());

    let bad = [
        (with(v.clone(), "min_n", json!(0)), "min_n", "must be 1..="),
        (
            with(v.clone(), "min_n", json!(-3)),
            "min_n",
            "invalid value",
        ),
        (
            with(v.clone(), "inhibits", json!("drift-*")),
            "inhibits",
            "invalid type",
        ),
        (
            with(v.clone(), "inhibits", json!(["drift amount"])),
            "inhibits[0]",
            "must be a rule id or a glob",
        ),
        (
            with(v.clone(), "inhibits", json!(["ok", "missing-*"])),
            "inhibits[1]",
            "matches this rule itself",
        ),
        (
            with(v.clone(), "inhibits", json!(vec!["a"; 17])),
            "inhibits",
            "at most 16",
        ),
        (
            json!({"id": "stale", "model": "fraud", "kind": "freshness", "retrain_every": "14d",
                   "severity": "low", "min_n": 10}),
            "min_n",
            "only applies to metric rules",
        ),
    ];
    for (rule, field, reason) in bad {
        let (f, why) = err_of(&rule);
        assert_eq!(f, field, "{rule}: {why}");
        assert!(why.contains(reason), "{rule}: {why}");
    }
}

fn silence_json(extra: Value) -> String {
    let mut v = json!({"matchers": {"model": "fraud", "rule": "psi-*"},
                       "duration": "2h", "created_by": "alice", "comment": "catalog refresh"});
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        for (k, x) in e {
            if x.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, x);
            }
        }
    }
    v.to_string()
}

#[test]
fn silences_parse_with_defaults_and_refuse_bad_fields_by_name() {
    let now = w(0);
    let s = Silence::from_json(&silence_json(json!({})), now).unwrap();
    assert_eq!(s.starts_at_ms, now.millis());
    assert_eq!(s.ends_at_ms, now.millis() + 2 * 3_600_000);
    assert_eq!(s.state(w(-1)), SilenceState::Pending);
    assert_eq!(s.state(w(0)), SilenceState::Active);
    assert_eq!(s.state(w(7)), SilenceState::Active);
    assert_eq!(s.state(w(8)), SilenceState::Expired, "the end is exclusive");
    assert!(!s.model_is_pattern());

    let explicit = Silence::from_json(
        &silence_json(
            json!({"duration": null, "starts_at": "2026-03-01T01:00:00Z",
                             "ends_at": "2026-03-01T03:00:00Z"}),
        ),
        now,
    )
    .unwrap();
    assert_eq!(explicit.starts_at_ms, w(4).millis());
    assert_eq!(explicit.ends_at_ms, w(12).millis());
    // The stored form round-trips through serde.
    let text = serde_json::to_string(&explicit).unwrap();
    assert_eq!(serde_json::from_str::<Silence>(&text).unwrap(), explicit);

    let bad = [
        (
            json!({"matchers": {"rule": "x"}}),
            "matchers.model",
            "required",
        ),
        (
            json!({"matchers": {"model": "m", "team": "x"}}),
            "matchers.team",
            "unknown label",
        ),
        (
            json!({"matchers": {"model": ""}}),
            "matchers.model",
            "1..=128",
        ),
        (json!({"duration": null}), "ends_at", "required"),
        (
            json!({"ends_at": "2026-03-01T03:00:00Z"}),
            "duration",
            "either ends_at or duration",
        ),
        (json!({"duration": "soon"}), "duration", "not a duration"),
        (
            json!({"duration": null, "ends_at": "yesterday"}),
            "ends_at",
            "RFC 3339",
        ),
        (
            json!({"duration": null, "starts_at": "2026-03-01T03:00:00Z",
                   "ends_at": "2026-03-01T01:00:00Z"}),
            "ends_at",
            "after starts_at",
        ),
        (json!({"duration": "400d"}), "ends_at", "366 days"),
        (json!({"created_by": "  "}), "created_by", "1..=128"),
        (json!({"comment": ""}), "comment", "1..=1024"),
        (
            json!({"comment": null}),
            "silence",
            "missing field `comment`",
        ),
        (json!({"extra": 1}), "silence", "unknown field `extra`"),
    ];
    for (extra, field, reason) in bad {
        let e = Silence::from_json(&silence_json(extra.clone()), now)
            .expect_err("silence should be refused");
        assert_eq!(e.field, field, "{extra}: {e}");
        assert!(e.reason.contains(reason), "{extra}: {e}");
    }
    assert_eq!(
        Silence::from_json("[1]", now).unwrap_err().reason,
        "must be a JSON object"
    );
}

#[test]
fn silences_match_every_given_label_by_glob_within_their_span() {
    let now = w(0);
    let a = fired_alert(); // rule fraud-auc-drop, model fraud, $score, region=eu, v3, high
    let mk = |matchers: Value| {
        Silence::from_json(&silence_json(json!({ "matchers": matchers })), now).unwrap()
    };
    assert!(mk(json!({"model": "fraud"})).matches(&a));
    assert!(mk(json!({"model": "fr*"})).model_is_pattern());
    assert!(mk(json!({"model": "*", "rule": "fraud-*"})).matches(&a));
    assert!(
        mk(
            json!({"model": "fraud", "segment": "region=eu", "feature": "$score",
                  "version": "v?", "severity": "high"})
        )
        .matches(&a)
    );
    assert!(!mk(json!({"model": "fraud", "segment": "region=us"})).matches(&a));
    assert!(!mk(json!({"model": "fraud", "severity": "low"})).matches(&a));
    assert!(!mk(json!({"model": "credit"})).matches(&a));
    // A model-level alert has no feature: only `*` (or an empty-matching glob) covers it.
    let mut model_level = a.clone();
    model_level.feature = None;
    assert!(mk(json!({"model": "fraud", "feature": "*"})).matches(&model_level));
    assert!(!mk(json!({"model": "fraud", "feature": "$score"})).matches(&model_level));
    // Time: only while active.
    let s = mk(json!({"model": "fraud"}));
    assert!(s.silences(&a, w(3)));
    assert!(!s.silences(&a, w(8)));
    assert!(!s.silences(&a, w(-1)));
}

// ---- grouping ----

fn grouped(action: Value) -> RuleDef {
    let mut rule = base_rule();
    rule["actions"] = json!([action]);
    RuleDef::from_value(&rule).unwrap()
}

fn rule_error(rule: &Value) -> RuleError {
    RuleDef::from_value(rule).unwrap_err()
}

#[test]
fn grouping_fields_parse_round_trip_and_name_the_field_at_fault() {
    let r = grouped(json!({"kind": "slack", "url": "http://127.0.0.1:1/s",
                           "group_by": ["model", "rule", "model"], "group_wait": "30s",
                           "group_interval": "5m"}));
    let g = r.actions[0].group.clone().unwrap();
    assert_eq!(g.by, vec![GroupLabel::Model, GroupLabel::Rule]);
    assert_eq!((g.wait_ms, g.interval_ms), (30_000, 300_000));
    let again = RuleDef::from_value(&serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(again, r);
    // Defaults: no wait, no interval; `0s` is allowed.
    let r = grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h",
                           "group_by": [], "group_wait": "0s"}));
    let g = r.actions[0].group.clone().unwrap();
    assert!(g.by.is_empty());
    assert_eq!((g.wait_ms, g.interval_ms), (0, 0));
    // Without group_by nothing is grouped.
    assert!(
        grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h"})).actions[0]
            .group
            .is_none()
    );
    let cases = [
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_wait": "1m"}),
            "actions[0].group_wait",
        ),
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_by": ["team"]}),
            "actions[0].group_by",
        ),
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_by": "model"}),
            "actions[0].group_by",
        ),
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_by": ["model"], "group_wait": "2d"}),
            "actions[0].group_wait",
        ),
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_by": ["model"], "group_interval": "soon"}),
            "actions[0].group_interval",
        ),
        (
            json!({"kind": "webhook", "url": "http://h/x", "group_by": ["model"], "colour": 1}),
            "actions[0]",
        ),
    ];
    for (action, field) in cases {
        let mut rule = base_rule();
        rule["actions"] = json!([action]);
        let e = rule_error(&rule);
        assert_eq!(e.field, field, "{action}: {e:?}");
    }
}

fn group_with<'a>(
    id: &'a GroupId,
    members: &'a [Alert],
    status: AlertStatus,
    still_firing: usize,
) -> AlertGroup<'a> {
    AlertGroup {
        id,
        status,
        members,
        still_firing,
    }
}

fn alert_on(feature: &str, status: AlertStatus) -> Alert {
    let mut a = if status == AlertStatus::Firing {
        fired_alert()
    } else {
        resolved_alert()
    };
    a.feature = Some(feature.to_string());
    a.dedup_key = format!("driftdb/r/{feature}");
    a
}

#[test]
fn alerts_share_a_group_by_labels_target_and_status() {
    let by_model = grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h",
                                  "group_by": ["model"]}));
    let by_feature = grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h",
                                    "group_by": ["model", "feature"]}));
    let other_url = grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/other",
                                   "group_by": ["model"]}));
    let g = |r: &RuleDef, f: &str, s: AlertStatus| r.actions[0].group_of(&alert_on(f, s)).unwrap();
    let a = g(&by_model, "amount", AlertStatus::Firing);
    assert_eq!(a, g(&by_model, "age", AlertStatus::Firing));
    assert_eq!(a.labels, vec![("model".to_string(), "fraud".to_string())]);
    let resolved = g(&by_model, "amount", AlertStatus::Resolved);
    assert_ne!(a.key, resolved.key);
    assert_eq!(a.series, resolved.series, "one incident for both statuses");
    assert_ne!(
        g(&by_feature, "amount", AlertStatus::Firing).key,
        g(&by_feature, "age", AlertStatus::Firing).key
    );
    assert_ne!(a.key, g(&other_url, "amount", AlertStatus::Firing).key);
    assert!(
        grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h"})).actions[0]
            .group_of(&fired_alert())
            .is_none()
    );
}

#[test]
fn grouped_payloads_list_members_and_follow_each_kind() {
    let firing: Vec<Alert> = (0..25)
        .map(|i| alert_on(&format!("f{i:02}"), AlertStatus::Firing))
        .collect();
    let resolved: Vec<Alert> = (0..3)
        .map(|i| alert_on(&format!("f{i:02}"), AlertStatus::Resolved))
        .collect();
    let rule = grouped(json!({"kind": "slack", "url": "http://127.0.0.1:1/s",
                              "group_by": ["model"]}));
    let id = rule.actions[0].group_of(&firing[0]).unwrap();
    // Slack: a header with the count, 20 listed lines and the rest counted.
    let d = render_group(
        &rule.actions[0],
        &group_with(&id, &firing, AlertStatus::Firing, 25),
    )
    .unwrap();
    assert_eq!(
        d.body["blocks"][0]["text"]["text"],
        "FIRING · high · 25 series"
    );
    let list = d.body["blocks"][2]["text"]["text"].as_str().unwrap();
    assert_eq!(list.lines().count(), 21);
    assert!(list.ends_with("… and 5 more"), "{list}");
    assert!(
        d.body["text"]
            .as_str()
            .unwrap()
            .starts_with("FIRING: 25 alerts (model=fraud)")
    );
    let d = render_group(
        &rule.actions[0],
        &group_with(&id, &resolved, AlertStatus::Resolved, 22),
    )
    .unwrap();
    assert!(
        d.body["text"]
            .as_str()
            .unwrap()
            .contains("(22 series of this group still firing)"),
        "{}",
        d.body
    );
    // PagerDuty: the group's incident resolves only with its last series.
    let pd = grouped(json!({"kind": "pagerduty", "routing_key": "K", "group_by": ["model"]}));
    let pid = pd.actions[0].group_of(&firing[0]).unwrap();
    let t = render_group(
        &pd.actions[0],
        &group_with(&pid, &firing, AlertStatus::Firing, 25),
    )
    .unwrap();
    assert_eq!(t.body["event_action"], "trigger");
    assert_eq!(t.body["payload"]["custom_details"]["count"], 25);
    assert_eq!(t.body["payload"]["severity"], "error");
    assert!(
        render_group(
            &pd.actions[0],
            &group_with(&pid, &resolved, AlertStatus::Resolved, 22)
        )
        .is_none()
    );
    let r = render_group(
        &pd.actions[0],
        &group_with(&pid, &resolved, AlertStatus::Resolved, 0),
    )
    .unwrap();
    assert_eq!(r.body["event_action"], "resolve");
    assert_eq!(r.body["dedup_key"], t.body["dedup_key"]);
    // Jira and retrain act on firing only; the generic webhook carries every member.
    for action in [
        json!({"kind": "jira", "url": "http://127.0.0.1:1/j", "project": "ML", "group_by": ["model"]}),
        json!({"kind": "retrain", "url": "http://127.0.0.1:1/r", "group_by": ["model"]}),
    ] {
        let r = grouped(action);
        assert!(
            render_group(
                &r.actions[0],
                &group_with(&id, &firing, AlertStatus::Firing, 25)
            )
            .is_some()
        );
        assert!(
            render_group(
                &r.actions[0],
                &group_with(&id, &resolved, AlertStatus::Resolved, 0)
            )
            .is_none()
        );
    }
    let hook =
        grouped(json!({"kind": "webhook", "url": "http://127.0.0.1:1/h", "group_by": ["model"]}));
    let d = render_group(
        &hook.actions[0],
        &group_with(&id, &firing, AlertStatus::Firing, 25),
    )
    .unwrap();
    assert_eq!(d.body["schema"], GROUP_SCHEMA);
    assert_eq!(d.body["alerts"].as_array().unwrap().len(), 25);
    assert_eq!(d.body["alerts"][3], generic_payload(&firing[3]));
    assert!(
        render_group(
            &hook.actions[0],
            &group_with(&id, &[], AlertStatus::Firing, 0)
        )
        .is_none()
    );
}

// ---- anomaly thresholds ----

fn anomaly_rule(threshold: Value, comparison: &str) -> Result<RuleDef, RuleError> {
    RuleDef::from_value(&json!({
        "id": "a", "model": "m", "selector": "x", "metric": "mean", "comparison": comparison,
        "threshold": threshold, "consecutive": 1, "severity": "low"
    }))
}

#[test]
fn anomaly_thresholds_parse_round_trip_and_refuse_bad_settings() {
    let r = anomaly_rule(
        json!({"anomaly": {"k": 3, "baseline": "same time 7d ago", "direction": "down",
                           "min_windows": 4}}),
        ">",
    )
    .unwrap();
    let RuleKind::Metric(m) = &r.kind else {
        panic!("metric rule")
    };
    let a = *m.threshold.anomaly().unwrap();
    assert_eq!(a.baseline, Baseline::SameTime { days: 7 });
    assert_eq!((a.k, a.min_windows, a.direction), (3.0, 4, Direction::Down));
    assert!(!m.threshold.needs_reference());
    assert_eq!(
        RuleDef::from_value(&serde_json::to_value(&r).unwrap()).unwrap(),
        r
    );
    for (text, want) in [
        ("trailing 7d", Baseline::Trailing { ms: 7 * 86_400_000 }),
        ("trailing 36h", Baseline::Trailing { ms: 36 * 3_600_000 }),
        ("same time 1d ago", Baseline::SameTime { days: 1 }),
        ("reference", Baseline::Reference),
    ] {
        assert_eq!(Baseline::parse(text), Ok(want));
        assert_eq!(Baseline::parse(&want.text()), Ok(want));
    }
    for bad in [
        json!({"anomaly": {"k": 0, "baseline": "trailing 7d"}}),
        json!({"anomaly": {"k": 3, "baseline": "yesterday"}}),
        json!({"anomaly": {"k": 3, "baseline": "trailing 91d"}}),
        json!({"anomaly": {"k": 3, "baseline": "same time 29d ago"}}),
        json!({"anomaly": {"k": 3, "baseline": "same time 7h ago"}}),
        json!({"anomaly": {"k": 3, "baseline": "trailing 7d", "min_windows": 1}}),
        json!({"anomaly": {"k": 3, "baseline": "trailing 7d", "side": "up"}}),
    ] {
        let e = anomaly_rule(bad.clone(), ">").unwrap_err();
        assert_eq!(e.field, "threshold", "{bad}: {e:?}");
    }
    let e = anomaly_rule(json!({"anomaly": {"k": 3, "baseline": "trailing 7d"}}), "<").unwrap_err();
    assert_eq!(e.field, "comparison");
}

#[test]
fn anomaly_verdicts_follow_the_band_direction_and_minimum() {
    let a = |direction| Anomaly {
        k: 2.0,
        baseline: Baseline::Trailing { ms: 86_400_000 },
        min_windows: 3,
        direction,
    };
    let stats = BaselineStats::of([9.0, 10.0, 11.0]); // mean 10, sd 1
    assert_eq!((stats.windows, stats.mean, stats.sd), (3, 10.0, 1.0));
    let both = a(Direction::Both);
    assert_eq!(
        both.judge(12.5, Some(stats)),
        Verdict::Breach {
            value: 12.5,
            bound: 12.0
        }
    );
    assert_eq!(
        both.judge(7.5, Some(stats)),
        Verdict::Breach {
            value: 7.5,
            bound: 8.0
        }
    );
    assert_eq!(
        both.judge(11.9, Some(stats)),
        Verdict::Healthy {
            value: 11.9,
            bound: 12.0
        }
    );
    assert_eq!(
        a(Direction::Up).judge(7.0, Some(stats)),
        Verdict::Healthy {
            value: 7.0,
            bound: 12.0
        }
    );
    assert_eq!(
        a(Direction::Down).judge(13.0, Some(stats)),
        Verdict::Healthy {
            value: 13.0,
            bound: 8.0
        }
    );
    // Too few baseline windows, or none: no verdict.
    assert_eq!(
        both.judge(100.0, Some(BaselineStats::of([1.0, 2.0]))),
        Verdict::NoData
    );
    assert_eq!(both.judge(100.0, None), Verdict::NoData);
    // A constant baseline breaches on a real change only.
    let flat = BaselineStats::of([5.0; 6]);
    assert_eq!(
        both.judge(5.0, Some(flat)),
        Verdict::Healthy {
            value: 5.0,
            bound: 5.0
        }
    );
    assert!(matches!(
        both.judge(5.1, Some(flat)),
        Verdict::Breach { .. }
    ));
    // Through the state machine: the baseline mean becomes the transition's reference.
    let rule = anomaly_rule(
        json!({"anomaly": {"k": 2, "baseline": "trailing 1d", "min_windows": 3}}),
        ">",
    )
    .unwrap();
    let check = rule.check().unwrap().unwrap();
    let mut st = AlertState::new();
    let t = st
        .step_with(&check, w(0), Some(13.0), None, Some(stats))
        .unwrap();
    assert_eq!(
        t,
        Transition::Fired {
            window: w(0),
            value: 13.0,
            bound: 12.0,
            reference: Some(10.0),
            streak: 1
        }
    );
    let alert = Alert::from_transition(&rule, &target(), &t, W);
    assert!(
        alert
            .summary
            .ends_with("(baseline mean 10, mean ± 2σ of trailing 1d)"),
        "{}",
        alert.summary
    );
    // Plain `step` has no baseline: an anomaly rule then never judges.
    assert_eq!(AlertState::new().step(&check, w(1), Some(1e9), None), None);
}

#[test]
fn anomaly_baseline_spans_cover_the_windows_they_name() {
    let day = 86_400_000;
    let start = T0 + 18 * 3_600_000;
    assert_eq!(
        Baseline::Trailing { ms: 7 * day }.spans(start, W, None),
        vec![(start - 7 * day, start)]
    );
    let same = Baseline::SameTime { days: 3 }.spans(start, W, None);
    assert_eq!(
        same,
        vec![
            (start - day, start - day + W),
            (start - 2 * day, start - 2 * day + W),
            (start - 3 * day, start - 3 * day + W)
        ]
    );
    // The reference baseline ends at the window holding the profile's creation.
    let created = T0 + 5 * W + 123;
    assert_eq!(
        Baseline::Reference.spans(start, W, Some(created)),
        vec![(T0 + 5 * W - REFERENCE_SPAN_MS, T0 + 5 * W)]
    );
    assert!(Baseline::Reference.spans(start, W, None).is_empty());
}

proptest! {
    #[test]
    fn baseline_stats_match_the_two_pass_formula(values in proptest::collection::vec(-1e6f64..1e6, 2..200)) {
        let s = BaselineStats::of(values.iter().copied());
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        prop_assert_eq!(s.windows as usize, values.len());
        prop_assert!((s.mean - mean).abs() <= 1e-9 * mean.abs().max(1.0));
        prop_assert!((s.sd - sd).abs() <= 1e-7 * sd.max(1.0));
    }
}
