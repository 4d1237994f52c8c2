//! The one place the CLI prints to stdout.

/// Prints one line to stdout.
#[expect(
    clippy::print_stdout,
    reason = "the CLI's output module is the one place that prints"
)]
pub fn line(s: &str) {
    println!("{s}");
}

/// Prints text to stdout as is (the caller ends it with a newline).
#[expect(
    clippy::print_stdout,
    reason = "the CLI's output module is the one place that prints"
)]
pub fn text(s: &str) {
    print!("{s}");
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
