//! What a serving run measured: one record per request and per step from the engine, folded
//! into the summary (latency percentiles, throughput, SLO attainment, goodput, cost) and the
//! per-second table of simulated time.

use serde::Serialize;

use super::Observer;
use super::config::{Role, Slo};
use super::rank::Live;
use crate::error::Result;

const NS: f64 = 1e9;

/// One request as it left the system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Its id in the workload.
    pub id: u64,
    /// Arrival, s.
    pub arrival_s: f64,
    /// From arrival to its first scheduled step, s.
    pub queue_s: f64,
    /// Time to first token, s.
    pub ttft_s: f64,
    /// Mean time between its output tokens after the first, s (0 for one output token).
    pub tpot_s: f64,
    /// From arrival to its last token, s.
    pub e2e_s: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Data-parallel rank that served it (its decode rank when disaggregated).
    pub dp_rank: u32,
    /// Times it was preempted and recomputed.
    pub preemptions: u32,
    /// Prompt tokens served from the prefix cache.
    pub cached_tokens: u64,
    /// Time its KV took to reach the decode pool, s.
    pub kv_transfer_s: f64,
    /// Whether it was rejected on arrival (it could never fit one rank's KV cache); its
    /// latencies are then 0.
    pub rejected: bool,
}

impl RequestRecord {
    /// `live`, which produced its last token at `end_ns`.
    pub(super) fn finished(live: &Live, end_ns: u64) -> RequestRecord {
        let first_token = live.first_token_ns.unwrap_or(end_ns);
        let since = |ns: u64| ns.saturating_sub(live.arrival_ns) as f64 / NS;
        RequestRecord {
            queue_s: since(live.first_scheduled_ns.unwrap_or(end_ns)),
            ttft_s: since(first_token),
            tpot_s: if live.output > 1 {
                (end_ns - first_token) as f64 / NS / (live.output - 1) as f64
            } else {
                0.0
            },
            e2e_s: since(end_ns),
            output_tokens: live.generated,
            rejected: false,
            ..RequestRecord::rejected(live)
        }
    }

    /// `live`, turned away on arrival.
    pub(super) fn rejected(live: &Live) -> RequestRecord {
        RequestRecord {
            id: live.id,
            arrival_s: live.arrival_ns as f64 / NS,
            queue_s: 0.0,
            ttft_s: 0.0,
            tpot_s: 0.0,
            e2e_s: 0.0,
            input_tokens: live.input,
            output_tokens: 0,
            dp_rank: live.rank as u32,
            preemptions: live.preemptions,
            cached_tokens: live.cached_tokens,
            kv_transfer_s: live.kv_transfer_ns as f64 / NS,
            rejected: true,
        }
    }
}

/// One step of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The pool.
    pub role: Role,
    /// Start, ns.
    pub start_ns: u64,
    /// Duration, ns.
    pub ns: u64,
    /// Prompt tokens, all ranks.
    pub prefill_tokens: u64,
    /// Decode tokens, all ranks.
    pub decode_tokens: u64,
    /// Requests running (after scheduling), all ranks.
    pub running: u64,
    /// Requests waiting (after scheduling), all ranks.
    pub waiting: u64,
    /// KV blocks held, all ranks.
    pub kv_used_blocks: u64,
    /// KV blocks, all ranks.
    pub kv_blocks: u64,
    /// MoE load imbalance of the step.
    pub imbalance: f64,
    /// GPUs of the pool.
    pub gpus: u64,
    /// Whether every rank ran its most requests (`max_running`): the pool was saturated.
    pub saturated: bool,
}

