//! The dependency direction of SPEC §1 and STYLE.md, read from `cargo metadata`.

use std::collections::BTreeMap;

use serde_json::Value;

/// Normal and build dependencies of each workspace package (dev-dependencies are free).
fn edges() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut edges = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].as_str() != Some("dev"))
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        edges.insert(p["name"].as_str().unwrap().to_string(), deps);
    }
    edges
}

const TRANSPORT: &[&str] = &["tonic", "prost", "axum", "tonic-prost", "hyper"];

/// The forbidden dependencies of a package, or `None` if it is not a core package.
fn forbidden(pkg: &str) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = vec!["driftdb-server"];
    match pkg {
        "driftdb-engine" => {
            f.extend([
                "driftdb-storage",
                "driftdb-query",
                "driftdb-proto",
                "rocksdb",
                "tokio",
                "zstd",
            ]);
            f.extend(TRANSPORT);
        }
        "driftdb-proto" => f.extend(["driftdb-engine", "driftdb-storage", "driftdb-query"]),
        "driftdb-storage" => {
            f.extend(["driftdb-query", "driftdb-proto", "tokio"]);
            f.extend(TRANSPORT);
        }
        "driftdb-query" => {
            f.extend(["driftdb-proto", "rocksdb"]);
            f.extend(TRANSPORT);
        }
        _ => {}
    }
    f
}

#[test]
fn no_forbidden_dependency_edges() {
    let edges = edges();
    for core in [
        "driftdb-engine",
        "driftdb-storage",
        "driftdb-query",
        "driftdb-proto",
        "driftdb-server",
    ] {
        assert!(edges.contains_key(core), "workspace lacks {core}");
    }
    let mut bad = Vec::new();
    for (pkg, deps) in &edges {
        if pkg == "driftdb-server" {
            continue;
        }
        for d in deps {
            if forbidden(pkg).contains(&d.as_str()) {
                bad.push(format!("{pkg} -> {d}"));
            }
        }
    }
    assert!(bad.is_empty(), "forbidden dependency edges: {bad:?}");
}

#[test]
fn the_checker_itself_flags_a_bad_edge() {
    assert!(forbidden("driftdb-engine").contains(&"rocksdb"));
    assert!(forbidden("driftdb-storage").contains(&"driftdb-query"));
    assert!(forbidden("driftdb-query").contains(&"driftdb-server"));
    assert!(!forbidden("driftdb-query").contains(&"driftdb-storage"));
}
