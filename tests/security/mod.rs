//! Security and hardening (SECURITY.md): API keys, scopes and teams on every route and method, TLS,
//! webhook secrets, overload, storage faults.

mod auth;
mod faults;
mod fixture;
mod overload;
mod prometheus;
mod secrets;
mod tls;