/// One second of simulated time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SecondRow {
    /// Start of the second.
    pub second: u64,
    /// Requests that arrived.
    pub arrivals: u64,
    /// Requests that finished.
    pub finished: u64,
    /// Of the requests that arrived, the ones that finished meeting every SLO.
    pub slo_met: u64,
    /// Mean requests running (time-weighted).
    pub running: f64,
    /// Mean requests waiting (time-weighted).
    pub waiting: f64,
    /// Steps started, all pools.
    pub steps: u64,
    /// Prompt tokens of the steps started.
    pub prefill_tokens: u64,
    /// Decode tokens (one output token each) of the steps started.
    pub decode_tokens: u64,
    /// Most KV-cache use of a step started (share of the blocks).
    pub kv_use: f64,
    /// Mean duration of the steps started, ms.
    pub step_ms: f64,
    /// Mean MoE imbalance of the steps started.
    pub imbalance: f64,
    /// Mean GPUs busy running steps (time-weighted).
    pub gpus_busy: f64,
}

/// Mean and percentiles (nearest rank) of one latency, s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Latency {
    fn of(values: &mut [f64]) -> Latency {
        if values.is_empty() {
            return Latency::default();
        }
        values.sort_by(f64::total_cmp);
        let rank =
            |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Latency {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
        }
    }
}

/// The summary of a serving run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServingSummary {
    /// Requests that arrived.
    pub requests: u64,
    /// Requests that finished.
    pub finished: u64,
    /// Requests rejected on arrival.
    pub rejected: u64,
    /// From 0 to the last token, s.
    pub duration_s: f64,
    /// Time to first token, s.
    pub ttft: Latency,
    /// Time per output token, s (requests with more than one output token).
    pub tpot: Latency,
    /// End-to-end latency, s.
    pub e2e: Latency,
    /// Queueing delay before the first step, s.
    pub queue: Latency,
    /// Finished requests per second.
    pub requests_per_s: f64,
    /// Prompt tokens of finished requests per second.
    pub input_tokens_per_s: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// `input_tokens_per_s` over the GPUs.
    pub input_tokens_per_s_per_gpu: f64,
    /// `output_tokens_per_s` over the GPUs.
    pub output_tokens_per_s_per_gpu: f64,
    /// `input_tokens_per_s` over the nodes.
    pub input_tokens_per_s_per_node: f64,
    /// `output_tokens_per_s` over the nodes.
    pub output_tokens_per_s_per_node: f64,
    /// The objectives judged.
    pub slo: Slo,
    /// Share of arrived requests that finished meeting every objective.
    pub slo_attainment: f64,
    /// Requests per second that met every objective.
    pub goodput_requests_per_s: f64,
    /// Output tokens per second of the requests that met every objective.
    pub goodput_output_tokens_per_s: f64,
    /// GPUs serving (all pools).
    pub gpus: u64,
    /// Nodes those GPUs fill.
    pub nodes: u64,
    /// GPUs x duration, hours.
    pub gpu_hours: f64,
    /// Price of one GPU-hour.
    pub price_per_gpu_hour: f64,
    /// `gpu_hours x price` per million output tokens.
    pub cost_per_million_output_tokens: f64,
    /// Preemptions, all requests.
    pub preemptions: u64,
    /// Prompt tokens served from the prefix cache.
    pub cached_prompt_tokens: u64,
    /// Steps, all pools.
    pub steps: u64,
    /// Mean step, ms.
    pub mean_step_ms: f64,
    /// Mean MoE imbalance over the steps.
    pub mean_imbalance: f64,
    /// Most KV-cache use of any step (share of the blocks of its pool).
    pub peak_kv_use: f64,
    /// Time-weighted mean of requests in the engines (waiting or running), for Little's law.
    pub mean_in_system: f64,
}

/// What one pool's steps did, all together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PoolTotals {
    /// Steps run.
    pub steps: u64,
    /// Time spent stepping, s.
    pub busy_s: f64,
    /// Prompt tokens computed.
    pub prefill_tokens: u64,
    /// Decode tokens computed.
    pub decode_tokens: u64,
    /// Time spent in saturated steps (every rank at `max_running`), s.
    pub saturated_s: f64,
    /// Decode tokens of the saturated steps.
    pub saturated_decode_tokens: u64,
}

