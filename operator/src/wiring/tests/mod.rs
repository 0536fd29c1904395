//! Tests of the wiring layer: pure plans, the contract checker itself, the
//! whole flow against loopback fakes built from the apps' OpenAPI documents,
//! and the wiring task's pure parts and passes. The fakes live in
//! [`crate::wiring::testing`] (shared with the cluster tests).

mod contract_checks;
mod flows;
mod pass;
mod plans;
mod qbit_flow;
mod runner;

pub use crate::wiring::testing::*;
