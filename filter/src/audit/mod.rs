//! Audit records, the hash chain, and the per-VM outbox that batches and ships them.

pub mod chain;
pub mod otlp;
pub mod outbox;
pub mod record;

pub use record::{Kind, Record};