/// Folds the engine's records into [`ServingSummary`] and [`SecondRow`]s.
#[derive(Debug, Default)]
pub struct Collector {
    slo: Slo,
    seconds: Vec<SecondRow>,
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2e: Vec<f64>,
    queue: Vec<f64>,
    requests: u64,
    rejected: u64,
    input_tokens: u64,
    output_tokens: u64,
    slo_met: u64,
    slo_met_tokens: u64,
    preemptions: u64,
    cached_tokens: u64,
    steps: u64,
    step_ns: u64,
    imbalance: f64,
    peak_kv_use: f64,
    in_system_ns: f64,
    end_ns: u64,
    pools: Vec<(Role, PoolTotals)>,
}

impl Collector {
    /// A collector judging `slo`.
    pub fn new(slo: Slo) -> Collector {
        Collector {
            slo,
            ..Collector::default()
        }
    }

    fn second(&mut self, ns: u64) -> &mut SecondRow {
        let second = (ns / 1_000_000_000) as usize;
        while self.seconds.len() <= second {
            let row = SecondRow {
                second: self.seconds.len() as u64,
                ..SecondRow::default()
            };
            self.seconds.push(row);
        }
        &mut self.seconds[second]
    }

    /// Adds `weight x` the overlap of `[start, end)` ns with each second to `field` of that
    /// second, in seconds.
    fn spread(&mut self, start: u64, end: u64, weight: f64, field: fn(&mut SecondRow) -> &mut f64) {
        let mut at = start;
        while at < end {
            let boundary = (at / 1_000_000_000 + 1) * 1_000_000_000;
            let until = boundary.min(end);
            *field(self.second(at)) += weight * (until - at) as f64 / NS;
            at = until;
        }
    }

    /// TTFT, TPOT and E2E of the finished requests, s (sorted once [`Collector::summary`] ran).
    pub fn latencies(&self) -> [Vec<f64>; 3] {
        [self.ttft.clone(), self.tpot.clone(), self.e2e.clone()]
    }

    /// What the pool of `role` did (zeros when it never stepped).
    pub fn pool_totals(&self, role: Role) -> PoolTotals {
        self.pools
            .iter()
            .find(|(r, _)| *r == role)
            .map_or_else(PoolTotals::default, |(_, t)| *t)
    }

    /// The per-second table so far.
    pub fn seconds(&self) -> &[SecondRow] {
        &self.seconds
    }

    /// The summary of everything observed, for `gpus` GPUs on `nodes` nodes at
    /// `price_per_gpu_hour`.
    pub fn summary(&mut self, gpus: u64, nodes: u64, price_per_gpu_hour: f64) -> ServingSummary {
        let duration_s = self.end_ns as f64 / NS;
        let per_s = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let finished = self.e2e.len() as u64;
        let gpu_hours = gpus as f64 * duration_s / 3600.0;
        let output_per_s = per_s(self.output_tokens as f64);
        let input_per_s = per_s(self.input_tokens as f64);
        ServingSummary {
            requests: self.requests,
            finished,
            rejected: self.rejected,
            duration_s,
            ttft: Latency::of(&mut self.ttft),
            tpot: Latency::of(&mut self.tpot),
            e2e: Latency::of(&mut self.e2e),
            queue: Latency::of(&mut self.queue),
            requests_per_s: per_s(finished as f64),
            input_tokens_per_s: input_per_s,
            output_tokens_per_s: output_per_s,
            input_tokens_per_s_per_gpu: input_per_s / gpus.max(1) as f64,
            output_tokens_per_s_per_gpu: output_per_s / gpus.max(1) as f64,
            input_tokens_per_s_per_node: input_per_s / nodes.max(1) as f64,
            output_tokens_per_s_per_node: output_per_s / nodes.max(1) as f64,
            slo: self.slo,
            slo_attainment: self.slo_met as f64 / self.requests.max(1) as f64,
            goodput_requests_per_s: per_s(self.slo_met as f64),
            goodput_output_tokens_per_s: per_s(self.slo_met_tokens as f64),
            gpus,
            nodes,
            gpu_hours,
            price_per_gpu_hour,
            cost_per_million_output_tokens: if self.output_tokens > 0 {
                gpu_hours * price_per_gpu_hour * 1e6 / self.output_tokens as f64
            } else {
                0.0
            },
            preemptions: self.preemptions,
            cached_prompt_tokens: self.cached_tokens,
            steps: self.steps,
            mean_step_ms: self.step_ns as f64 / 1e6 / self.steps.max(1) as f64,
            mean_imbalance: self.imbalance / self.steps.max(1) as f64,
            peak_kv_use: self.peak_kv_use,
            mean_in_system: if self.end_ns > 0 {
                self.in_system_ns / self.end_ns as f64
            } else {
                0.0
            },
        }
    }
}

