//! fabrs-exec: the `Cloud` trait and the drivers that carry out plans.

pub mod apply;
pub mod cloud;
pub mod deploy;
pub mod fake;
pub mod fake_fleet;
pub mod ops;
pub mod remote;
pub mod store;

pub use cloud::{ApplyCtx, Cloud, CloudError, ErrorKind, Progress, Scope};
