//! fabrs-exec: the `Cloud` trait and the drivers that carry out plans.

pub mod cloud;

pub use cloud::{ApplyCtx, Cloud, CloudError, ErrorKind, Progress, Scope};
