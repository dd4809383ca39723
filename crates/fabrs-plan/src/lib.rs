//! fabrs-plan: desired state, inventory, and the pure planner. No I/O, no
//! clock, no environment variables: the same inputs always give the same plan.

pub mod addr;
pub mod deploy;
pub mod desired;
pub mod display;
pub mod graph;
pub mod iam;
pub mod images;
pub mod kinds;
pub mod plan;
pub mod resource;
pub mod review;
pub mod rollout;
pub mod ssm;
