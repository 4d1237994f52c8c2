//! Tests of the JSONL reader.
