//! Support code shared by driftdb's integration tests.
