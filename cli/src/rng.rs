//! Helpers of the load generators and the demo: the seedable generator (from the engine) and
//! the process' peak memory.

pub use driftdb_engine::rng::SplitMix;

/// The process' peak resident set size in MiB (`VmHWM`), 0 where /proc is not available.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
