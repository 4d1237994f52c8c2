//! driftdb's metrics as Prometheus series, and the PromQL that Grafana runs over them.
//!
//! - [`series`]: every metric as `driftdb_<metric>{model, version, feature, <segment
//!   key>=…}`, one sample per closed window stamped at its end, computed on the fly from
//!   the stored sketches; [`series::DriftSource`] selects them for the evaluator, for remote
//!   read ([`series::DriftSource::read`]) and for the series and label APIs
//!   ([`series::DriftSource::list`]).
//! - [`promql`]: PromQL text parsed by the `promql-parser` crate and lowered into the subset
//!   driftdb evaluates; anything else is refused with an error naming the construct.
//! - [`eval`]: evaluation at one instant or over a range query's instants
//!   ([`eval::instant_query`], [`eval::range_query`]) with Prometheus' semantics, reading
//!   series through the [`source::SeriesSource`] trait.
//! - [`matcher`]: label matchers (`=`, `!=`, `=~`, `!~`), shared by selectors and remote read.
//! - [`xor`]: Prometheus' XOR chunk encoding, for STREAMED_XOR_CHUNKS remote-read answers.
//! - [`limits`] and [`scan`]: what a query may cost, checked before parsing and before
//!   reading, and the deadline and cancellation flag ([`limits::Budget`]) every loop checks.
//!
//! The crate knows nothing of HTTP: the server's adapters decode requests, call the functions
//! above and encode their answers. `prom/PROMETHEUS_API.md` documents the series, the PromQL
//! subset and the limits.
#![warn(missing_docs, unreachable_pub)]

pub mod error;
pub mod eval;
pub mod limits;
pub mod matcher;
pub mod promql;
pub mod scan;
pub mod series;
pub mod source;
pub mod xor;

pub use error::{Error, Result};
pub use eval::{Answer, Value, instant_query, range_query};
pub use limits::{Budget, Limits};
pub use matcher::{MatchOp, Matcher};
pub use series::{DriftSource, SegmentValues};
pub use source::{Labels, MemorySource, ReadStats, Selection, Series, SeriesSource};
