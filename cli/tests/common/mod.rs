//! Helpers shared by the tests that run the `driftdb` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// Bytes a process wrote, as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The stdout of a run that must succeed; panics with both streams when it failed.
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Reads `driftdb serve`'s first stdout line, `ready grpc=ADDR http=ADDR`, and returns the two
/// addresses; panics with the line when it is something else.
pub fn ready_addrs(child: &mut Child) -> (String, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .expect("read the ready line");
    let (grpc, http) = line
        .trim()
        .strip_prefix("ready grpc=")
        .and_then(|r| r.split_once(" http="))
        .unwrap_or_else(|| panic!("no ready line: {line:?}"));
    (grpc.to_string(), http.to_string())
}

/// A `driftdb serve` child on a fresh data directory, configured for the golden data (dated
/// 2026-03-01): ten years of retention keep it live for as long as the tests are run, and
/// downsampling past 3600 days keeps its 15-minute windows. Killed when dropped.
pub struct GoldenServer {
    child: Child,
    /// `http://ADDR` of the gRPC listener.
    pub grpc: String,
    /// `ADDR` of the HTTP listener.
    pub http: String,
    /// The operator key `serve` wrote to `<data>/admin.key` on its first start.
    pub key: String,
    /// The server's stdout, kept open after its `ready` line.
    _stdout: BufReader<ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Drop for GoldenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a [`GoldenServer`] on 127.0.0.1 and waits for its `ready` line; panics with the
/// server's log when it does not come.
pub fn golden_server() -> GoldenServer {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("golden.json");
    std::fs::write(&cfg, r#"{"retention":"3650d","downsample_after":"3600d"}"#).unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftdb"))
        .arg("serve")
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .args(["--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("driftdb starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some((grpc, http)) = line
        .trim()
        .strip_prefix("ready grpc=")
        .and_then(|r| r.split_once(" http="))
        .map(|(g, h)| (g.to_string(), h.to_string()))
    else {
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
        panic!("no ready line: {line:?}; server log:\n{log}");
    };
    let key = std::fs::read_to_string(dir.path().join("data/admin.key"))
        .expect("serve writes the first operator key")
        .trim()
        .to_string();
    assert!(key.starts_with("ddb_"), "{key}");
    GoldenServer {
        child,
        grpc: format!("http://{grpc}"),
        http,
        key,
        _stdout: stdout,
        _dir: dir,
    }
}

/// A plain HTTP/1.1 GET on loopback: status and body.
pub fn http_get(addr: &str, path: &str, key: Option<&str>) -> (u16, String, String) {
    http_call("GET", addr, path, key)
}

/// `POST path` with an empty body and the key: the status and the body.
pub fn http_post(addr: &str, path: &str, key: &str) -> (u16, String) {
    let (status, _, body) = http_call("POST", addr, path, Some(key));
    (status, body)
}

fn http_call(method: &str, addr: &str, path: &str, key: Option<&str>) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    let length = if method == "POST" {
        "content-length: 0\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}{length}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = text(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Where the repository's golden scenario lives, relative to the crate.
pub const GOLDEN: &str = "tests/data/golden/";

/// Creates the golden model `fraud` and loads its reference `v2` as README "Using it" does,
/// through `run` (a client command that must succeed; it returns the command's stdout), and
/// checks what both commands answered.
pub fn load_golden_model(run: impl Fn(&[&str]) -> String) {
    let out = run(&["model", "create", "--file", &format!("{GOLDEN}model.json")]);
    assert!(out.contains("created model fraud"), "{out}");
    let reference = format!("{GOLDEN}reference.jsonl");
    let out = run(&[
        "reference",
        "load",
        "--model",
        "fraud",
        "--version",
        "v2",
        &reference,
    ]);
    assert!(out.contains("20000 rows profiled, 0 rejected"), "{out}");
}
