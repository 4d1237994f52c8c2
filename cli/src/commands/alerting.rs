//! `driftdb rules`, `driftdb alerts` and `driftdb event`: rule files in, alerts out.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use driftdb_proto::v1 as pb;
use tokio_stream::StreamExt;

use super::ServerArg;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;

/// `driftdb rules …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RulesCmd {
    /// Add a rule from a JSON file (or replace the rule with its id: the version goes up).
    /// The format is in the README ("Rules and alerts"); an invalid rule is refused with the
    /// field at fault.
    Add {
        /// Rule definition JSON.
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List rules (secrets shown as ***).
    List {
        /// Only rules that apply to this model.
        #[arg(long)]
        model: Option<String>,
        /// One JSON object per rule and line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Delete a rule (its stored versions and past alerts are kept).
    Rm {
        /// Rule id.
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// `driftdb alerts …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCmd {
    /// Print alerts as they fire and resolve, after replaying the stored ones (resumable:
    /// `--after N` starts after sequence N). Runs until interrupted, or `--count` alerts.
    Watch(WatchArgs),
    /// The alert history, newest first: when each alert fired and resolved, its value and
    /// threshold, and what each action did.
    List {
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// At most this many alerts.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object per alert and line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Acknowledge a firing (someone is on it): who and why are recorded on the alert and
    /// shown by `alerts list`.
    Ack {
        /// The firing's sequence number (the `seq` column of `alerts list`).
        sequence: u64,
        /// A note, e.g. a ticket or "looking into the feed".
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// Options of `driftdb alerts watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Only this model.
    #[arg(long)]
    model: Option<String>,
    /// Only this severity and worse: critical, high, medium or low.
    #[arg(long)]
    severity: Option<String>,
    /// Resume after this sequence number (0: from the oldest kept).
    #[arg(long, default_value_t = 0)]
    after: u64,
    /// Stop after this many alerts.
    #[arg(long)]
    count: Option<u64>,
    /// One JSON object per alert and line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArg,
}

/// Options of `driftdb event`.
#[derive(Debug, Args)]
pub(crate) struct EventArgs {
    /// Event name, e.g. `release` or `catalog_refresh`.
    pub event: String,
    /// Model id.
    #[arg(long)]
    pub model: String,
    /// The model version it concerns (default: the newest with a reference profile).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub server: ServerArg,
}

fn severity_name(v: i32) -> &'static str {
    match pb::Severity::try_from(v) {
        Ok(pb::Severity::Critical) => "critical",
        Ok(pb::Severity::High) => "high",
        Ok(pb::Severity::Medium) => "medium",
        Ok(pb::Severity::Low) => "low",
        _ => "-",
    }
}

fn parse_severity(s: &str) -> Result<pb::Severity> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "critical" => pb::Severity::Critical,
        "high" => pb::Severity::High,
        "medium" => pb::Severity::Medium,
        "low" => pb::Severity::Low,
        other => {
            return Err(Error::Invalid(format!(
                "--severity {other:?}: expected critical, high, medium or low"
            )));
        }
    })
}

/// An instant in ms as RFC 3339; `-` for 0 (not set).
pub(crate) fn ms_text(ms: i64) -> String {
    if ms == 0 {
        "-".into()
    } else {
        driftdb_engine::time::Timestamp(ms).to_rfc3339()
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        driftdb_query::table::format_number(v)
    } else {
        "-".into()
    }
}

/// An alert as one JSON object.
pub(crate) fn alert_json(a: &pb::Alert) -> serde_json::Value {
    let f = |v: f64| v.is_finite().then_some(v);
    let mut v = serde_json::json!({
        "sequence": a.sequence,
        "state": a.state,
        "severity": severity_name(a.severity),
        "rule_id": a.rule_id,
        "rule_kind": a.rule_kind,
        "model": a.model,
        "version": a.version,
        "feature": a.feature,
        "segment": a.segment,
        "metric": a.metric,
        "value": f(a.value),
        "threshold": f(a.threshold),
        "reference": f(a.reference),
        "window_start": ms_text(a.window_start_ms),
        "fired_at": ms_text(a.fired_at_ms),
        "resolved_at": (a.resolved_at_ms != 0).then(|| ms_text(a.resolved_at_ms)),
        "event": a.event,
        "summary": a.summary,
        "suppressed": (!a.suppressed.is_empty()).then_some(&a.suppressed),
        "acknowledged": (!a.acknowledged_by.is_empty()).then(|| serde_json::json!({
            "by": a.acknowledged_by, "at": ms_text(a.acknowledged_at_ms), "comment": a.ack_comment,
        })),
        "actions": a.actions.iter().map(|r| serde_json::json!({
            "kind": r.kind, "url": r.url, "delivered": r.delivered, "attempts": r.attempts,
            "last_error": r.last_error, "dead_lettered": r.dead_lettered,
        })).collect::<Vec<_>>(),
    });
    // In a cluster only: the node that fired it (its `sequence` is that node's).
    if !a.node.is_empty()
        && let Some(o) = v.as_object_mut()
    {
        o.insert("node".into(), a.node.clone().into());
    }
    v
}

