//! The query crate's integration tests, one binary (RocksDB is linked once): DriftQL against
//! the golden set, ranking items, importance and cost, the parser, daily rollups and every example query.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on a broken setup")]

mod common;
mod golden;
mod importance;
mod items;
mod parser;
mod rollups;
mod spec_examples;
