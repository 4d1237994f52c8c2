//! `driftdb silence add|list|rm`: mute alert deliveries for a while, without losing the record.

use clap::{Args, Subcommand};
use driftdb_proto::v1 as pb;

use super::ServerArg;
use super::alerting::ms_text;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;

/// `driftdb silence …`.
#[derive(Debug, Subcommand)]
pub(crate) enum SilenceCmd {
    /// Silence alerts matching every given matcher for a while: they are still recorded (and
    /// shown as silenced in `alerts list` and `alerts watch`), but no action is called. A
    /// resolution is delivered exactly when its firing was. Matchers are globs (`*` any run,
    /// `?` one character).
    Add(Box<AddArgs>),
    /// List pending and active silences (`--expired`: every one).
    List {
        /// Include expired silences.
        #[arg(long)]
        expired: bool,
        /// One JSON object per silence and line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// End a silence now (it stays listed with --expired).
    Rm {
        /// Silence id (s-<n>).
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// Options of `driftdb silence add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// Model id, or a glob (`*`: every model; patterns need an operator key).
    #[arg(long)]
    model: String,
    /// Rule id or glob.
    #[arg(long)]
    rule: Option<String>,
    /// Series (feature name, `$score` …) or glob.
    #[arg(long)]
    feature: Option<String>,
    /// Segment as alerts show it: `all` or `region=eu` (or a glob, `region=*`).
    #[arg(long)]
    segment: Option<String>,
    /// Model version or glob.
    #[arg(long = "model-version")]
    model_version: Option<String>,
    /// Severity: critical, high, medium or low.
    #[arg(long)]
    severity: Option<String>,
    /// How long, e.g. `2h`, `30m`, `1d` (from --starts-at, default now).
    #[arg(long, conflicts_with = "ends_at", required_unless_present = "ends_at")]
    duration: Option<String>,
    /// When it starts (RFC 3339; default now).
    #[arg(long)]
    starts_at: Option<String>,
    /// When it ends (RFC 3339), instead of --duration.
    #[arg(long)]
    ends_at: Option<String>,
    /// Why (shown with every silenced alert's silence).
    #[arg(long)]
    comment: String,
    /// Who (default: $USER).
    #[arg(long)]
    created_by: Option<String>,
    #[command(flatten)]
    server: ServerArg,
}

fn silence_json(s: &pb::Silence) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "state": s.state, "matchers": s.matchers,
        "starts_at": ms_text(s.starts_at_ms), "ends_at": ms_text(s.ends_at_ms),
        "created_by": s.created_by, "comment": s.comment, "version": s.version,
    })
}

/// `label=glob,…` in label order.
fn matchers_text(s: &pb::Silence) -> String {
    driftdb_engine::rules::SILENCE_MATCHERS
        .iter()
        .filter_map(|k| s.matchers.get(*k).map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs one `driftdb silence` command.
pub(crate) async fn run(cmd: SilenceCmd) -> Result<()> {
    match cmd {
        SilenceCmd::Add(a) => {
            let AddArgs {
                model,
                rule,
                feature,
                segment,
                model_version,
                severity,
                duration,
                starts_at,
                ends_at,
                comment,
                created_by,
                server,
            } = *a;
            let mut matchers = serde_json::Map::new();
            for (k, v) in [
                ("model", Some(model)),
                ("rule", rule),
                ("feature", feature),
                ("segment", segment),
                ("version", model_version),
                ("severity", severity),
            ] {
                if let Some(v) = v {
                    matchers.insert(k.into(), v.into());
                }
            }
            let by = created_by
                .or_else(|| std::env::var("USER").ok())
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| {
                    Error::Invalid("--created-by is required when $USER is not set".into())
                })?;
            let mut def = serde_json::json!({
                "matchers": matchers, "created_by": by, "comment": comment,
            });
            for (k, v) in [
                ("duration", duration),
                ("starts_at", starts_at),
                ("ends_at", ends_at),
            ] {
                if let Some(v) = v {
                    def[k] = v.into();
                }
            }
            let mut c = Client::connect_with(&server.config()).await?;
            let s = c
                .rules
                .create_silence(pb::CreateSilenceRequest {
                    definition_json: def.to_string(),
                })
                .await?
                .into_inner()
                .silence
                .ok_or_else(|| Error::Internal("server returned no silence".into()))?;
            output::line(&format!(
                "silence {} {} ({}) from {} to {}",
                s.id,
                s.state,
                matchers_text(&s),
                ms_text(s.starts_at_ms),
                ms_text(s.ends_at_ms)
            ));
            Ok(())
        }
        SilenceCmd::List {
            expired,
            json,
            server,
        } => {
            let mut c = Client::connect_with(&server.config()).await?;
            let list = c
                .rules
                .list_silences(pb::ListSilencesRequest {
                    include_expired: expired,
                })
                .await?
                .into_inner()
                .silences;
            if json {
                for s in &list {
                    output::line(&silence_json(s).to_string());
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|s| {
                    vec![
                        s.id.clone(),
                        s.state.clone(),
                        matchers_text(s),
                        ms_text(s.starts_at_ms),
                        ms_text(s.ends_at_ms),
                        s.created_by.clone(),
                        s.comment.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "id",
                    "state",
                    "matchers",
                    "starts_at",
                    "ends_at",
                    "by",
                    "comment",
                ],
                &rows,
            );
            Ok(())
        }
        SilenceCmd::Rm { id, server } => {
            let mut c = Client::connect_with(&server.config()).await?;
            let s = c
                .rules
                .expire_silence(pb::ExpireSilenceRequest { id })
                .await?
                .into_inner()
                .silence
                .ok_or_else(|| Error::Internal("server returned no silence".into()))?;
            output::line(&format!(
                "silence {} expired at {}",
                s.id,
                ms_text(s.ends_at_ms)
            ));
            Ok(())
        }
    }
}
