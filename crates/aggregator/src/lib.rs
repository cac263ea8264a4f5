//! The aggregator: folds the `status.appliedStates` entries the state controllers write into
//! the NicClusterPolicy's global `status.state`, `status.reason` and `Ready` condition, emits an
//! Event when the global state changes, and exports every state as a metric.
//!
//! [`fold`] is the pure rule; [`controller`] writes the result.

pub mod controller;
pub mod fold;
