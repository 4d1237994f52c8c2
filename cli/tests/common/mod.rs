//! Helpers shared by the tests that run the `driftdb` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Output};

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
