//! Generators shared by driftdb's criterion benches.

/// A deterministic SplitMix64 stream, so bench inputs are identical from run to run.
pub use driftdb_engine::rng::SplitMix as Rng;
