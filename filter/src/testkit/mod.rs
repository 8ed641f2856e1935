//! Test and bench support, behind the `testkit` feature (and `cfg(test)`): never compiled
//! into the filter module.

pub mod exchange;
pub mod jwt;
pub mod mask;
pub mod workload;
