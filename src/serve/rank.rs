//! One data-parallel rank's state: its waiting and running requests, its free KV blocks and its
//! prefix cache.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Tokens of one Mooncake `hash_ids` block.
pub const PREFIX_BLOCK_TOKENS: u64 = 512;

/// A request in the engine.
#[derive(Debug, Clone)]
pub struct Live {
    /// Its id in the workload.
    pub id: u64,
    /// When it arrived, ns.
    pub arrival_ns: u64,
    /// Prompt tokens.
    pub input: u64,
    /// Tokens to generate.
    pub output: u64,
    /// Tokens whose KV is in the cache.
    pub computed: u64,
    /// Tokens generated so far.
    pub generated: u64,
    /// KV blocks held.
    pub blocks: u64,
    /// Tokens scheduled in the step being formed.
    pub scheduled: u64,
    /// The rank serving it (in the pool it is in).
    pub rank: usize,
    /// Times it was preempted.
    pub preemptions: u32,
    /// When it was first scheduled, ns.
    pub first_scheduled_ns: Option<u64>,
    /// When its first token came out, ns.
    pub first_token_ns: Option<u64>,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: u64,
    /// How long its KV took to reach the decode pool, ns (0 when colocated).
    pub kv_transfer_ns: u64,
    /// Hashes of the prompt's 512-token blocks.
    pub prefix_blocks: Option<Vec<u64>>,
    /// Leading prompt blocks it uses from the rank's prefix cache (held there, not in `blocks`).
    pub shared: usize,
}

impl Live {
    /// A request that has not been scheduled yet.
    pub fn new(request: crate::workload::Request, arrival_ns: u64) -> Live {
        Live {
            id: request.id,
            arrival_ns,
            input: request.input_tokens,
            output: request.output_tokens,
            computed: 0,
            generated: 0,
            blocks: 0,
            scheduled: 0,
            rank: 0,
            preemptions: 0,
            first_scheduled_ns: None,
            first_token_ns: None,
            cached_tokens: 0,
            kv_transfer_ns: 0,
            prefix_blocks: request.prefix_blocks,
            shared: 0,
        }
    }

    /// Tokens the request knows: its prompt and what it generated.
    pub fn known(&self) -> u64 {
        self.input + self.generated
    }

    /// Tokens still to compute before it samples its next token.
    pub fn pending(&self) -> u64 {
        self.known() - self.computed
    }

    /// Whether its next step is a decode step: it has generated and only its last token is
    /// not in the cache.
    pub fn decoding(&self) -> bool {
        self.generated > 0 && self.pending() == 1
    }
}

/// One rank of a pool.
#[derive(Debug, Default)]
pub struct Rank {
    /// Requests waiting to be admitted, in order (preempted ones at the front).
    pub waiting: VecDeque<Live>,
    /// Admitted requests, oldest first.
    pub running: Vec<Live>,
    /// KV blocks not held by any request.
    pub free_blocks: u64,
    /// Prompt blocks whose KV this rank has computed.
    pub prefix: PrefixCache,
}

impl Rank {
    /// An idle rank with `blocks` KV blocks, `entry_blocks` of them to a cached prompt block.
    pub fn new(blocks: u64, entry_blocks: u64) -> Rank {
        Rank {
            free_blocks: blocks,
            prefix: PrefixCache::new(entry_blocks),
            ..Rank::default()
        }
    }

