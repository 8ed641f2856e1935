//! Audit records, the hash chain, and the per-VM outbox that batches and ships them.

pub mod build;
pub mod chain;
pub mod otlp;
pub mod outbox;
pub mod record;
pub mod resume;

pub use record::{Kind, Record};
