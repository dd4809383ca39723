//! fabrs-exec: the drivers that carry out plans (apply, converge, deploy)
//! over the traits of `fabrs-cloud`, and an in-memory cloud for tests.

pub mod apply;
pub mod deploy;
pub mod fake;
pub mod ops;