impl Observer for Collector {
    fn arrival(&mut self, arrival_ns: u64) {
        self.requests += 1;
        self.second(arrival_ns).arrivals += 1;
    }

    fn request(&mut self, record: &RequestRecord) -> Result<()> {
        self.preemptions += u64::from(record.preemptions);
        if record.rejected {
            self.rejected += 1;
            return Ok(());
        }
        let end_ns = ((record.arrival_s + record.e2e_s) * NS).round() as u64;
        self.end_ns = self.end_ns.max(end_ns);
        self.ttft.push(record.ttft_s);
        if record.output_tokens > 1 {
            self.tpot.push(record.tpot_s);
        }
        self.e2e.push(record.e2e_s);
        self.queue.push(record.queue_s);
        self.input_tokens += record.input_tokens;
        self.output_tokens += record.output_tokens;
        self.cached_tokens += record.cached_tokens;
        self.second(end_ns).finished += 1;
        if self.slo.met(record.ttft_s, record.tpot_s) {
            self.second((record.arrival_s * NS).round() as u64).slo_met += 1;
            self.slo_met += 1;
            self.slo_met_tokens += record.output_tokens;
        }
        Ok(())
    }

    fn step(&mut self, step: &StepRecord) {
        let end = step.start_ns + step.ns;
        self.end_ns = self.end_ns.max(end);
        let totals = match self.pools.iter().position(|(r, _)| *r == step.role) {
            Some(p) => &mut self.pools[p].1,
            None => {
                self.pools.push((step.role, PoolTotals::default()));
                &mut self.pools.last_mut().expect("just pushed").1
            }
        };
        totals.steps += 1;
        totals.busy_s += step.ns as f64 / NS;
        totals.prefill_tokens += step.prefill_tokens;
        totals.decode_tokens += step.decode_tokens;
        if step.saturated {
            totals.saturated_s += step.ns as f64 / NS;
            totals.saturated_decode_tokens += step.decode_tokens;
        }
        self.steps += 1;
        self.step_ns += step.ns;
        self.imbalance += step.imbalance;
        let kv_use = step.kv_used_blocks as f64 / step.kv_blocks.max(1) as f64;
        self.peak_kv_use = self.peak_kv_use.max(kv_use);
        let in_system = (step.running + step.waiting) as f64;
        self.in_system_ns += in_system * step.ns as f64;
        self.spread(step.start_ns, end, step.running as f64, |s| &mut s.running);
        self.spread(step.start_ns, end, step.waiting as f64, |s| &mut s.waiting);
        self.spread(step.start_ns, end, step.gpus as f64, |s| &mut s.gpus_busy);
        let second = self.second(step.start_ns);
        // Running means, folded in as steps arrive.
        let n = second.steps as f64;
        second.step_ms = (second.step_ms * n + step.ns as f64 / 1e6) / (n + 1.0);
        second.imbalance = (second.imbalance * n + step.imbalance) / (n + 1.0);
        second.steps += 1;
        second.prefill_tokens += step.prefill_tokens;
        second.decode_tokens += step.decode_tokens;
        second.kv_use = second.kv_use.max(kv_use);
    }
}
