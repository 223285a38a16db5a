//! moesim: a simulator and profiler for Mixture-of-Experts systems scheduling.
//!
//! Routing traces (captured on GPU or imported from vLLM, SGLang, Megatron and ExFlow files) flow
//! through analysis, expert placement and cost models into the discrete-event simulator, and on
//! to reports. Data flows one way: `trace`, `model` and `topology` at the bottom; `analysis` and
//! `cost` above them; `placement` and `sim` are libraries that never import each other;
//! `pipeline` conducts them; `report` reads its results; `cli` wires commands to all of it. The
//! rules are in `docs/ARCHITECTURE.md`, and `tests/it/architecture.rs` enforces them.

pub mod analysis;
pub mod capture;
pub mod charts;
pub mod cli;
pub mod compare;
pub mod cost;
pub mod error;
pub mod gpu;
pub mod guard;
pub mod model;
pub mod offload;
pub mod output;
pub mod pipeline;
pub mod placement;
pub mod plan;
pub mod predict;
pub mod profile;
pub mod registry;
pub mod report;
pub mod scenario;
pub mod serve;
pub mod sim;
pub mod sweep;
pub mod topology;
pub mod trace;
pub mod workload;

pub use error::{Error, Result};
