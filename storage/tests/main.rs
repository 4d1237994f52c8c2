//! Integration tests of the storage crate against real RocksDB databases in temporary
//! directories. One binary; the crash test re-invokes it as its child writer.
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;
mod corruption;
mod crash;
mod downsample;
mod families;
mod merges;
mod model;
mod reads;
mod retention;
mod rollups;
