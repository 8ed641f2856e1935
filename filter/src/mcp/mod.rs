//! MCP decoding: JSON-RPC messages, SSE streams, the answers to a request, sessions.

pub mod jsonrpc;
pub mod response;
pub mod routing;
mod scan;
pub mod seal;
pub mod sessions;
pub mod sse;
