//! Tests of the Arrow reader.
