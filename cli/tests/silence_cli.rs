//! `driftdb silence add | list | rm` against a `driftdb serve` process: what is printed, the
//! JSON form, refusals naming the field with a failing exit status.

use crate::common::{self, ok, text};

use std::process::{Command, Output, Stdio};

fn driftdb(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(args)
        .args(["--server", url])
        .env_remove("DRIFTDB_SERVER")
        .env_remove("DRIFTDB_API_KEY")
        .output()
        .unwrap()
}

fn refused(o: Output) -> String {
    assert!(!o.status.success(), "should fail: {}", text(&o.stdout));
    text(&o.stderr)
}

#[test]
fn silences_are_added_listed_and_ended_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .args(["serve", "--insecure-no-auth", "--data"])
        .arg(dir.path().join("data"))
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("DRIFTDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (grpc, _) = common::ready_addrs(&mut child);
    let url = format!("http://{grpc}");

    let out = ok(driftdb(
        &url,
        &[
            "silence",
            "add",
            "--model",
            "fraud",
            "--rule",
            "psi-*",
            "--duration",
            "2h",
            "--comment",
            "catalog refresh",
            "--created-by",
            "alice",
        ],
    ));
    assert!(
        out.starts_with("silence s-1 active (model=fraud,rule=psi-*) from "),
        "{out}"
    );
    let err = refused(driftdb(
        &url,
        &[
            "silence",
            "add",
            "--model",
            "fraud",
            "--duration",
            "soon",
            "--comment",
            "x",
            "--created-by",
            "alice",
        ],
    ));
    assert!(err.contains("duration: `soon` is not a duration"), "{err}");
    // Neither --duration nor --ends-at: clap refuses before anything is sent.
    let err = refused(driftdb(
        &url,
        &["silence", "add", "--model", "fraud", "--comment", "x"],
    ));
    assert!(err.contains("--duration"), "{err}");

    let listed = ok(driftdb(&url, &["silence", "list", "--json"]));
    let rows: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["id"], "s-1");
    assert_eq!(rows[0]["state"], "active");
    assert_eq!(rows[0]["matchers"]["rule"], "psi-*");
    assert_eq!(rows[0]["created_by"], "alice");

    let out = ok(driftdb(&url, &["silence", "rm", "s-1"]));
    assert!(out.starts_with("silence s-1 expired at "), "{out}");
    let err = refused(driftdb(&url, &["silence", "rm", "s-9"]));
    assert!(err.contains("s-9"), "{err}");
    let table = ok(driftdb(&url, &["silence", "list"]));
    assert!(!table.contains("s-1"), "{table}");
    let all = ok(driftdb(&url, &["silence", "list", "--expired", "--json"]));
    let row: serde_json::Value = serde_json::from_str(all.trim()).unwrap();
    assert_eq!(
        (row["state"].as_str(), row["version"].as_u64()),
        (Some("expired"), Some(2))
    );

    let _ = child.kill();
    let _ = child.wait();
}