/// An alert as one line for people: `#7 FIRING critical  <summary>`.
pub(crate) fn alert_line(a: &pb::Alert) -> String {
    let muted = if a.suppressed.is_empty() {
        String::new()
    } else {
        format!(" [not delivered: {}]", a.suppressed)
    };
    format!(
        "#{:<4} {:<8} {:<8} {}{muted}",
        a.sequence,
        a.state.to_uppercase(),
        severity_name(a.severity),
        a.summary
    )
}

async fn add(file: PathBuf, server: ServerArg) -> Result<()> {
    let text = std::fs::read_to_string(&file).map_err(|e| Error::File {
        path: file.display().to_string(),
        detail: e.to_string(),
    })?;
    let mut c = Client::connect_with(&server.config()).await?;
    let r = c
        .rules
        .create_rule(pb::CreateRuleRequest {
            definition_json: text,
        })
        .await?
        .into_inner()
        .rule
        .ok_or_else(|| Error::Internal("server returned no rule".into()))?;
    output::line(&format!("rule {} stored (version {})", r.id, r.version));
    Ok(())
}

async fn list(model: Option<String>, json: bool, server: ServerArg) -> Result<()> {
    let mut c = Client::connect_with(&server.config()).await?;
    let rules = c
        .rules
        .list_rules(pb::ListRulesRequest {
            model: model.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .rules;
    if json {
        for r in &rules {
            let def: serde_json::Value =
                serde_json::from_str(&r.definition_json).unwrap_or(serde_json::Value::Null);
            output::line(
                &serde_json::json!({
                    "id": r.id, "version": r.version, "model": r.model, "kind": r.kind,
                    "severity": severity_name(r.severity), "rule": def,
                    "last_error": (!r.last_error.is_empty()).then_some(&r.last_error),
                })
                .to_string(),
            );
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rules
        .iter()
        .map(|r| {
            let def: serde_json::Value =
                serde_json::from_str(&r.definition_json).unwrap_or(serde_json::Value::Null);
            let what = match r.kind.as_str() {
                "metric" => format!(
                    "{}({}) {} {}",
                    def["metric"].as_str().unwrap_or("?"),
                    def["selector"].as_str().unwrap_or("?"),
                    def["comparison"].as_str().unwrap_or("?"),
                    def["threshold"]
                ),
                "freshness" => format!(
                    "retrain every {}",
                    def["retrain_every"].as_str().unwrap_or("?")
                ),
                _ => format!("on event {}", def["event"].as_str().unwrap_or("?")),
            };
            vec![
                r.id.clone(),
                r.model.clone(),
                severity_name(r.severity).to_string(),
                what,
                r.version.to_string(),
                if r.last_error.is_empty() {
                    "-".into()
                } else {
                    r.last_error.clone()
                },
            ]
        })
        .collect();
    output::table(
        &[
            "id",
            "model",
            "severity",
            "condition",
            "version",
            "last_error",
        ],
        &rows,
    );
    Ok(())
}

async fn rm(id: String, server: ServerArg) -> Result<()> {
    let mut c = Client::connect_with(&server.config()).await?;
    c.rules
        .delete_rule(pb::DeleteRuleRequest { id: id.clone() })
        .await?;
    output::line(&format!("rule {id} deleted"));
    Ok(())
}

async fn watch(a: WatchArgs) -> Result<()> {
    let min = a.severity.as_deref().map(parse_severity).transpose()?;
    let mut c = Client::connect_with(&a.server.config()).await?;
    let mut stream = c
        .alerts
        .watch_alerts(pb::WatchAlertsRequest {
            after_sequence: a.after,
            model: a.model.unwrap_or_default(),
            min_severity: min.map_or(0, |s| s as i32),
        })
        .await?
        .into_inner();
    let mut seen = 0u64;
    while let Some(alert) = stream.next().await {
        let alert = alert?;
        if a.json {
            output::line(&alert_json(&alert).to_string());
        } else {
            output::line(&alert_line(&alert));
        }
        seen += 1;
        if a.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}

async fn history(model: Option<String>, limit: u32, json: bool, server: ServerArg) -> Result<()> {
    let mut c = Client::connect_with(&server.config()).await?;
    let alerts = c
        .alerts
        .list_alerts(pb::ListAlertsRequest {
            model: model.unwrap_or_default(),
            limit,
            ..Default::default()
        })
        .await?
        .into_inner()
        .alerts;
    if json {
        for a in &alerts {
            output::line(&alert_json(a).to_string());
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let series = if a.feature.is_empty() {
                format!("{}@{}", a.model, a.version)
            } else {
                format!("{}@{}.{}", a.model, a.version, a.feature)
            };
            let segment = a
                .segment
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .next()
                .unwrap_or_else(|| "all".into());
            let actions = a
                .actions
                .iter()
                .map(|r| {
                    let state = if r.delivered {
                        "ok"
                    } else if r.dead_lettered {
                        "dead"
                    } else {
                        "pending"
                    };
                    format!("{}:{state}", r.kind)
                })
                .collect::<Vec<_>>()
                .join(",");
            vec![
                a.sequence.to_string(),
                if a.acknowledged_by.is_empty() {
                    a.state.clone()
                } else {
                    format!("{} (ack: {})", a.state, a.acknowledged_by)
                },
                severity_name(a.severity).to_string(),
                a.rule_id.clone(),
                series,
                segment,
                a.metric.clone(),
                num(a.value),
                num(a.threshold),
                ms_text(a.fired_at_ms),
                ms_text(a.resolved_at_ms),
                if !a.suppressed.is_empty() {
                    a.suppressed.clone()
                } else if actions.is_empty() {
                    "-".into()
                } else {
                    actions
                },
            ]
        })
        .collect();
    output::table(
        &[
            "seq",
            "state",
            "severity",
            "rule",
            "series",
            "segment",
            "metric",
            "value",
            "threshold",
            "fired_at",
            "resolved_at",
            "actions",
        ],
        &rows,
    );
    Ok(())
}

async fn event(a: EventArgs) -> Result<()> {
    let mut c = Client::connect_with(&a.server.config()).await?;
    let alerts = c
        .rules
        .announce_event(pb::AnnounceEventRequest {
            model: a.model.clone(),
            event: a.event.clone(),
            version: a.version.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .alerts;
    output::line(&format!(
        "event {} announced for {}: {} alert(s)",
        a.event,
        a.model,
        alerts.len()
    ));
    for al in &alerts {
        output::line(&alert_line(al));
    }
    Ok(())
}

/// Runs a `rules` subcommand.
pub(crate) async fn rules(cmd: RulesCmd) -> Result<()> {
    match cmd {
        RulesCmd::Add { file, server } => add(file, server).await,
        RulesCmd::List {
            model,
            json,
            server,
        } => list(model, json, server).await,
        RulesCmd::Rm { id, server } => rm(id, server).await,
    }
}

/// Runs an `alerts` subcommand.
pub(crate) async fn alerts(cmd: AlertsCmd) -> Result<()> {
    match cmd {
        AlertsCmd::Watch(a) => watch(a).await,
        AlertsCmd::List {
            model,
            limit,
            json,
            server,
        } => history(model, limit, json, server).await,
        AlertsCmd::Ack {
            sequence,
            comment,
            by,
            server,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| Error::Invalid("--by is required when $USER is not set".into()))?;
            let mut c = Client::connect_with(&server.config()).await?;
            let a = c
                .alerts
                .acknowledge_alert(pb::AcknowledgeAlertRequest {
                    sequence,
                    by,
                    comment,
                })
                .await?
                .into_inner();
            output::line(&format!(
                "alert {} acknowledged by {} at {}",
                a.sequence,
                a.acknowledged_by,
                ms_text(a.acknowledged_at_ms)
            ));
            Ok(())
        }
    }
}

/// Runs `driftdb event`.
pub(crate) async fn announce(a: EventArgs) -> Result<()> {
    event(a).await
}
