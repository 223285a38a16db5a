//! The `[serving]` scenario table (engine knobs, SLOs, price, prefill/decode disaggregation) and
//! the resolved settings of one pool of the engine.

use serde::{Deserialize, Serialize};

use super::assign::ASSIGNERS;
use super::batching::BATCH_POLICIES;
use super::rank::PREFIX_BLOCK_TOKENS;
use crate::registry::{Settings, positive};

/// Most tokens a step's budget may be: far past any engine's `max_num_batched_tokens`.
pub const MAX_BATCH_TOKENS: u64 = 10_000_000;

/// Most requests one rank may run at once.
pub const MAX_RUNNING: usize = 1_000_000;

/// The `[serving]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    /// Data-parallel attention ranks (default: one per GPU of the expert-parallel group, over
    /// its tensor-parallel degree: SGLang's `--enable-dp-attention` with `--dp-size` = EP size).
    #[serde(default)]
    pub dp: Option<usize>,
    /// Tokens one rank may run in one step (vLLM `max_num_batched_tokens`, SGLang
    /// `chunked_prefill_size`).
    #[serde(default = "ServingConfig::default_max_batch_tokens")]
    pub max_batch_tokens: u64,
    /// Requests one rank may run at once (vLLM `max_num_seqs`, SGLang `max_running_requests`).
    #[serde(default = "ServingConfig::default_max_running")]
    pub max_running: usize,
    /// Whether a prompt may be split over steps; without, a prompt runs whole in one step (alone
    /// when it exceeds the budget).
    #[serde(default = "yes")]
    pub chunked_prefill: bool,
    /// Batch policy, by name ([`BATCH_POLICIES`]).
    #[serde(default = "ServingConfig::default_policy")]
    pub policy: String,
    /// How arriving requests are spread over the ranks ([`ASSIGNERS`]).
    #[serde(default = "ServingConfig::default_assign")]
    pub assign: String,
    /// Tokens per KV-cache block (vLLM's default 16).
    #[serde(default = "ServingConfig::default_block_size")]
    pub block_size: u64,
    /// Share of each GPU's memory the engine may use for weights, activations and the KV cache
    /// (vLLM `gpu_memory_utilization`, SGLang `mem_fraction_static`).
    #[serde(default = "ServingConfig::default_memory_utilization")]
    pub gpu_memory_utilization: f64,
    /// Reuse the KV of prompt blocks seen before (Mooncake `hash_ids`, 512 tokens each) on the
    /// same rank.
    #[serde(default)]
    pub prefix_caching: bool,
    /// How steps are priced.
    #[serde(default)]
    pub fidelity: Fidelity,
    /// Which of the trace's tokens route each step's tokens.
    #[serde(default)]
    pub routing: RoutingOrder,
    /// Steps priced both ways to state the cached tier's error (0: none).
    #[serde(default = "ServingConfig::default_error_samples")]
    pub error_samples: usize,
    /// Price of one GPU-hour, for the cost per million output tokens.
    #[serde(default)]
    pub price_per_gpu_hour: f64,
    /// The share of the simulated step's speed the serving engine reaches end to end (its
    /// scheduling, synchronisation and launch gaps, which the kernel and link models leave
    /// out): every step takes its simulated time over this. 1 (default) is the kernels and links
    /// as benchmarked; calibrate it against one measured figure of the engine.
    #[serde(default = "ServingConfig::default_engine_efficiency")]
    pub engine_efficiency: f64,
    /// Latency objectives.
    #[serde(default)]
    pub slo: Slo,
    /// Separate prefill and decode pools.
    #[serde(default)]
    pub disaggregation: Option<Disaggregation>,
}

/// How each step is priced.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fidelity {
    /// From a cache of simulated steps keyed by batch shape, routing drawn per entry.
    #[default]
    Cached,
    /// Every step through the event simulator.
    Full,
}

/// Which of the trace's tokens route a step's tokens.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingOrder {
    /// The trace's tokens in order, step after step, whoever the step's tokens belong to.
    #[default]
    InOrder,
    /// Each request keeps rows of its own: a request of the trace (by its recorded request ids)
    /// drawn for it by its id, its tokens in position order, or, in a trace without request
    /// ids, a run of consecutive tokens from an offset drawn by its id; a request's prompt and
    /// decode tokens follow on from each other, as one sequence's routing does.
    ByRequest,
}

/// Time-to-first-token and time-per-output-token objectives (absent: not judged).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// TTFT objective, ms.
    pub ttft_ms: Option<f64>,
    /// TPOT (mean inter-token latency) objective, ms.
    pub tpot_ms: Option<f64>,
}

impl Slo {
    /// Whether a request with `ttft_s` and `tpot_s` meets every objective set.
    pub fn met(&self, ttft_s: f64, tpot_s: f64) -> bool {
        self.ttft_ms.is_none_or(|t| ttft_s * 1e3 <= t)
            && self.tpot_ms.is_none_or(|t| tpot_s * 1e3 <= t)
    }
}

/// The `[serving.disaggregation]` table: prefill on the cluster's first `prefill_gpus`, decode
/// on the next `decode_gpus`, each its own expert-parallel group.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Disaggregation {
    /// GPUs of the prefill pool.
    pub prefill_gpus: usize,
    /// GPUs of the decode pool.
    pub decode_gpus: usize,
    /// The prefill pool's own knobs.
    #[serde(default)]
    pub prefill: PoolOverrides,
    /// The decode pool's own knobs.
    #[serde(default)]
    pub decode: PoolOverrides,
}

