//! Placeholder: the AWS implementation of `fabrs_exec::Cloud` is being written.
