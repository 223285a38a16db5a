//! The one definition of a step: how a trace is cut into the forward passes that the
//! analytical estimate, the simulator and `place eval` all price, one batch of consecutive
//! tokens each, and each step's dispatch plans under a placement.
//!
//! - With a batch schedule: its entries in order, each `repeat` times, the list cycled until the
//!   trace's tokens are used; a step of `tokens_per_gpu` per GPU takes `tokens_per_gpu x gpus`
//!   tokens, and the last step may be partial.
//! - Without one, from the trace's step metadata when it has some: every run of consecutive
//!   tokens with the same step id is a step, in the phase of its first token (when recorded).
//! - Otherwise steps of the scenario's `tokens_per_gpu x gpus` tokens.
//!
//! Aggregate loads have no tokens to cut: every schedule entry becomes one step (its repeats
//! would be identical), or one step of `tokens_per_gpu x gpus` tokens without a schedule.

use crate::cost::DispatchPlan;
use crate::cost::attention::AttentionSpan;
use crate::error::Result;
use crate::placement::Placement;
use crate::placement::dispatch::{DispatchPolicy, plan_loads_with, plan_tokens_with};
use crate::scenario::{BatchSpec, Sequences};
use crate::topology::Cluster;
use crate::trace::{Phase, RoutingTrace, Trace};

/// One step: which of the trace's tokens it processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Prefill or decode, when the schedule or the trace says.
    pub phase: Option<Phase>,
    /// Index of the step's first token in the trace (0 for aggregate loads).
    pub first_token: usize,
    /// Tokens in the step, all GPUs together.
    pub tokens: usize,
}

/// The steps of `trace` on `gpus` GPUs under `schedule`, or of `tokens_per_gpu` per GPU when
/// the schedule is empty (see the module docs).
pub fn cut_steps(
    trace: &Trace,
    schedule: &[BatchSpec],
    gpus: usize,
    tokens_per_gpu: usize,
) -> Vec<Step> {
    let routing = match trace {
        Trace::Tokens(routing) => routing,
        Trace::Loads(_) if schedule.is_empty() => {
            return vec![step(None, 0, tokens_per_gpu * gpus)];
        }
        Trace::Loads(_) => {
            return schedule
                .iter()
                .map(|entry| step(Some(entry.phase), 0, entry.tokens_per_gpu * gpus))
                .collect();
        }
    };
    let total = routing.num_tokens();
    if schedule.is_empty()
        && let Some(steps) = &routing.meta().step
    {
        return metadata_steps(steps, routing.meta().phase.as_deref());
    }
    let fixed = [BatchSpec {
        phase: Phase::Prefill,
        tokens_per_gpu,
        repeat: 1,
    }];
    let (entries, phase_known) = if schedule.is_empty() {
        (&fixed[..], false)
    } else {
        (schedule, true)
    };
    let mut cut = Vec::new();
    let mut first = 0;
    let mut shapes = entries
        .iter()
        .flat_map(|entry| std::iter::repeat_n(entry, entry.repeat))
        .cycle();
    while first < total {
        let Some(entry) = shapes.next() else { break };
        let tokens = (entry.tokens_per_gpu * gpus).min(total - first);
        cut.push(step(phase_known.then_some(entry.phase), first, tokens));
        first += tokens;
    }
    cut
}

/// Runs of equal step ids, each in the phase of its first token.
fn metadata_steps(step_ids: &[u32], phases: Option<&[Phase]>) -> Vec<Step> {
    let mut cut: Vec<Step> = Vec::new();
    for (token, &id) in step_ids.iter().enumerate() {
        match cut.last_mut() {
            Some(last) if step_ids[last.first_token] == id => last.tokens += 1,
            _ => cut.push(step(phases.map(|p| p[token]), token, 1)),
        }
    }
    cut
}

fn step(phase: Option<Phase>, first_token: usize, tokens: usize) -> Step {
    Step {
        phase,
        first_token,
        tokens,
    }
}

