//! The DriftQL parser, compiled from the query crate's own source files (`ast.rs`, `lexer.rs`,
//! `parser.rs`). They depend on nothing in `driftdb-query` but each other and on
//! `driftdb-engine`, so including them here fuzzes exactly the code the server runs without
//! building `driftdb-storage` (and RocksDB) for the sanitizer target.
#![allow(dead_code, missing_docs)]

#[path = "../../src/ast.rs"]
pub mod ast;
#[path = "../../src/lexer.rs"]
pub mod lexer;
#[path = "../../src/parser.rs"]
pub mod parser;
