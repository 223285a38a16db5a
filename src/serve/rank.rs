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
    /// An idle rank with `blocks` KV blocks and room for `prefix_blocks` cached prefix blocks.
    pub fn new(blocks: u64, prefix_blocks: usize) -> Rank {
        Rank {
            free_blocks: blocks,
            prefix: PrefixCache::new(prefix_blocks),
            ..Rank::default()
        }
    }

    /// Requests in the rank, waiting or running.
    pub fn requests(&self) -> usize {
        self.waiting.len() + self.running.len()
    }
}

/// The most recently used prompt blocks of a rank, by hash (least recently used evicted).
#[derive(Debug, Default)]
pub struct PrefixCache {
    capacity: usize,
    last_use: HashMap<u64, u64>,
    by_age: BTreeMap<u64, u64>,
    clock: u64,
}

impl PrefixCache {
    fn new(capacity: usize) -> PrefixCache {
        PrefixCache {
            capacity,
            ..PrefixCache::default()
        }
    }

    /// Leading blocks of `hashes` in the cache (each then counts as used now).
    pub fn matched(&mut self, hashes: &[u64]) -> usize {
        let matched = hashes
            .iter()
            .take_while(|h| self.last_use.contains_key(h))
            .count();
        for &hash in &hashes[..matched] {
            self.touch(hash);
        }
        matched
    }

    /// Records `hashes` as computed on this rank.
    pub fn insert(&mut self, hashes: &[u64]) {
        for &hash in hashes {
            self.touch(hash);
        }
        while self.last_use.len() > self.capacity {
            let Some((_, hash)) = self.by_age.pop_first() else {
                break;
            };
            self.last_use.remove(&hash);
        }
    }

    fn touch(&mut self, hash: u64) {
        self.clock += 1;
        if let Some(old) = self.last_use.insert(hash, self.clock) {
            self.by_age.remove(&old);
        }
        self.by_age.insert(self.clock, hash);
    }
}
