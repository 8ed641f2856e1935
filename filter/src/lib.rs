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
pub mod filter;
pub mod host;
pub mod ids;
pub(crate) mod lanes;
pub mod mask;
pub mod mcp;
pub mod policy;
/// Test and bench support (never in the filter module): tokens signed with fixed keys, the
/// exchange harness over the recording host, the benchmark workload, safe masking rules.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod time;

#[cfg(test)]
mod fuzz_regressions;
