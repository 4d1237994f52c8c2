//! The one place the CLI prints to stdout.

use std::io::Write;

/// Writes `s` to stdout. A closed pipe (`driftdb query … | head`) ends the process quietly
/// with status 0, as it does for other command-line tools, instead of panicking in `println!`;
/// other write errors end it with status 1 and a one-line reason.
fn write(s: &str, newline: bool) {
    let mut out = std::io::stdout().lock();
    let r = out.write_all(s.as_bytes()).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("driftdb: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints one line to stdout.
pub fn line(s: &str) {
    write(s, true);
}

/// Prints text to stdout as is (the caller ends it with a newline).
pub fn text(s: &str) {
    write(s, false);
}

/// Prints rows as an aligned table with a header.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    line(&fmt(headers.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        line(&fmt(r.clone()));
    }
}
