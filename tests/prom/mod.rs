//! Prometheus remote read, the Prometheus-compatible query API and the Grafana dashboards
//!, against real servers on 127.0.0.1 — and, in [`prometheus`], against Debian's
//! real `prometheus` binary.

mod api;
mod dashboards;
mod fixture;
mod http;
mod measure;
pub(crate) mod prometheus;
mod remote_read;
