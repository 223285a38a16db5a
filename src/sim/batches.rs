//! Cuts a trace into the steps the simulator replays, one batch of consecutive tokens each.
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

use serde::Serialize;

use crate::scenario::BatchSpec;
use crate::trace::{Phase, Trace};

/// One simulated step: which of the trace's tokens it processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StepBatch {
    /// Prefill or decode, when the schedule or the trace says.
    pub phase: Option<Phase>,
    /// Index of the step's first token in the trace (0 for aggregate loads).
    pub first_token: usize,
    /// Tokens in the step, all GPUs together.
    pub tokens: usize,
}

/// The steps of `trace` on `gpus` GPUs under `schedule`, or of `tokens_per_gpu` per GPU when
/// the schedule is empty (see the module docs).
pub fn step_batches(
    trace: &Trace,
    schedule: &[BatchSpec],
    gpus: usize,
    tokens_per_gpu: usize,
) -> Vec<StepBatch> {
    let routing = match trace {
        Trace::Tokens(routing) => routing,
        Trace::Loads(_) if schedule.is_empty() => {
            return vec![batch(None, 0, tokens_per_gpu * gpus)];
        }
        Trace::Loads(_) => {
            return schedule
                .iter()
                .map(|entry| batch(Some(entry.phase), 0, entry.tokens_per_gpu * gpus))
                .collect();
        }
    };
    let total = routing.num_tokens();
    if schedule.is_empty()
        && let Some(steps) = &routing.meta().step
    {
        return metadata_batches(steps, routing.meta().phase.as_deref());
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
    let mut batches = Vec::new();
    let mut first = 0;
    let mut shapes = entries
        .iter()
        .flat_map(|entry| std::iter::repeat_n(entry, entry.repeat))
        .cycle();
    while first < total {
        let Some(entry) = shapes.next() else { break };
        let tokens = (entry.tokens_per_gpu * gpus).min(total - first);
        batches.push(batch(phase_known.then_some(entry.phase), first, tokens));
        first += tokens;
    }
    batches
}

/// Runs of equal step ids, each in the phase of its first token.
fn metadata_batches(steps: &[u32], phases: Option<&[Phase]>) -> Vec<StepBatch> {
    let mut batches: Vec<StepBatch> = Vec::new();
    for (token, &step) in steps.iter().enumerate() {
        match batches.last_mut() {
            Some(last) if steps[last.first_token] == step => last.tokens += 1,
            _ => batches.push(batch(phases.map(|p| p[token]), token, 1)),
        }
    }
    batches
}

fn batch(phase: Option<Phase>, first_token: usize, tokens: usize) -> StepBatch {
    StepBatch {
        phase,
        first_token,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{ExpertLoads, LayerRouting, RoutingTrace, TokenMeta};

    fn tokens(n: usize, meta: TokenMeta) -> Trace {
        let layer = LayerRouting::fixed_k(1, vec![0; n], None).unwrap();
        Trace::Tokens(RoutingTrace::new(2, vec![layer], meta).unwrap())
    }

    fn shape(batches: &[StepBatch]) -> Vec<(Option<Phase>, usize, usize)> {
        batches
            .iter()
            .map(|b| (b.phase, b.first_token, b.tokens))
            .collect()
    }

    #[test]
    fn without_a_schedule_steps_are_tokens_per_gpu_times_gpus_and_the_last_is_partial() {
        let trace = tokens(20, TokenMeta::default());
        // 2 GPUs x 4 tokens = 8 per step: 8 + 8 + 4.
        assert_eq!(
            shape(&step_batches(&trace, &[], 2, 4)),
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
            shape(&step_batches(&trace, &schedule, 2, 99)),
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
            shape(&step_batches(&trace, &[], 2, 1)),
            [(p, 0, 3), (d, 3, 1), (d, 4, 2)]
        );
    }

    #[test]
    fn aggregate_loads_give_one_step_per_schedule_entry() {
        let trace = Trace::Loads(ExpertLoads::new(2, vec![vec![1.0, 1.0]]).unwrap());
        assert_eq!(shape(&step_batches(&trace, &[], 4, 8)), [(None, 0, 32)]);
        let schedule = [BatchSpec {
            phase: Phase::Decode,
            tokens_per_gpu: 2,
            repeat: 5,
        }];
        assert_eq!(
            shape(&step_batches(&trace, &schedule, 4, 8)),
            [(Some(Phase::Decode), 0, 8)]
        );
    }
}
