//! The crate graph of docs/ARCHITECTURE.md, read from `cargo metadata`, and the one-way module
//! graph inside `server`, read from its source.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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
/// What only the command line may carry: argument parsing, terminals, file formats, the
/// allocator.
const CLIENT_SIDE: &[&str] = &["clap", "indicatif", "csv", "parquet", "arrow", "mimalloc"];

/// The forbidden dependencies of a package.
fn forbidden(pkg: &str) -> Vec<&'static str> {
    // Nothing depends on the binary's crate; only the binary depends on the server.
    let mut f: Vec<&'static str> = vec!["driftdb-cli"];
    match pkg {
        "driftdb-engine" => {
            f.extend([
                "driftdb-server",
                "driftdb-storage",
                "driftdb-query",
                "driftdb-prom",
                "driftdb-proto",
                "rocksdb",
                "tokio",
                "zstd",
            ]);
            f.extend(TRANSPORT);
        }
        "driftdb-proto" => f.extend([
            "driftdb-server",
            "driftdb-engine",
            "driftdb-storage",
            "driftdb-query",
            "driftdb-prom",
        ]),
        "driftdb-storage" => {
            f.extend([
                "driftdb-server",
                "driftdb-query",
                "driftdb-prom",
                "driftdb-proto",
                "tokio",
            ]);
            f.extend(TRANSPORT);
        }
        "driftdb-query" => {
            f.extend(["driftdb-server", "driftdb-prom", "driftdb-proto", "rocksdb"]);
            f.extend(TRANSPORT);
        }
        "driftdb-prom" => {
            f.extend(["driftdb-server", "driftdb-proto", "rocksdb", "tokio"]);
            f.extend(TRANSPORT);
        }
        "driftdb-report" => {
            f.extend([
                "driftdb-server",
                "driftdb-prom",
                "driftdb-proto",
                "rocksdb",
                "tokio",
            ]);
            f.extend(TRANSPORT);
            f.extend(CLIENT_SIDE);
        }
        "driftdb-server" => f.extend(CLIENT_SIDE),
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
        "driftdb-prom",
        "driftdb-proto",
        "driftdb-report",
        "driftdb-server",
        "driftdb-cli",
    ] {
        assert!(edges.contains_key(core), "workspace lacks {core}");
    }
    let mut bad = Vec::new();
    for (pkg, deps) in &edges {
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
    assert!(forbidden("driftdb-server").contains(&"clap"));
    assert!(forbidden("driftdb-server").contains(&"driftdb-cli"));
    assert!(forbidden("driftdb-prom").contains(&"axum"));
    assert!(forbidden("driftdb-report").contains(&"driftdb-server"));
    assert!(forbidden("driftdb-report").contains(&"parquet"));
    assert!(!forbidden("driftdb-query").contains(&"driftdb-storage"));
    assert!(!forbidden("driftdb-cli").contains(&"driftdb-server"));
}

// ---- the module graph inside `server` ----

/// The server's top-level modules that are transports: they may use the node, never the
/// reverse.
const TRANSPORTS: &[&str] = &["convert", "grpc", "guard", "http", "prom", "serve"];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its unit tests and comments: a `tests.rs` file is all test
/// code, a file's `#[cfg(test)]` module is its last item by the house style, and a path named
/// in a comment is not an import.
fn without_tests(path: &Path, text: &str) -> String {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`rules/eval.rs` → `rules`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules named by `crate::X` paths in `text`, also inside `use crate::{X, Y}`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = ident(part.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// `module → modules it uses`, over the server's non-test code.
fn server_modules() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let m = module_of(&src, &f);
        if m == "lib" {
            continue;
        }
        let text = without_tests(&f, &std::fs::read_to_string(&f).unwrap());
        let uses = graph.entry(m.clone()).or_default();
        for r in referenced(&text) {
            if r != m {
                uses.insert(r);
            }
        }
    }
    graph
}

/// One cycle of `graph`, if it has one (depth-first search with colours).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == m).unwrap();
                    let mut cycle = path[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn server_modules_import_each_other_one_way() {
    let graph = server_modules();
    assert!(
        graph.contains_key("node") && graph.contains_key("grpc"),
        "{graph:?}"
    );
    if let Some(c) = find_cycle(&graph) {
        panic!("import cycle in server/src: {}", c.join(" -> "));
    }
    let mut bad = Vec::new();
    for (m, uses) in &graph {
        if TRANSPORTS.contains(&m.as_str()) {
            continue;
        }
        for u in uses {
            if TRANSPORTS.contains(&u.as_str()) {
                bad.push(format!("{m} -> {u}"));
            }
        }
    }
    assert!(bad.is_empty(), "node modules naming a transport: {bad:?}");
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    let c = find_cycle(&g(&[
        ("node", "rules"),
        ("rules", "auth"),
        ("auth", "node"),
    ]))
    .unwrap();
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    assert_eq!(
        referenced("use crate::{auth::X, error::Result};\nlet n = crate::node::Node;"),
        ["auth", "error", "node"].map(String::from).into()
    );
}
