//! `driftdb keys`: create, list and revoke API keys, against a running server (with an admin
//! key) or offline on a stopped server's data directory (`--data`, which needs no key: whoever
//! can open the data directory owns the data anyway). Also the first-start bootstrap of
//! `driftdb serve`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use driftdb_engine::time::{Clock, SystemClock, Timestamp};
use driftdb_proto::v1 as pb;
use driftdb_storage::{Store, StoreConfig};

use super::ServerArg;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::output;
use driftdb_server::auth::{KeyRecord, KeySpec, KeyStore, Scopes};
use driftdb_server::node::Node;

/// The file `driftdb serve` writes the first operator key to, inside the data directory.
pub(crate) const ADMIN_KEY_FILE: &str = "admin.key";

/// `driftdb keys …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCmd {
    /// Create a key and print its token on stdout: it is shown this once and stored only as a
    /// hash. A team admin key creates keys of its own team with scopes it holds.
    Create(CreateArgs),
    /// List keys (id, name, team, scopes, created, revoked); never secrets.
    List {
        /// One JSON object per key and line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a key by id; it stops working at once.
    Revoke {
        /// Key id (the 16 hex digits after `ddb_`).
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Where the keys are: a server, or a data directory.
#[derive(Debug, Args)]
pub(crate) struct Target {
    /// Work offline on this data directory instead of asking a server (the server must be
    /// stopped: RocksDB allows one process).
    #[arg(long)]
    data: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArg,
}

/// `driftdb keys create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The key's team: it sees only that team's models (default with a team admin key: its
    /// own team).
    #[arg(long, conflicts_with = "operator")]
    team: Option<String>,
    /// An operator key: every team, and the models without a team.
    #[arg(long)]
    operator: bool,
    /// Comma-separated scopes: ingest, read, admin.
    #[arg(long)]
    scopes: String,
    /// A label for people (who or what uses the key).
    #[arg(long, default_value = "cli")]
    name: String,
    #[command(flatten)]
    target: Target,
}

fn open_offline(dir: &Path) -> Result<KeyStore> {
    if !dir.join("CURRENT").exists() {
        return Err(Error::File {
            path: dir.display().to_string(),
            detail: "not a driftdb data directory".into(),
        });
    }
    let store = Store::open(dir, StoreConfig::default(), Arc::new(SystemClock)).map_err(|e| {
        Error::File {
            path: dir.display().to_string(),
            detail: format!("cannot open (is the server still running?): {e}"),
        }
    })?;
    Ok(KeyStore::load(Arc::new(store))?)
}

fn record_from_pb(k: pb::ApiKey) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: k.id,
        name: k.name,
        team: Some(k.team).filter(|t| !t.is_empty()),
        scopes: Scopes::try_from(k.scopes)?,
        created_at_ms: k.created_at_ms,
        created_by: Some(k.created_by).filter(|c| !c.is_empty()),
        revoked_at_ms: (k.revoked_at_ms != 0).then_some(k.revoked_at_ms),
    })
}

fn describe(k: &KeyRecord) -> String {
    format!(
        "key {} ({}; {}; scopes {})",
        k.id,
        k.name,
        k.team
            .as_deref()
            .map_or_else(|| "operator".to_string(), |t| format!("team {t}")),
        k.scopes
    )
}

/// Runs a `driftdb keys` command.
pub(crate) async fn run(cmd: KeysCmd) -> Result<()> {
    match cmd {
        KeysCmd::Create(a) => {
            let scopes = Scopes::parse_list(&a.scopes)?;
            let (record, token) = match &a.target.data {
                Some(dir) => {
                    if a.team.is_none() && !a.operator {
                        return Err(Error::Invalid(
                            "name the key's team (--team) or ask for an operator key (--operator)"
                                .into(),
                        ));
                    }
                    let keys = open_offline(dir)?;
                    let k = keys.create(
                        KeySpec {
                            name: a.name,
                            team: a.team,
                            scopes,
                            created_by: None,
                        },
                        SystemClock.now(),
                    )?;
                    (k.record, k.token)
                }
                None => {
                    let mut c = Client::connect_with(&a.target.server.config()).await?;
                    let r = c
                        .admin
                        .create_key(pb::CreateKeyRequest {
                            name: a.name,
                            team: a.team.unwrap_or_default(),
                            scopes: scopes.names().into_iter().map(str::to_string).collect(),
                            operator: a.operator,
                        })
                        .await?
                        .into_inner();
                    let rec = r
                        .key
                        .ok_or_else(|| Error::Internal("server returned no key".into()))?;
                    (record_from_pb(rec)?, r.token)
                }
            };
            output::line(&token);
            eprintln!(
                "created {}; the token above is shown only this once",
                describe(&record)
            );
            Ok(())
        }
        KeysCmd::List { json, target } => {
            let keys = match &target.data {
                Some(dir) => open_offline(dir)?.list(),
                None => {
                    let mut c = Client::connect_with(&target.server.config()).await?;
                    c.admin
                        .list_keys(pb::ListKeysRequest {})
                        .await?
                        .into_inner()
                        .keys
                        .into_iter()
                        .map(record_from_pb)
                        .collect::<Result<Vec<_>>>()?
                }
            };
            if json {
                for k in &keys {
                    output::line(&driftdb_server::auth::admin::key_json(k).to_string());
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.team.clone().unwrap_or_else(|| "(operator)".into()),
                        k.scopes.to_string(),
                        Timestamp(k.created_at_ms).to_rfc3339(),
                        k.revoked_at_ms
                            .map(|t| Timestamp(t).to_rfc3339())
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["id", "name", "team", "scopes", "created", "revoked"],
                &rows,
            );
            Ok(())
        }
        KeysCmd::Revoke { id, target } => {
            let rec = match &target.data {
                Some(dir) => open_offline(dir)?.revoke(&id, SystemClock.now())?,
                None => {
                    let mut c = Client::connect_with(&target.server.config()).await?;
                    let k = c
                        .admin
                        .revoke_key(pb::RevokeKeyRequest { id })
                        .await?
                        .into_inner()
                        .key
                        .ok_or_else(|| Error::Internal("server returned no key".into()))?;
                    record_from_pb(k)?
                }
            };
            output::line(&format!("revoked {}", describe(&rec)));
            Ok(())
        }
    }
}

/// On a node that never had a key, creates an operator key with every scope and writes its
/// token to `<data>/admin.key`, readable by its owner only (0600). Returns the file's path
/// when it did. A node whose keys were all revoked is left alone: then a new key is made
/// offline with `driftdb keys create --data DIR`.
pub(crate) fn bootstrap(node: &Node, data: &Path) -> Result<Option<PathBuf>> {
    if !node.auth.keys().is_empty() {
        return Ok(None);
    }
    let k = node.auth.keys().create(
        KeySpec {
            name: "bootstrap".into(),
            team: None,
            scopes: Scopes::ALL,
            created_by: None,
        },
        node.clock.now(),
    )?;
    let path = data.join(ADMIN_KEY_FILE);
    if let Err(e) = write_private(&path, &k.token) {
        // Nobody could use the key: take it back.
        let _ = node.auth.keys().revoke(&k.record.id, node.clock.now());
        return Err(Error::File {
            path: path.display().to_string(),
            detail: format!("cannot write the first operator key: {e}"),
        });
    }
    Ok(Some(path))
}

/// Writes `text` to `path`, created (or truncated) with mode 0600.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    writeln!(f, "{text}")?;
    f.sync_all()
}
