//! mcptrail: a proxy-wasm HTTP filter that authenticates, decodes and audits MCP traffic.
//!
//! Pure logic (`config`, `jsonrpc`, `mask`, `audit`, `time`, `ids`) knows nothing of proxy-wasm;
//! `glue` drives it through the [`host::Host`] trait; `proxy` (wasm only) binds the glue to
//! the proxy-wasm SDK.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod audit;
pub mod auth;
pub mod bounded;
pub mod config;
pub mod glue;
pub mod host;
pub mod ids;
pub mod jsonrpc;
pub mod judge;
pub mod jwt;
pub mod mask;
pub mod policy;
pub mod sessions;
pub mod sse;
pub mod time;
/// The benchmark workload (test and bench support).
#[cfg(any(test, feature = "testkit"))]
pub mod workload;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod proxy;

#[cfg(test)]
mod fuzz_regressions;
