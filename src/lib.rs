//! moesim: a simulator and profiler for Mixture-of-Experts systems scheduling.
//!
//! Routing traces (captured on GPU or imported from vLLM, SGLang, Megatron and ExFlow files) flow
//! through analysis, expert placement and cost models to reports. Data flows one way:
//! `trace` -> `analysis` / `placement` -> `cost` -> `report`; no module reaches back upstream.

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod cost;
pub mod error;
pub mod gpu;
pub mod guard;
pub mod model;
pub mod output;
pub mod placement;
pub mod profile;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sim;
pub mod topology;
pub mod trace;

pub use error::{Error, Result};