    /// Requests in the rank, waiting or running.
    pub fn requests(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    /// KV blocks that running requests hold or share (idle cached blocks count as free, as
    /// vLLM counts them).
    pub fn used_blocks(&self, capacity: u64) -> u64 {
        capacity - self.free_blocks - self.prefix.idle_blocks()
    }

    /// Takes `need` free blocks, evicting idle cached prompt blocks (least recently used first)
    /// when the free ones are short; false, taking nothing, when even that is not enough.
    pub fn take_blocks(&mut self, need: u64) -> bool {
        if need > self.free_blocks + self.prefix.idle_blocks() {
            return false;
        }
        while self.free_blocks < need {
            self.free_blocks += self.prefix.evict().expect("idle blocks cover the need");
        }
        self.free_blocks -= need;
        true
    }

    /// Gives back what `request` holds: its own blocks, and its use of cached prompt blocks.
    pub fn release(&mut self, request: &mut Live) {
        self.free_blocks += std::mem::take(&mut request.blocks);
        if let Some(hashes) = &request.prefix_blocks {
            self.prefix.release(&hashes[..request.shared]);
        }
        request.shared = 0;
    }

    /// Once running request `i`'s prompt is computed, its whole 512-token prompt blocks go
    /// into the prefix cache, held once: a block the cache already has frees this request's
    /// copy, a new one moves from the request to the cache.
    pub fn share_prompt(&mut self, i: usize) {
        let request = &mut self.running[i];
        let Some(hashes) = &request.prefix_blocks else {
            return;
        };
        let whole = hashes
            .len()
            .min((request.input / PREFIX_BLOCK_TOKENS) as usize);
        for &hash in hashes.get(request.shared..whole).unwrap_or_default() {
            let entry_blocks = self.prefix.entry_blocks;
            request.blocks -= entry_blocks;
            if !self.prefix.share(hash) {
                self.free_blocks += entry_blocks;
            }
        }
        request.shared = request.shared.max(whole);
    }
}

/// The prompt blocks a rank keeps after computing them, by hash, as SGLang's radix cache and
/// vLLM's prefix caching keep them (at Mooncake's 512-token granularity): a block is held once
/// however many running requests use it, and one no running request uses stays cached, its
/// memory counted free, until an allocation needs it (least recently used first).
#[derive(Debug, Default)]
pub struct PrefixCache {
    /// KV blocks one cached prompt block holds.
    entry_blocks: u64,
    /// Running requests using each cached block, by hash.
    users: HashMap<u64, u32>,
    /// Cached blocks no request uses, by when they were last used: tick -> hash.
    idle: BTreeMap<u64, u64>,
    /// When each idle block was last used, by hash.
    idle_since: HashMap<u64, u64>,
    clock: u64,
}

impl PrefixCache {
    fn new(entry_blocks: u64) -> PrefixCache {
        PrefixCache {
            entry_blocks,
            ..PrefixCache::default()
        }
    }

    /// KV blocks held by cached prompt blocks no request uses.
    pub fn idle_blocks(&self) -> u64 {
        self.idle.len() as u64 * self.entry_blocks
    }

    /// The number of leading `hashes` cached; each is then used by one more request.
    pub fn acquire(&mut self, hashes: &[u64]) -> usize {
        let matched = hashes
            .iter()
            .take_while(|h| self.users.contains_key(h))
            .count();
        for &hash in &hashes[..matched] {
            self.share(hash);
        }
        matched
    }

    /// One request stops using `hashes`.
    pub fn release(&mut self, hashes: &[u64]) {
        for hash in hashes {
            let users = self.users.get_mut(hash).expect("a used block is cached");
            *users -= 1;
            if *users == 0 {
                self.clock += 1;
                self.idle.insert(self.clock, *hash);
                self.idle_since.insert(*hash, self.clock);
            }
        }
    }

    /// One more request uses `hash`, cached from now on; true when it was not cached before.
    fn share(&mut self, hash: u64) -> bool {
        let was_idle = self.idle_since.remove(&hash);
        if let Some(since) = was_idle {
            self.idle.remove(&since);
        }
        let users = self.users.entry(hash).or_insert(0);
        let new = *users == 0 && was_idle.is_none();
        *users += 1;
        new
    }

    /// Drops the least recently used idle block, returning the KV blocks it held.
    fn evict(&mut self) -> Option<u64> {
        let (_, hash) = self.idle.pop_first()?;
        self.idle_since.remove(&hash);
        self.users.remove(&hash);
        Some(self.entry_blocks)
    }
}
