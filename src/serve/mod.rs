//! The serving engine: requests over simulated time, batched continuously on data-parallel
//! attention ranks that step in lockstep through the MoE layers, in one pool (prefill and decode
//! together) or two (prefill/decode disaggregation, the KV cache sent from one to the other).
//!
//! A library: it reads requests from a [`crate::workload::RequestStream`], prices each step
//! through the [`StepPricer`] it is handed (the pipeline gives it one that runs the step
//! simulator on routing drawn from the scenario's trace) and reports every finished request and
//! every step to an [`Observer`] ([`metrics::Collector`] turns them into the summary and the
//! per-second table). It never reads scenarios or traces itself.
//!
//! Scheduling follows vLLM's v1 scheduler and SGLang's: every running request is scheduled
//! `prompt + generated - computed` tokens a step (1 once its prompt is in the KV cache),
//! chunked to the rank's token budget; a request whose scheduled tokens reach the end of what it
//! knows samples one token at the end of the step. KV blocks are allocated as tokens are
//! computed; when a running request needs a block and none is free the most recently admitted
//! request is preempted and recomputed later (vLLM's `preempt` with recompute).

pub mod assign;
pub mod autoscale;
pub mod batching;
pub mod config;
mod engine;
pub mod metrics;
mod rank;
pub mod scaling;
pub mod transfer;

pub use config::{PoolConfig, Role};
pub use engine::{Engine, Pool};
pub use metrics::{Collector, RequestRecord, StepRecord};
pub use transfer::{Handoff, KvTransport};

use crate::error::Result;

/// What one data-parallel rank runs in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RankBatch {
    /// Prompt (or recomputed) tokens.
    pub prefill_tokens: u64,
    /// Sum over the prefill tokens of the keys each attends (its position + 1).
    pub prefill_keys: f64,
    /// Decode tokens (one per decoding request).
    pub decode_tokens: u64,
    /// Sum over the decode tokens of the cached keys each reads.
    pub decode_keys: f64,
    /// Tokens that sample a next token at the end of the step (each decode token, and the last
    /// prompt token of a prompt finishing): the rows the LM head computes logits for.
    pub samples: u64,
}

impl RankBatch {
    /// Tokens of the step on this rank.
    pub fn tokens(&self) -> u64 {
        self.prefill_tokens + self.decode_tokens
    }
}

/// What one step cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCost {
    /// Its duration, ns (at least 1).
    pub ns: u64,
    /// Busiest GPU's routed tokens over the mean, averaged over the MoE layers (1 = balanced).
    pub imbalance: f64,
}

/// The tokens one request runs in a step: its positions `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRun {
    /// The request's id in the workload.
    pub request: u64,
    /// The rank it runs on.
    pub rank: usize,
    /// Position of its first token in the step (tokens before are in the KV cache).
    pub first: u64,
    /// Tokens it runs.
    pub count: u64,
}

/// Prices one lockstep step of every rank of a pool.
pub trait StepPricer {
    /// The cost of a step in which rank `r` runs `ranks[r]` (idle ranks run empty batches),
    /// made of the requests' `runs` (rank by rank).
    fn price(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost>;

    /// The simulated time the next step starts at, told before it is priced (for pricers whose
    /// cluster or placement change over time).
    fn starts_at(&mut self, _now_ns: u64) {}
}

impl<T: StepPricer + ?Sized> StepPricer for &mut T {
    fn price(&mut self, ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        (**self).price(ranks, runs)
    }
    fn starts_at(&mut self, now_ns: u64) {
        (**self).starts_at(now_ns);
    }
}

/// Receives what the engine did, in the order it happened per pool.
pub trait Observer {
    /// A request arrived at `arrival_ns` (rejected or not).
    fn arrival(&mut self, arrival_ns: u64);
    /// A request left the system: finished, or rejected on arrival.
    fn request(&mut self, record: &RequestRecord) -> Result<()>;
    /// A pool ran a step.
    fn step(&mut self, record: &StepRecord);
}

#[cfg(test)]
mod tests;
