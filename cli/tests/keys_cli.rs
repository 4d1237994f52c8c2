//! API keys through the command line, against `driftdb serve` processes: the first-start
//! operator key in `<data>/admin.key` (mode 0600), `driftdb keys create | list | revoke` online
//! and offline (`--data`), clients with and without keys, and `--insecure-no-auth`.

use crate::common::{self, ok, text};

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};

struct Server {
    child: Child,
    url: String,
    stderr: ChildStderr,
}

impl Server {
    /// Stops the server and returns what it wrote on stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut s = String::new();
        let _ = self.stderr.read_to_string(&mut s);
        s
    }
}

fn serve(data: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(extra)
        .env("DRIFTDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (grpc, _) = common::ready_addrs(&mut child);
    let stderr = child.stderr.take().unwrap();
    Server {
        child,
        url: format!("http://{grpc}"),
        stderr,
    }
}

/// Runs `driftdb <args>`, with `key` in `DRIFTDB_API_KEY` when given.
fn driftdb(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_driftdb"));
    cmd.args(args)
        .args(["--server", url])
        .env_remove("DRIFTDB_SERVER")
        .env_remove("DRIFTDB_API_KEY");
    if let Some(k) = key {
        cmd.env("DRIFTDB_API_KEY", k);
    }
    cmd.output().unwrap()
}

#[test]
fn keys_from_first_start_to_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(&data, &[]);
    let key_file = data.join("admin.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let admin = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(admin.starts_with("ddb_"), "{admin}");
    let url = server.url.clone();

    // No key, a wrong key: refused with a one-line reason.
    let o = driftdb(&url, None, &["model", "list"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("missing API key"),
        "{}",
        text(&o.stderr)
    );
    let o = driftdb(&url, Some("ddb_nope"), &["model", "list"]);
    assert!(
        text(&o.stderr).contains("invalid or revoked API key"),
        "{}",
        text(&o.stderr)
    );
    ok(driftdb(&url, Some(&admin), &["model", "list"]));

    // A team key, printed once; listed without its secret.
    let token = ok(driftdb(
        &url,
        Some(&admin),
        &[
            "keys",
            "create",
            "--team",
            "fraud",
            "--scopes",
            "read,ingest",
            "--name",
            "pipeline",
        ],
    ))
    .trim()
    .to_string();
    assert!(token.starts_with("ddb_"), "{token}");
    let id = token[4..20].to_string();
    let secret = token[21..].to_string();
    let listed = ok(driftdb(&url, Some(&admin), &["keys", "list"]));
    assert!(listed.contains(&id) && listed.contains("pipeline") && listed.contains("fraud"));
    assert!(listed.contains("ingest,read"), "{listed}");
    assert!(!listed.contains(&secret), "{listed}");
    let json = ok(driftdb(&url, Some(&admin), &["keys", "list", "--json"]));
    assert_eq!(json.lines().count(), 2, "{json}");
    // The team key reads but cannot create keys (no admin scope).
    ok(driftdb(&url, Some(&token), &["model", "list"]));
    let o = driftdb(
        &url,
        Some(&token),
        &["keys", "create", "--team", "fraud", "--scopes", "read"],
    );
    assert!(
        text(&o.stderr).contains("lacks the admin scope"),
        "{}",
        text(&o.stderr)
    );
    // Revoked: refused at once.
    let out = ok(driftdb(&url, Some(&admin), &["keys", "revoke", &id]));
    assert!(out.contains("revoked key"), "{out}");
    let o = driftdb(&url, Some(&token), &["model", "list"]);
    assert!(
        text(&o.stderr).contains("invalid or revoked"),
        "{}",
        text(&o.stderr)
    );
    let log = server.stop();
    assert!(log.contains("admin.key"), "{log}");
    assert!(
        !log.contains(&admin[21..]),
        "the server printed the key's secret"
    );

    // Offline, on the stopped server's data: a new operator key.
    let o = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args([
            "keys",
            "create",
            "--operator",
            "--scopes",
            "read",
            "--name",
            "grafana",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    let grafana = ok(o).trim().to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["keys", "list", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let listed = ok(o);
    assert!(
        listed.contains("grafana") && listed.contains("(operator)"),
        "{listed}"
    );

    // A restart keeps the first key file as it was (no second bootstrap).
    let server = serve(&data, &[]);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        admin,
        "admin.key is written once"
    );
    ok(driftdb(&server.url, Some(&grafana), &["model", "list"]));
    let o = driftdb(&server.url, Some(&grafana), &["keys", "list"]);
    assert!(
        text(&o.stderr).contains("lacks the admin scope"),
        "{}",
        text(&o.stderr)
    );
    let log = server.stop();
    assert!(!log.contains("created the first operator key"), "{log}");
}

#[test]
fn insecure_no_auth_warns_and_lets_anyone_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("data"), &["--insecure-no-auth"]);
    ok(driftdb(&server.url, None, &["model", "list"]));
    assert!(!dir.path().join("data/admin.key").exists());
    let log = server.stop();
    assert!(log.contains("WARNING: --insecure-no-auth"), "{log}");
}
