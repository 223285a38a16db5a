//! The discrete-event simulator: one model step as a graph of kernels on GPU streams and flows
//! on the cluster's links ([`engine`], [`network`]), built per overlap strategy ([`step`]) from
//! kernel costs ([`kernels`]), and broken down into where the time went ([`metrics`]).

pub mod config;
pub mod engine;
pub mod kernels;
pub mod metrics;
pub mod network;
mod scenario_run;
pub mod step;

pub use config::{AllToAll, Overlap, SimConfig};
pub use scenario_run::{SimResult, StrategySim, simulate_scenario, simulate_step};

#[cfg(test)]
mod tests;
