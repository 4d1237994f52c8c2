//! The `driftdb` binary.

fn main() -> std::process::ExitCode {
    driftdb_server::cli::main()
}
