//! Cost models: expert compute time (roofline, overridable by calibration), all-to-all time on a
//! cluster's links, and the analytical per-layer step estimate combining them.

pub mod analytical;
pub mod attention;
pub mod comm;
pub mod compute;
pub mod gemm;
pub mod traffic;

pub use analytical::{AnalyticalCost, CostOptions, LayerEstimate};
pub use comm::{CollectiveCost, TrafficMatrix, all_to_all};
pub use compute::{ComputeCost, RooflineCompute};
pub use traffic::{DispatchPlan, DispatchTally};

#[cfg(test)]
mod tests;
