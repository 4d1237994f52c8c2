//! The `driftdb` binary.

/// mimalloc instead of the system allocator: decoding and merging sketches allocates many
/// short-lived buffers from several threads, where glibc's malloc spends a fifth of the time
/// (measured with `driftdb bench rules`, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    driftdb_server::cli::main()
}
