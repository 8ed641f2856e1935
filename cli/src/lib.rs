//! The `mcptrail` command line: a collector that is a real sink, the chain verifier, the
//! `query` and `replay` readers of collected trails, and a development token issuer.

pub mod approvals;
pub mod collector;
pub mod issuer;
pub mod operations;
pub mod query;
pub mod records;
pub mod replay;
pub mod verify;