/// What `step`'s tokens attend over. From the trace's token positions when it has them (a
/// token at position `p` attends `p + 1` keys: causally in prefill, from the KV cache in
/// decode; its phase from the trace, else the step's, else prefill), otherwise from the
/// scenario's `[sequences]` lengths by the step's phase (prefill or none: causal over
/// `sequence_len`; decode: `context_len` cached keys), 0 where it gives none.
pub fn attention_span(trace: &Trace, step: &Step, sequences: &Sequences) -> AttentionSpan {
    let decode_step = step.phase == Some(Phase::Decode);
    if let Trace::Tokens(routing) = trace
        && let Some(positions) = &routing.meta().position
    {
        let end = (step.first_token + step.tokens).min(positions.len());
        let range = step.first_token.min(end)..end;
        let phases = routing.meta().phase.as_deref();
        let mut span = AttentionSpan::default();
        for token in range.clone() {
            let keys = f64::from(positions[token]) + 1.0;
            let decode = phases.map_or(decode_step, |p| p[token] == Phase::Decode);
            if decode {
                span.decode_keys += keys;
            } else {
                span.prefill_keys += keys;
            }
        }
        let tokens = range.len().max(1) as f64;
        span.prefill_keys /= tokens;
        span.decode_keys /= tokens;
        return span;
    }
    if decode_step {
        AttentionSpan {
            prefill_keys: 0.0,
            decode_keys: sequences.context_len.map_or(0.0, |c| c as f64),
        }
    } else {
        AttentionSpan {
            prefill_keys: sequences
                .sequence_len
                .map_or(0.0, |l| (l as f64 + 1.0) / 2.0),
            decode_keys: 0.0,
        }
    }
}

/// The tokens of `step` in `routing` (those past its end left out).
pub fn step_routing(routing: &RoutingTrace, step: &Step) -> RoutingTrace {
    let end = (step.first_token + step.tokens).min(routing.num_tokens());
    routing.slice_tokens(step.first_token.min(end)..end)
}

