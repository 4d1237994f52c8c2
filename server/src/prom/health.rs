//! Additions to driftdb's own `/metrics` (README.md "driftdb's own health") that belong to this
//! module: RocksDB sizes per column family, the number of models, and the counters of the
//! Prometheus endpoints. The node's ingest and label counters are rendered by
//! `node::Metrics::render`; rule-evaluation and webhook-outbox gauges belong to the rules
//! engine.
//!
//! Sizes are RocksDB's own properties, cheap to read (no scan):
//! `rocksdb.total-sst-files-size`, `rocksdb.estimate-live-data-size`,
//! `rocksdb.size-all-mem-tables` and `rocksdb.estimate-num-keys`, each per column family.

use driftdb_query::Catalog;
use driftdb_storage::layout::ALL_CFS;

use crate::node::Node;

/// The gauges RocksDB reports per column family: (metric, help, property).
const ROCKSDB_GAUGES: &[(&str, &str, &str)] = &[
    (
        "driftdb_rocksdb_sst_bytes",
        "Bytes of live SST files per column family.",
        "rocksdb.total-sst-files-size",
    ),
    (
        "driftdb_rocksdb_live_data_bytes",
        "RocksDB's estimate of live data bytes per column family.",
        "rocksdb.estimate-live-data-size",
    ),
    (
        "driftdb_rocksdb_memtable_bytes",
        "Bytes held in memtables per column family.",
        "rocksdb.size-all-mem-tables",
    ),
    (
        "driftdb_rocksdb_estimated_keys",
        "RocksDB's estimate of the keys per column family.",
        "rocksdb.estimate-num-keys",
    ),
];

/// This module's part of `/metrics`, in Prometheus' text format.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    let db = node.store.raw_db();
    for (name, help, property) in ROCKSDB_GAUGES {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for cf_name in ALL_CFS {
            let Some(cf) = db.cf_handle(cf_name) else {
                continue;
            };
            // A property RocksDB cannot report is left out rather than shown as 0.
            if let Ok(Some(v)) = db.property_int_value_cf(cf, *property) {
                out.push_str(&format!("{name}{{cf=\"{cf_name}\"}} {v}\n"));
            }
        }
    }
    let models = node.registry.model_ids().len();
    out.push_str(&format!(
        "# HELP driftdb_models Models registered.\n# TYPE driftdb_models gauge\ndriftdb_models {models}\n"
    ));
    out.push_str(&node.metrics.prom.render());
    out
}
