//! fabrs-cloud: what the drivers (`fabrs-exec`) need from the outside world,
//! as traits, and the one error type they share. `fabrs-aws` implements
//! `Cloud`, `Fleet` and `Store` on the AWS SDK; the CLI implements `Remote`
//! with `fabrs-remote`; `fabrs-exec` has in-memory implementations for tests.
//! Nothing here names an SDK type or does I/O.

pub mod cloud;
pub mod preflight;
pub mod remote;
pub mod store;

pub use cloud::{ApplyCtx, Cloud, CloudError, DbDelete, ErrorKind, Fleet, GroupNow, Progress, Scope};
pub use preflight::{Missing, Precondition, Preconditions};
pub use remote::{Remote, RemoteOutput};
pub use store::{ObjectMeta, PutOutcome, Store};