/// Per MoE layer, the dispatch plan of `step` under `placement` and `policy`: the step's tokens
/// of a token trace, or aggregate loads rescaled to `step.tokens x top_k` (token, expert) pairs.
pub fn step_plans(
    cluster: &Cluster,
    placement: &Placement,
    trace: &Trace,
    step: &Step,
    top_k: usize,
    policy: &DispatchPolicy,
) -> Result<Vec<DispatchPlan>> {
    match trace {
        Trace::Tokens(routing) => {
            let tokens = step_routing(routing, step);
            (0..tokens.num_layers())
                .map(|layer| {
                    plan_tokens_with(cluster, placement, layer, tokens.layer(layer), policy)
                })
                .collect()
        }
        Trace::Loads(loads) => (0..loads.num_layers())
            .map(|layer| {
                let total = loads.layer_total(layer);
                let scale = if total > 0.0 {
                    (step.tokens * top_k) as f64 / total
                } else {
                    0.0
                };
                let scaled: Vec<f64> = loads.layer(layer).iter().map(|l| l * scale).collect();
                plan_loads_with(cluster, placement, layer, &scaled, top_k, policy)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ExpertLoads, LayerRouting, TokenMeta};

    fn tokens(n: usize, meta: TokenMeta) -> Trace {
        let layer = LayerRouting::fixed_k(1, vec![0; n], None).unwrap();
        Trace::Tokens(RoutingTrace::new(2, vec![layer], meta).unwrap())
    }

    fn shape(cut: &[Step]) -> Vec<(Option<Phase>, usize, usize)> {
        cut.iter()
            .map(|b| (b.phase, b.first_token, b.tokens))
            .collect()
    }

    #[test]
    fn attention_spans_come_from_positions_else_from_the_scenario() {
        // Two prefill tokens at positions 0 and 1 (1 and 2 keys), two decode tokens at 99 and
        // 199 (100 and 200 cached keys): means over the 4 tokens.
        let meta = TokenMeta {
            position: Some(vec![0, 1, 99, 199]),
            phase: Some(vec![
                Phase::Prefill,
                Phase::Prefill,
                Phase::Decode,
                Phase::Decode,
            ]),
            ..TokenMeta::default()
        };
        let trace = tokens(4, meta);
        let all = step(None, 0, 4);
        let span = attention_span(&trace, &all, &Sequences::default());
        assert_eq!(
            (span.prefill_keys, span.decode_keys),
            (3.0 / 4.0, 300.0 / 4.0)
        );
        // Without positions: causal over 4096-token sequences (2048.5 keys on average), or
        // 5000 cached keys per decode token.
        let sequences = Sequences {
            sequence_len: Some(4096),
            context_len: Some(5000),
        };
        let plain = tokens(4, TokenMeta::default());
        let span = attention_span(&plain, &all, &sequences);
        assert_eq!((span.prefill_keys, span.decode_keys), (2048.5, 0.0));
        let span = attention_span(&plain, &step(Some(Phase::Decode), 0, 4), &sequences);
        assert_eq!((span.prefill_keys, span.decode_keys), (0.0, 5000.0));
        let span = attention_span(&plain, &all, &Sequences::default());
        assert_eq!(span, AttentionSpan::default());
    }

    #[test]
    fn without_a_schedule_steps_are_tokens_per_gpu_times_gpus_and_the_last_is_partial() {
        let trace = tokens(20, TokenMeta::default());
        // 2 GPUs x 4 tokens = 8 per step: 8 + 8 + 4.
        assert_eq!(
            shape(&cut_steps(&trace, &[], 2, 4)),
            [(None, 0, 8), (None, 8, 8), (None, 16, 4)]
        );
    }

    #[test]
    fn a_schedule_repeats_its_entries_and_cycles_until_the_trace_ends() {
        let trace = tokens(30, TokenMeta::default());
        let schedule = [
            BatchSpec {
                phase: Phase::Prefill,
                tokens_per_gpu: 5,
                repeat: 1,
            },
            BatchSpec {
                phase: Phase::Decode,
                tokens_per_gpu: 1,
                repeat: 2,
            },
        ];
        // 2 GPUs: prefill 10, decode 2, decode 2, prefill 10, decode 2, decode 2, then 2 left.
        let (p, d) = (Some(Phase::Prefill), Some(Phase::Decode));
        assert_eq!(
            shape(&cut_steps(&trace, &schedule, 2, 99)),
            [
                (p, 0, 10),
                (d, 10, 2),
                (d, 12, 2),
                (p, 14, 10),
                (d, 24, 2),
                (d, 26, 2),
                (p, 28, 2)
            ]
        );
    }

    #[test]
    fn step_metadata_cuts_the_trace_when_there_is_no_schedule() {
        let meta = TokenMeta {
            step: Some(vec![7, 7, 7, 8, 9, 9]),
            phase: Some(vec![
                Phase::Prefill,
                Phase::Prefill,
                Phase::Prefill,
                Phase::Decode,
                Phase::Decode,
                Phase::Decode,
            ]),
            ..TokenMeta::default()
        };
        let trace = tokens(6, meta);
        let (p, d) = (Some(Phase::Prefill), Some(Phase::Decode));
        assert_eq!(
            shape(&cut_steps(&trace, &[], 2, 1)),
            [(p, 0, 3), (d, 3, 1), (d, 4, 2)]
        );
    }

    #[test]
    fn aggregate_loads_give_one_step_per_schedule_entry() {
        let trace = Trace::Loads(ExpertLoads::new(2, vec![vec![1.0, 1.0]]).unwrap());
        assert_eq!(shape(&cut_steps(&trace, &[], 4, 8)), [(None, 0, 32)]);
        let schedule = [BatchSpec {
            phase: Phase::Decode,
            tokens_per_gpu: 2,
            repeat: 5,
        }];
        assert_eq!(
            shape(&cut_steps(&trace, &schedule, 4, 8)),
            [(Some(Phase::Decode), 0, 8)]
        );
    }
}
