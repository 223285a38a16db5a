//! The discrete-event simulator: one model step as a graph of kernels on GPU streams and flows
//! on the cluster's links ([`engine`], [`network`]), built per overlap strategy ([`step`]) from
//! kernel costs ([`kernels`]), and broken down into where the time went ([`metrics`]); a
//! scenario's trace is replayed step by step ([`batches`]).

pub mod batches;
mod binding;
pub mod config;
pub mod engine;
pub mod kernels;
pub mod metrics;
pub mod network;
pub mod perfetto;
mod rounding;
mod scenario_run;
pub mod step;
mod tables;
mod totals;

pub use batches::{StepBatch, step_batches};
pub use config::{AllToAll, Overlap, SimConfig};
pub use scenario_run::{
    SimOptions, SimResult, batch_plans, simulate_prepared, simulate_scenario, simulate_step,
    step_plans,
};
pub use tables::write_tables;
pub use totals::{StepTime, StrategySim, excerpt_layer};

#[cfg(test)]
mod tests;
