//! The discrete-event simulator: one model step as a graph of kernels on GPU streams and flows
//! on the cluster's links ([`engine`], [`network`]), built per overlap strategy ([`step`],
//! [`overlap`]) and all-to-all algorithm ([`all_to_all`]) from kernel costs ([`kernels`]), and
//! broken down into where the time went ([`metrics`], [`totals`]).
//!
//! A library: it takes each step's work (dispatch plans turned into [`step::LayerWork`]) as
//! data and never places experts, reads scenarios or cuts traces into steps; the pipeline does.

pub mod all_to_all;
mod binding;
pub mod config;
pub mod engine;
pub mod kernels;
pub mod metrics;
pub mod network;
pub mod overlap;
pub mod perfetto;
mod replay;
mod rounding;
pub mod step;
mod totals;
pub mod transfer;

pub use all_to_all::{ALL_TO_ALLS, AllToAllAlgorithm};
pub use config::{LinkSettings, SimConfig, SimSetup};
pub use overlap::{OVERLAPS, OverlapStrategy};
pub use replay::{PerfettoProcess, Recording, simulate_step};
pub use totals::{StepTime, StrategySim, StrategyTotals, excerpt_layer};

#[cfg(test)]
mod tests;
