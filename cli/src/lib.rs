//! The `mcptrail` command line: a collector that is a real sink, the chain verifier, and a
//! development token issuer.

pub mod collector;
pub mod issuer;
pub mod verify;