/// Knobs one pool sets for itself; absent ones are the `[serving]` table's.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolOverrides {
    /// All-to-all algorithm of this pool (e.g. DeepEP normal for prefill, low-latency for
    /// decode); absent: `[sim] all_to_all`.
    pub all_to_all: Option<String>,
    /// As `[serving] max_batch_tokens`.
    pub max_batch_tokens: Option<u64>,
    /// As `[serving] max_running`.
    pub max_running: Option<usize>,
    /// As `[serving] dp`.
    pub dp: Option<usize>,
}

fn yes() -> bool {
    true
}

impl ServingConfig {
    fn default_max_batch_tokens() -> u64 {
        8192
    }
    fn default_max_running() -> usize {
        256
    }
    fn default_policy() -> String {
        "decode-first".into()
    }
    fn default_assign() -> String {
        "round-robin".into()
    }
    fn default_block_size() -> u64 {
        16
    }
    fn default_memory_utilization() -> f64 {
        0.9
    }
    fn default_engine_efficiency() -> f64 {
        1.0
    }
    fn default_error_samples() -> usize {
        16
    }

    /// Checks every value; the message names the key (`serving.max_running`).
    pub fn check(&self) -> Result<(), String> {
        let no_settings = Settings::new();
        BATCH_POLICIES
            .build(&self.policy, &no_settings)
            .map_err(|m| format!("`serving.policy`: {m}"))?;
        ASSIGNERS
            .build(&self.assign, &no_settings)
            .map_err(|m| format!("`serving.assign`: {m}"))?;
        check_pool("serving", self.dp, self.max_batch_tokens, self.max_running)?;
        if !(1..=1 << 20).contains(&self.block_size) {
            return Err(format!(
                "`serving.block_size` = {} must be in 1..=1048576 tokens",
                self.block_size
            ));
        }
        if self.prefix_caching && !PREFIX_BLOCK_TOKENS.is_multiple_of(self.block_size) {
            return Err(format!(
                "`serving.block_size` = {} must divide the prefix cache's {PREFIX_BLOCK_TOKENS}-token blocks when `serving.prefix_caching` is on",
                self.block_size
            ));
        }
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            return Err(format!(
                "`serving.gpu_memory_utilization` = {} must be in (0, 1]",
                self.gpu_memory_utilization
            ));
        }
        if !(self.engine_efficiency > 0.0 && self.engine_efficiency <= 1.0) {
            return Err(format!(
                "`serving.engine_efficiency` = {} must be in (0, 1]",
                self.engine_efficiency
            ));
        }
        if !(self.price_per_gpu_hour >= 0.0 && self.price_per_gpu_hour.is_finite()) {
            return Err(format!(
                "`serving.price_per_gpu_hour` = {} must be a non-negative number",
                self.price_per_gpu_hour
            ));
        }
        for (key, value) in [("ttft_ms", self.slo.ttft_ms), ("tpot_ms", self.slo.tpot_ms)] {
            if let Some(value) = value {
                positive(&format!("serving.slo.{key}"), value)?;
            }
        }
        if let Some(split) = &self.disaggregation {
            for (key, gpus) in [
                ("prefill_gpus", split.prefill_gpus),
                ("decode_gpus", split.decode_gpus),
            ] {
                if gpus == 0 {
                    return Err(format!("`serving.disaggregation.{key}` must be at least 1"));
                }
            }
            for (pool, overrides) in [("prefill", &split.prefill), ("decode", &split.decode)] {
                check_pool(
                    &format!("serving.disaggregation.{pool}"),
                    overrides.dp,
                    overrides.max_batch_tokens.unwrap_or(self.max_batch_tokens),
                    overrides.max_running.unwrap_or(self.max_running),
                )?;
            }
        }
        Ok(())
    }
}

/// Checks one pool's sizes, naming keys under `table`.
fn check_pool(
    table: &str,
    dp: Option<usize>,
    max_batch_tokens: u64,
    max_running: usize,
) -> Result<(), String> {
    if dp == Some(0) {
        return Err(format!("`{table}.dp` must be at least 1"));
    }
    if !(1..=MAX_BATCH_TOKENS).contains(&max_batch_tokens) {
        return Err(format!(
            "`{table}.max_batch_tokens` = {max_batch_tokens} must be in 1..={MAX_BATCH_TOKENS}"
        ));
    }
    if !(1..=MAX_RUNNING).contains(&max_running) {
        return Err(format!(
            "`{table}.max_running` = {max_running} must be in 1..={MAX_RUNNING}"
        ));
    }
    Ok(())
}

/// What a pool serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Prefill and decode on the same GPUs.
    Colocated,
    /// Prefill only: a request leaves after its first token, its KV sent to the decode pool.
    Prefill,
    /// Decode only: requests arrive with their prompt's KV.
    Decode,
}

/// The resolved settings of one pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolConfig {
    /// What it serves.
    pub role: Role,
    /// Data-parallel attention ranks.
    pub ranks: usize,
    /// GPUs of the pool (its expert-parallel group).
    pub gpus: usize,
    /// Tokens a rank may run per step.
    pub max_batch_tokens: u64,
    /// Requests a rank may run at once.
    pub max_running: usize,
    /// Whether prompts may be split over steps.
    pub chunked_prefill: bool,
    /// Tokens per KV block.
    pub block_size: u64,
    /// KV blocks of each rank.
    pub kv_blocks: u64,
    /// Whether prompt blocks seen before on a rank skip their prefill.
    pub prefix_caching: bool,
}

impl PoolConfig {
    /// Blocks holding `tokens` tokens.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(self.block_size)
    }
}
