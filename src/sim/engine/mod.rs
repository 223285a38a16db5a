//! The discrete-event engine: runs a graph of tasks (compute kernels on GPU streams, transfers
//! over the network, zero-time joins) whose edges say what must finish before what starts.
//!
//! A compute task starts once its dependencies are done and its stream is free; a stream runs
//! one task at a time, in the order tasks became ready (ties to the lower task id). A transfer
//! starts as soon as its dependencies are done: its bytes become a flow on the
//! [`FlowNetwork`](super::network::FlowNetwork) and it completes the route latency after its
//! last byte left. Every task remembers the predecessor that decided its start, so the
//! critical path can be walked back.
//!
//! An all-to-all is a [`Collective`]: one [`Work::Send`] per sending GPU, which starts a flow
//! to every GPU it owes bytes, and one [`Work::Receive`] per receiving GPU, which completes when
//! every flow bound for it has arrived. The per-pair bytes stay in the traffic matrix the
//! collective borrows, so the graph holds a few tasks per GPU and layer rather than one per GPU
//! pair, and the network holds only the flows in flight.
//!
//! `graph` holds the tasks and collectives, `run` the run loop, `timeline` what a run returns
//! and `occupancy` when each link was busy.

mod graph;
mod occupancy;
mod run;
mod timeline;

pub use graph::{Collective, PairTransfer, Task, TaskGraph, TaskId, Work};
pub use occupancy::LinkBusy;
pub use run::{run, transfer_routes};
pub use timeline::Timeline;
