//! The `driftdb` binary.

/// mimalloc instead of the system allocator: decoding and merging sketches allocates many
/// short-lived buffers from several threads, where glibc's malloc spends a fifth of the time
/// (measured with `driftdb bench rules`, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    transparent_huge_pages();
    driftdb_cli::commands::main()
}

/// Turns transparent huge pages off for this process unless `DRIFTDB_THP=1`.
///
/// mimalloc asks for huge pages on its arenas; every batch frees and re-touches megabytes of
/// them (decoded columns, sketch deltas, encoded images), and each first touch of a 2 MiB huge
/// page has the kernel zero all of it: `clear_page_erms` was 7–12 % of ingest's CPU in `perf`.
/// With them off, `driftdb bench ingest` does the same work in about 15 % less CPU
/// (BENCHMARKS.md). Databases commonly run without them (RocksDB, Redis and MongoDB advise it).
/// The flag is per process (`prctl(PR_SET_THP_DISABLE)`) and leaves the system setting alone.
fn transparent_huge_pages() {
    if std::env::var("DRIFTDB_THP").is_ok_and(|v| v == "1") {
        return;
    }
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag on this process's
    // memory map; no pointer is passed and nothing in Rust's memory model is affected.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}
