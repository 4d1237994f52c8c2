//! `driftdb serve --config FILE`: the node's settings as one JSON file. Every field is
//! optional; `config.example.json` at the repository root lists them all with their defaults.

use std::path::{Path, PathBuf};

use driftdb_engine::time::DurationMs;
use driftdb_storage::StoreConfig;

use crate::error::{Error, Result};

/// Settings of `driftdb serve --config FILE` (JSON). Every field is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// How long windows are kept (default `90d`).
    pub retention: Option<String>,
    /// Age after which 15-minute windows are downsampled to hourly (default `30d`).
    pub downsample_after: Option<String>,
    /// fsync the WAL before every ack (default true).
    pub sync_writes: Option<bool>,
    /// Block cache in MiB (default 256).
    pub block_cache_mb: Option<usize>,
    /// Ingest batches processed at once before RESOURCE_EXHAUSTED (default 8).
    pub ingest_concurrency: Option<usize>,
    /// Keep daily rollups so whole-day queries read one window per day (default true).
    pub daily_rollups: Option<bool>,
    /// How long after a window ends it is merged into its day's rollup (default `1h`); `"0"`
    /// merges on write (every delta written twice: slower ingest, today's day readable from
    /// its rollup at once).
    pub rollup_after: Option<String>,
    /// Rule evaluation and webhook delivery: `tick`, `max_catchup_windows`, `retry_initial`,
    /// `retry_max`, `dead_letter_after`, `delivery_timeout`, `delivery_concurrency`,
    /// `deny_private_targets`.
    pub rules: Option<crate::rules::RulesConfigFile>,
    /// Bounds on what the server holds at once (every field optional; see
    /// [`crate::limits::Limits`]): `ingest_streams`, `ingest_idle_secs`, `ingest_memory_mb`, `max_message_mb`,
    /// `max_http_body_mb`, `http_concurrency`, `watchers`.
    pub limits: Option<LimitsFile>,
    /// PEM certificate chain for TLS (like `--tls-cert`, which wins).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (like `--tls-key`, which wins).
    pub tls_key: Option<PathBuf>,
}

/// The JSON form of [`crate::limits::Limits`] (sizes in MiB).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// [`crate::limits::Limits::ingest_streams`].
    pub ingest_streams: Option<usize>,
    /// [`crate::limits::Limits::ingest_idle_timeout`], in seconds.
    pub ingest_idle_secs: Option<u64>,
    /// [`crate::limits::Limits::ingest_memory_bytes`], in MiB.
    pub ingest_memory_mb: Option<usize>,
    /// [`crate::limits::Limits::max_message_bytes`], in MiB.
    pub max_message_mb: Option<usize>,
    /// [`crate::limits::Limits::max_http_body_bytes`], in MiB.
    pub max_http_body_mb: Option<usize>,
    /// [`crate::limits::Limits::http_concurrency`].
    pub http_concurrency: Option<usize>,
    /// [`crate::limits::Limits::watchers`].
    pub watchers: Option<usize>,
    /// [`crate::limits::Limits::query_concurrency`].
    pub query_concurrency: Option<usize>,
    /// [`crate::limits::Limits::query_timeout`], in seconds.
    pub query_timeout_secs: Option<u64>,
}

impl ServeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<ServeConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| Error::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// The store configuration these settings give.
    pub fn store_config(&self) -> Result<StoreConfig> {
        let mut c = StoreConfig::default();
        if let Some(r) = &self.retention {
            c.retention_ms = DurationMs::parse(r)?.millis();
        }
        if let Some(d) = &self.downsample_after {
            c.downsample_after_ms = DurationMs::parse(d)?.millis();
        }
        if let Some(s) = self.sync_writes {
            c.sync_writes = s;
        }
        if let Some(mb) = self.block_cache_mb {
            c.block_cache_bytes = mb << 20;
        }
        if let Some(r) = self.daily_rollups {
            c.daily_rollups = r;
        }
        if let Some(r) = &self.rollup_after {
            c.rollup_after_ms = if r == "0" {
                0
            } else {
                DurationMs::parse(r)?.millis()
            };
        }
        c.validate()?;
        Ok(c)
    }

    /// The limits these settings give (defaults filled in; every bound at least 1).
    pub fn limits(&self) -> crate::limits::Limits {
        let mut l = crate::limits::Limits::default();
        if let Some(n) = self.ingest_concurrency {
            l.ingest_concurrency = n.max(1);
        }
        if let Some(f) = &self.limits {
            let mib = |n: usize| n.max(1).saturating_mul(1 << 20);
            if let Some(n) = f.ingest_streams {
                l.ingest_streams = n.max(1);
            }
            if let Some(n) = f.ingest_idle_secs {
                l.ingest_idle_timeout = std::time::Duration::from_secs(n.max(1));
            }
            if let Some(n) = f.ingest_memory_mb {
                l.ingest_memory_bytes = mib(n);
            }
            if let Some(n) = f.max_message_mb {
                l.max_message_bytes = mib(n);
            }
            if let Some(n) = f.max_http_body_mb {
                l.max_http_body_bytes = mib(n);
            }
            if let Some(n) = f.http_concurrency {
                l.http_concurrency = n.max(1);
            }
            if let Some(n) = f.watchers {
                l.watchers = n.max(1);
            }
            if let Some(n) = f.query_concurrency {
                l.query_concurrency = n.max(1);
            }
            if let Some(n) = f.query_timeout_secs {
                l.query_timeout = std::time::Duration::from_secs(n.max(1));
            }
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_with_default_limits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.json");
        let cfg = ServeConfig::load(&path).unwrap();
        assert_eq!(cfg.store_config().unwrap().rollup_after_ms, 3_600_000);
        let on_write: ServeConfig = serde_json::from_str(r#"{"rollup_after": "0"}"#).unwrap();
        assert_eq!(on_write.store_config().unwrap().rollup_after_ms, 0);
        let bad: ServeConfig = serde_json::from_str(r#"{"rollup_after": "-1h"}"#).unwrap();
        assert!(bad.store_config().is_err());
        let rules = cfg.rules.clone().unwrap().resolve().unwrap();
        assert!(!rules.deny_private_targets);
        assert_eq!(cfg.limits(), crate::limits::Limits::default());
        let cfg: ServeConfig =
            serde_json::from_str(r#"{"limits": {"ingest_memory_mb": 4, "watchers": 0}}"#).unwrap();
        let l = cfg.limits();
        assert_eq!(l.ingest_memory_bytes, 4 << 20);
        assert_eq!(l.watchers, 1, "every bound is at least 1");
        assert!(serde_json::from_str::<ServeConfig>(r#"{"limits": {"bogus": 1}}"#).is_err());
    }
}
