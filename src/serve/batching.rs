//! Batch policies: which requests of a rank run in the next step and with how many tokens.
//! Each is a plug-in in [`BATCH_POLICIES`], chosen by `[serving] policy`; they are written
//! with the moves of a [`BatchBuilder`], which enforces the token budget, the running limit and
//! the KV blocks (preempting when a running request needs a block and none is free).

use super::config::PoolConfig;
use super::rank::{Live, PREFIX_BLOCK_TOKENS, Rank};
use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry};

/// Fills one rank's next step.
pub trait BatchPolicy: Send + Sync + std::fmt::Debug {
    /// Schedules the rank's next step with `batch`'s moves.
    fn fill(&self, batch: &mut BatchBuilder);
}

/// Every batch policy, by name.
pub static BATCH_POLICIES: Registry<dyn BatchPolicy> = Registry {
    kind: "batch policy",
    entries: &[
        plugin_entry!(BatchPolicy, DecodeFirst),
        plugin_entry!(BatchPolicy, PrefillFirst),
    ],
};

/// vLLM's v1 scheduler and SGLang with chunked prefill: every decoding request first, then the
/// prompts already started, then new requests, while the budget lasts.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeFirst;

impl BatchPolicy for DecodeFirst {
    fn fill(&self, batch: &mut BatchBuilder) {
        batch.schedule_running(true);
        batch.schedule_running(false);
        batch.admit_waiting();
    }
}

impl Plugin for DecodeFirst {
    const NAME: &'static str = "decode-first";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(DecodeFirst)
    }
}

/// vLLM's v0 scheduler: a step with prompts to run is a prefill step; decoding requests wait
/// for a step without any.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrefillFirst;

impl BatchPolicy for PrefillFirst {
    fn fill(&self, batch: &mut BatchBuilder) {
        batch.schedule_running(false);
        batch.admit_waiting();
        if !batch.scheduled_any() {
            batch.schedule_running(true);
        }
    }
}

impl Plugin for PrefillFirst {
    const NAME: &'static str = "prefill-first";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(PrefillFirst)
    }
}

/// The moves a policy schedules a rank's step with.
pub struct BatchBuilder<'a> {
    rank: &'a mut Rank,
    config: &'a PoolConfig,
    /// Tokens left in the step's budget.
    budget: u64,
    now_ns: u64,
    scheduled: usize,
}

impl<'a> BatchBuilder<'a> {
    /// A step of `rank` starting at `now_ns`, nothing scheduled yet.
    pub(super) fn new(rank: &'a mut Rank, config: &'a PoolConfig, now_ns: u64) -> Self {
        BatchBuilder {
            rank,
            config,
            budget: config.max_batch_tokens,
            now_ns,
            scheduled: 0,
        }
    }

    /// Whether anything runs in the step so far.
    pub fn scheduled_any(&self) -> bool {
        self.scheduled > 0
    }

    /// Schedules the running requests that decode (`decodes`) or that are still in their
    /// prompt (chunked to the budget), oldest first.
    pub fn schedule_running(&mut self, decodes: bool) {
        let mut i = 0;
        while i < self.rank.running.len() && self.budget > 0 {
            let request = &self.rank.running[i];
            if request.scheduled > 0 || request.decoding() != decodes {
                i += 1;
                continue;
            }
            let tokens = if self.config.chunked_prefill || decodes {
                request.pending().min(self.budget)
            } else if request.pending() <= self.budget || self.scheduled == 0 {
                request.pending()
            } else {
                i += 1;
                continue;
            };
            match self.allocate_running(i, tokens) {
                Some(at) => i = at + 1,
                None => continue,
            }
        }
    }

    /// Admits waiting requests in order while the running limit, the budget and the free blocks
    /// allow (admission never preempts).
    pub fn admit_waiting(&mut self) {
        while self.budget > 0 && self.rank.running.len() < self.config.max_running {
            let Some(request) = self.rank.waiting.front_mut() else {
                break;
            };
            if request.computed == 0
                && let Some(hashes) = &request.prefix_blocks
                && self.config.prefix_caching
            {
                request.shared = self.rank.prefix.acquire(hashes);
                // The last prompt token always runs: it produces the first output token.
                request.computed =
                    (request.shared as u64 * PREFIX_BLOCK_TOKENS).min(request.input - 1);
                request.cached_tokens = request.cached_tokens.max(request.computed);
            }
            let pending = request.pending();
            let tokens = if self.config.chunked_prefill {
                pending.min(self.budget)
            } else if pending <= self.budget || self.scheduled == 0 {
                pending
            } else {
                self.unshare_front();
                break;
            };
            let need = own_blocks(self.config, request, request.computed + tokens) - request.blocks;
            if !self.rank.take_blocks(need) {
                self.unshare_front();
                break;
            }
            let mut request = self.rank.waiting.pop_front().expect("front exists");
            request.blocks += need;
            self.rank.running.push(request);
            self.take(self.rank.running.len() - 1, tokens);
        }
    }

    /// Schedules `tokens` of running request `i`, preempting the latest admitted others for
    /// blocks (or `i` itself when it is the only one left). Returns `i`'s index after the
    /// preemptions, `None` when `i` was preempted.
    fn allocate_running(&mut self, mut i: usize, tokens: u64) -> Option<usize> {
        loop {
            let request = &self.rank.running[i];
            let need = own_blocks(self.config, request, request.computed + tokens) - request.blocks;
            if self.rank.take_blocks(need) {
                self.rank.running[i].blocks += need;
                self.take(i, tokens);
                return Some(i);
            }
            let last = self.rank.running.len() - 1;
            let victim = if last != i { last } else { i };
            self.preempt(victim);
            if victim == i {
                return None;
            }
            if victim < i {
                i -= 1;
            }
        }
    }

    /// Frees `victim`'s blocks and puts it back at the front of the queue to be recomputed.
    fn preempt(&mut self, victim: usize) {
        let mut request = self.rank.running.remove(victim);
        if request.scheduled > 0 {
            self.budget += request.scheduled;
            self.scheduled -= 1;
        }
        self.rank.release(&mut request);
        request.computed = 0;
        request.scheduled = 0;
        request.preemptions += 1;
        self.rank.waiting.push_front(request);
    }

    /// The front waiting request is not admitted after all: it stops using the cached blocks
    /// it matched (it matches again when admitted).
    fn unshare_front(&mut self) {
        let Some(request) = self.rank.waiting.front_mut() else {
            return;
        };
        if request.shared > 0 {
            if let Some(hashes) = &request.prefix_blocks {
                self.rank.prefix.release(&hashes[..request.shared]);
            }
            request.shared = 0;
            request.computed = 0;
        }
    }

    /// Schedules `tokens` of running request `i`.
    fn take(&mut self, i: usize, tokens: u64) {
        let request = &mut self.rank.running[i];
        request.scheduled = tokens;
        request.first_scheduled_ns.get_or_insert(self.now_ns);
        self.budget = self.budget.saturating_sub(tokens);
        self.scheduled += 1;
    }
}

/// The blocks `request` needs of its own to hold `tokens` tokens: those past the cached prompt
/// blocks it shares.
fn own_blocks(config: &PoolConfig, request: &Live, tokens: u64) -> u64 {
    let shared = request.shared as u64 * PREFIX_BLOCK_TOKENS / config.block_size;
    config.blocks_for(tokens).saturating_sub(shared)
}
