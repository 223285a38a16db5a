//! The event loop: pools step in simulated time, each as far as its own clock; arrivals and
//! KV hand-offs wait for the step boundary of the pool they enter.

use std::collections::BTreeMap;

use super::assign::{ASSIGNERS, RankAssigner};
use super::autoscale::Signal;
use super::batching::{BATCH_POLICIES, BatchBuilder, BatchPolicy};
use super::config::{PoolConfig, Role};
use super::metrics::{RequestRecord, StepRecord};
use super::rank::{Live, PREFIX_BLOCK_TOKENS, Rank};
use super::scaling::{Change, Moved, Scaler};
use super::transfer::Handoff;
use super::{Observer, RankBatch, StepPricer, TokenRun};
use crate::error::{Error, Result};
use crate::registry::{Named, Settings};
use crate::workload::{Request, RequestStream};

/// One pool: data-parallel ranks stepping in lockstep, priced by its own pricer.
pub struct Pool<'p> {
    /// Its settings.
    pub config: PoolConfig,
    pricer: Box<dyn StepPricer + 'p>,
    policy: Named<dyn BatchPolicy>,
    assigner: Named<dyn RankAssigner>,
    ranks: Vec<Rank>,
    /// Ranks serving: the first `active` of `ranks` (all without elastic scaling).
    active: usize,
    /// The pool steps no earlier than this (a restart under way), ns.
    resume_ns: u64,
    clock_ns: u64,
    /// Requests on their way in, by (ready time, order of arrival).
    inbox: BTreeMap<(u64, u64), Live>,
    received: u64,
    /// Scratch: the requests' token runs of the step being priced.
    runs: Vec<TokenRun>,
}

impl<'p> Pool<'p> {
    /// An idle pool of `config`, priced by `pricer`, batching with policy `policy` and spreading
    /// requests over its ranks by `assign`.
    pub fn new(
        config: PoolConfig,
        pricer: Box<dyn StepPricer + 'p>,
        policy: &str,
        assign: &str,
    ) -> Result<Pool<'p>> {
        let settings = Settings::new();
        let policy = BATCH_POLICIES
            .build(policy, &settings)
            .map_err(Error::invalid)?;
        let assigner = ASSIGNERS.build(assign, &settings).map_err(Error::invalid)?;
        let entry_blocks = PREFIX_BLOCK_TOKENS / config.block_size;
        let ranks = (0..config.ranks)
            .map(|_| Rank::new(config.kv_blocks, entry_blocks))
            .collect();
        Ok(Pool {
            active: config.ranks,
            resume_ns: 0,
            config,
            pricer,
            policy,
            assigner,
            ranks,
            clock_ns: 0,
            inbox: BTreeMap::new(),
            received: 0,
            runs: Vec::new(),
        })
    }

    fn has_work(&self) -> bool {
        self.ranks.iter().any(|r| r.requests() > 0)
    }

    /// The serving ranks.
    fn serving(&self) -> &[Rank] {
        &self.ranks[..self.active]
    }

    /// Whether `tokens` tokens of one request fit in one rank's KV cache.
    fn fits(&self, tokens: u64) -> bool {
        self.config.blocks_for(tokens) <= self.config.kv_blocks
    }

    /// The rank the next request goes to.
    fn choose_rank(&mut self) -> usize {
        let mut held: Vec<usize> = self.serving().iter().map(Rank::requests).collect();
        // Requests whose rank left while they were on their way in count nowhere: they choose
        // again when they arrive (`admit_ready`).
        for live in self.inbox.values() {
            if let Some(count) = held.get_mut(live.rank) {
                *count += 1;
            }
        }
        self.assigner.strategy.choose(&held)
    }

    /// Queues `live` on its rank, ready at `ready_ns`.
    fn receive(&mut self, live: Live, ready_ns: u64) {
        self.inbox.insert((ready_ns, self.received), live);
        self.received += 1;
    }

    /// Moves what is ready by the pool's clock into its ranks' queues.
    fn admit_ready(&mut self) {
        while let Some(entry) = self.inbox.first_entry() {
            if entry.key().0 > self.clock_ns {
                break;
            }
            let mut live = entry.remove();
            if live.rank >= self.active {
                // Its rank left while it was on its way in.
                live.rank = self.choose_rank();
            }
            self.ranks[live.rank].waiting.push_back(live);
        }
    }

    /// What the autoscaler sees now.
    fn signal(&self, now_ns: u64) -> Signal {
        let serving = self.serving();
        Signal {
            now_ns,
            queued: serving.iter().map(|r| r.waiting.len() as u64).sum::<u64>()
                + self.inbox.len() as u64,
            running: serving.iter().map(|r| r.running.len() as u64).sum(),
            slots: (self.active * self.config.max_running) as u64,
            ..Signal::default()
        }
    }

    /// A fresh rank of this pool.
    fn fresh_rank(&self) -> Rank {
        Rank::new(
            self.config.kv_blocks,
            PREFIX_BLOCK_TOKENS / self.config.block_size,
        )
    }

    /// Applies a capacity change: the failed ranks' requests lose their KV, the ranks beyond
    /// `change.ranks` hand theirs over as `change.moved` says, a restart drops every running
    /// request's KV; returns the requests (recomputed, handed over with their KV).
    fn resize(&mut self, change: &Change) -> (u64, u64) {
        let mut homeless: Vec<(Live, bool)> = Vec::new();
        for &failed in change.failed.iter().rev() {
            if failed >= self.active {
                continue;
            }
            let fresh = self.fresh_rank();
            let rank = std::mem::replace(&mut self.ranks[failed], fresh);
            evict(rank, false, &mut homeless);
            // The last serving rank takes the failed one's place.
            self.active -= 1;
            self.ranks.swap(failed, self.active);
            let moved = self.active;
            let rank = &mut self.ranks[failed];
            for live in rank.waiting.iter_mut().chain(rank.running.iter_mut()) {
                live.rank = failed;
            }
            // Requests on their way to the failed rank choose again when they arrive; those on
            // their way to the moved one follow it.
            for live in self.inbox.values_mut() {
                if live.rank == failed {
                    live.rank = usize::MAX;
                } else if live.rank == moved {
                    live.rank = failed;
                }
            }
        }
        while self.active > change.ranks {
            self.active -= 1;
            let fresh = self.fresh_rank();
            let rank = std::mem::replace(&mut self.ranks[self.active], fresh);
            evict(rank, change.moved == Moved::KeepKv, &mut homeless);
        }
        self.active = change.ranks.clamp(1, self.ranks.len());
        if change.restart {
            for r in 0..self.active {
                let fresh = self.fresh_rank();
                let rank = std::mem::replace(&mut self.ranks[r], fresh);
                evict(rank, false, &mut homeless);
            }
        }
        self.resume_ns = self.resume_ns.max(change.pause_until_ns);
        homeless.sort_by_key(|(live, _)| (live.arrival_ns, live.id));
        let (mut recomputed, mut kept) = (0, 0);
        for (mut live, keep) in homeless {
            live.rank = self.choose_rank();
            let rank = &mut self.ranks[live.rank];
            let need = self.config.blocks_for(live.computed);
            if keep && rank.running.len() < self.config.max_running && rank.take_blocks(need) {
                live.blocks = need;
                rank.running.push(live);
                kept += 1;
                continue;
            }
            if live.computed > 0 {
                live.computed = 0;
                live.preemptions += 1;
                recomputed += 1;
            }
            rank.waiting.push_back(live);
        }
        (recomputed, kept)
    }
}

/// Takes every request out of `rank`, releasing what it held; running ones keep their
/// computed tokens (to hand over with their KV) when `keep`, else lose them.
fn evict(mut rank: Rank, keep: bool, out: &mut Vec<(Live, bool)>) {
    for mut live in std::mem::take(&mut rank.running) {
        rank.release(&mut live);
        live.scheduled = 0;
        out.push((live, keep));
    }
    out.extend(rank.waiting.drain(..).map(|live| (live, false)));
}

impl Pool<'_> {
    /// Runs one step from the pool's clock: returns the requests that leave it (finished, or
    /// done with their prefill in a prefill pool), with the time they left.
    fn step(&mut self, observer: &mut dyn Observer) -> Result<(u64, Vec<Live>)> {
        let now = self.clock_ns;
        for rank in &mut self.ranks[..self.active] {
            self.policy
                .fill(&mut BatchBuilder::new(rank, &self.config, now));
        }
        let batches: Vec<RankBatch> = self.serving().iter().map(rank_batch).collect();
        if batches.iter().all(|b| b.tokens() == 0) {
            return Err(Error::invalid(format!(
                "the {:?} pool holds requests but can schedule none of them (a request larger \
                 than a rank's token budget and KV cache together?)",
                self.config.role
            )));
        }
        self.runs.clear();
        for (rank, r) in self.ranks[..self.active].iter().enumerate() {
            let scheduled = r.running.iter().filter(|l| l.scheduled > 0);
            self.runs.extend(scheduled.map(|l| TokenRun {
                request: l.id,
                rank,
                first: l.computed,
                count: l.scheduled,
            }));
        }
        self.pricer.starts_at(now);
        let cost = self.pricer.price(&batches, &self.runs)?;
        let end = now + cost.ns.max(1);
        let kv_used: u64 = self
            .serving()
            .iter()
            .map(|r| r.used_blocks(self.config.kv_blocks))
            .sum();
        observer.step(&StepRecord {
            role: self.config.role,
            start_ns: now,
            ns: end - now,
            prefill_tokens: batches.iter().map(|b| b.prefill_tokens).sum(),
            decode_tokens: batches.iter().map(|b| b.decode_tokens).sum(),
            running: self.serving().iter().map(|r| r.running.len() as u64).sum(),
            waiting: self.serving().iter().map(|r| r.waiting.len() as u64).sum(),
            kv_used_blocks: kv_used,
            kv_blocks: self.config.kv_blocks * self.active as u64,
            imbalance: cost.imbalance,
            gpus: (self.config.gpus / self.config.ranks * self.active) as u64,
            saturated: self
                .serving()
                .iter()
                .all(|r| r.running.len() == self.config.max_running),
        });
        let mut leaving = Vec::new();
        let prefill_only = self.config.role == Role::Prefill;
        for rank in &mut self.ranks[..self.active] {
            let mut i = 0;
            while i < rank.running.len() {
                let request = &mut rank.running[i];
                if request.scheduled > 0 {
                    request.computed += std::mem::take(&mut request.scheduled);
                    if request.computed == request.known() {
                        request.generated += 1;
                        request.first_token_ns.get_or_insert(end);
                        if request.generated == 1 && self.config.prefix_caching {
                            rank.share_prompt(i);
                        }
                    }
                }
                let request = &rank.running[i];
                if request.generated == request.output || (prefill_only && request.generated > 0) {
                    let mut done = rank.running.remove(i);
                    rank.release(&mut done);
                    leaving.push(done);
                } else {
                    i += 1;
                }
            }
        }
        self.clock_ns = end;
        Ok((end, leaving))
    }
}

/// What `rank` runs in the step just scheduled.
fn rank_batch(rank: &Rank) -> RankBatch {
    let mut batch = RankBatch::default();
    for request in rank.running.iter().filter(|r| r.scheduled > 0) {
        let n = request.scheduled;
        let start = request.computed as f64;
        if request.computed + n == request.known() {
            batch.samples += 1;
        }
        if request.decoding() {
            batch.decode_tokens += 1;
            batch.decode_keys += start + 1.0;
        } else {
            // Tokens at positions start..start+n attend position + 1 keys each.
            batch.prefill_tokens += n;
            batch.prefill_keys += n as f64 * start + (n * (n + 1)) as f64 / 2.0;
        }
    }
    batch
}

/// The serving engine: one colocated pool, or a prefill pool and a decode pool joined by a
/// [`Handoff`].
pub struct Engine<'p> {
    pools: Vec<Pool<'p>>,
    /// Changes the entry pool's serving ranks over time (elastic scaling, failures).
    scaler: Option<&'p mut dyn Scaler>,
    handoff: Option<Handoff<'p>>,
    /// KV transfers not started yet (they start when their prefill step ends), by (start time,
    /// ticket): the sending prefill rank, the request and its bytes.
    pending: BTreeMap<(u64, u64), (usize, Live, u64)>,
    /// KV transfers in flight by ticket: the request and when its transfer started.
    in_flight: BTreeMap<u64, (Live, u64)>,
    next_ticket: u64,
}

impl<'p> Engine<'p> {
    /// An engine of one colocated pool.
    pub fn colocated(pool: Pool<'p>) -> Engine<'p> {
        Engine::new(vec![pool], None)
    }

    /// A disaggregated engine: `prefill` hands each request to `decode` through `handoff`.
    pub fn disaggregated(prefill: Pool<'p>, decode: Pool<'p>, handoff: Handoff<'p>) -> Engine<'p> {
        Engine::new(vec![prefill, decode], Some(handoff))
    }

    fn new(pools: Vec<Pool<'p>>, handoff: Option<Handoff<'p>>) -> Engine<'p> {
        Engine {
            pools,
            scaler: None,
            handoff,
            pending: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_ticket: 0,
        }
    }

    /// The entry pool's serving ranks change as `scaler` says, from its initial ranks.
    pub fn with_scaler(mut self, scaler: &'p mut dyn Scaler) -> Engine<'p> {
        let pool = &mut self.pools[0];
        pool.active = scaler.initial_ranks().clamp(1, pool.ranks.len());
        self.scaler = Some(scaler);
        self
    }

    /// Serves every request of `requests`, reporting to `observer`; `progress` is told the
    /// simulated time now and then.
    pub fn run(
        &mut self,
        requests: RequestStream,
        observer: &mut dyn Observer,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut requests = Arrivals::new(requests);
        let mut steps = 0u64;
        let mut landed = Vec::new();
        loop {
            let next_arrival = requests.peek_ns()?;
            let next_step = self.next_pool(next_arrival);
            // KV transfers move first at a tie, so a decode step sees what landed by its start.
            if let Some(at) = self.next_transfer_ns()
                && next_step.is_none_or(|(step_ns, _)| at <= step_ns)
            {
                self.advance_transfers(at, &mut landed);
                continue;
            }
            let Some((now, p)) = next_step else {
                break;
            };
            self.pools[p].clock_ns = now;
            if p == 0 {
                while let Some(request) = requests.next_by(now)? {
                    self.arrive(request, observer)?;
                }
            }
            if p == 0
                && let Some(scaler) = &mut self.scaler
                && let Some(change) = scaler.poll(self.pools[0].signal(now))
            {
                let (recomputed, kept) = self.pools[0].resize(&change);
                scaler.applied(recomputed, kept);
            }
            if self.pools[p].resume_ns > now {
                // Restarting: it steps again when rebuilt.
                continue;
            }
            self.pools[p].admit_ready();
            if !self.pools[p].has_work() {
                // What arrived was rejected.
                continue;
            }
            let (end, leaving) = self.pools[p].step(observer)?;
            for live in leaving {
                self.leave(p, live, end, observer)?;
            }
            steps += 1;
            if steps.is_multiple_of(4096) {
                progress(end);
            }
        }
        Ok(())
    }

    /// The pool to step next and from when: the earliest clock of a pool with work, or the
    /// earliest time work reaches an idle pool.
    fn next_pool(&self, next_arrival: Option<u64>) -> Option<(u64, usize)> {
        let mut best: Option<(u64, usize)> = None;
        for (p, pool) in self.pools.iter().enumerate() {
            let time = if pool.has_work() {
                Some(pool.clock_ns)
            } else {
                let inbox = pool.inbox.keys().next().map(|k| k.0);
                let arrival = if p == 0 { next_arrival } else { None };
                [inbox, arrival]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.max(pool.clock_ns))
            }
            .map(|t| t.max(pool.resume_ns));
            if let Some(time) = time
                && best.is_none_or(|(b, _)| time < b)
            {
                best = Some((time, p));
            }
        }
        best
    }

    /// Takes `request` into the entry pool, or rejects it when it could never fit one rank's KV
    /// cache (its prompt in a prefill pool, all its tokens where it decodes).
    fn arrive(
        &mut self,
        (request, arrival_ns): (Request, u64),
        observer: &mut dyn Observer,
    ) -> Result<()> {
        observer.arrival(arrival_ns);
        if let Some(scaler) = &mut self.scaler {
            scaler.arrival(arrival_ns);
        }
        let total = request.input_tokens + request.output_tokens;
        let fits = match self.pools.as_slice() {
            [colocated] => colocated.fits(total),
            [prefill, decode] => prefill.fits(request.input_tokens + 1) && decode.fits(total),
            _ => unreachable!("an engine has one or two pools"),
        };
        let mut live = Live::new(request, arrival_ns);
        if !fits {
            return observer.request(&RequestRecord::rejected(&live));
        }
        let entry = &mut self.pools[0];
        live.rank = entry.choose_rank();
        entry.receive(live, arrival_ns);
        Ok(())
    }

    /// `live` left pool `p` at `at_ns`: finished, or on its way to the decode pool.
    fn leave(
        &mut self,
        p: usize,
        mut live: Live,
        at_ns: u64,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let done = live.generated == live.output;
        match &self.handoff {
            Some(handoff) if p == 0 && !done => {
                let from = live.rank;
                live.rank = self.pools[1].choose_rank();
                let bytes = (handoff.kv_bytes_per_token * live.computed as f64).ceil() as u64;
                self.pending
                    .insert((at_ns, self.next_ticket), (from, live, bytes.max(1)));
                self.next_ticket += 1;
                Ok(())
            }
            _ => {
                let record = RequestRecord::finished(&live, at_ns);
                if let Some(scaler) = &mut self.scaler {
                    scaler.finished(&record);
                }
                observer.request(&record)
            }
        }
    }

    /// When the KV hand-off next does something: a transfer starts, drains or lands.
    fn next_transfer_ns(&self) -> Option<u64> {
        let handoff = self.handoff.as_ref()?;
        let start = self.pending.keys().next().map(|k| k.0);
        [start, handoff.transport.next_event_ns()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the KV hand-off to `now_ns`: transfers that land go to the decode pool (the KV
    /// arrives whole, so only the first decode step waits for it), those due start.
    fn advance_transfers(&mut self, now_ns: u64, landed: &mut Vec<u64>) {
        let Some(handoff) = &mut self.handoff else {
            return;
        };
        landed.clear();
        handoff.transport.advance(now_ns, landed);
        for ticket in landed.drain(..) {
            let (mut live, start_ns) = self
                .in_flight
                .remove(&ticket)
                .expect("a landed transfer was started");
            live.kv_transfer_ns = now_ns - start_ns;
            self.pools[1].receive(live, now_ns);
        }
        while let Some(entry) = self.pending.first_entry()
            && entry.key().0 <= now_ns
        {
            let ((_, ticket), (from, live, bytes)) = entry.remove_entry();
            handoff
                .transport
                .start(now_ns, from, live.rank, bytes, ticket);
            self.in_flight.insert(ticket, (live, now_ns));
        }
    }
}

/// The request stream with its next request read ahead, arrival times in ns.
struct Arrivals {
    stream: RequestStream,
    next: Option<(Request, u64)>,
}

impl Arrivals {
    fn new(stream: RequestStream) -> Arrivals {
        Arrivals { stream, next: None }
    }

    /// When the next request arrives (none when the stream is over).
    fn peek_ns(&mut self) -> Result<Option<u64>> {
        if self.next.is_none()
            && let Some(request) = self.stream.next().transpose()?
        {
            let ns = (request.arrival_s * 1e9).round() as u64;
            self.next = Some((request, ns));
        }
        Ok(self.next.as_ref().map(|(_, ns)| *ns))
    }

    /// The next request when it arrives by `now_ns`.
    fn next_by(&mut self, now_ns: u64) -> Result<Option<(Request, u64)>> {
        Ok(match self.peek_ns()? {
            Some(ns) if ns <= now_ns => self.next.take(),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{RankBatch, StepCost};

    /// Every step costs 1 ns.
    struct Free;

    impl StepPricer for Free {
        fn price(&mut self, _ranks: &[RankBatch], _runs: &[TokenRun]) -> Result<StepCost> {
            Ok(StepCost {
                ns: 1,
                imbalance: 1.0,
            })
        }
    }

    fn live(id: u64, rank: usize) -> Live {
        let request = Request {
            id,
            arrival_s: 0.0,
            input_tokens: 16,
            output_tokens: 4,
            prefix_blocks: None,
        };
        Live {
            rank,
            ..Live::new(request, 0)
        }
    }

    fn pool(ranks: usize) -> Pool<'static> {
        let config = PoolConfig {
            role: Role::Colocated,
            ranks,
            gpus: ranks,
            max_batch_tokens: 8192,
            max_running: 256,
            chunked_prefill: true,
            block_size: 16,
            kv_blocks: 1_000,
            prefix_caching: false,
        };
        Pool::new(config, Box::new(Free), "decode-first", "least-loaded").unwrap()
    }

    #[test]
    fn requests_in_flight_to_ranks_that_leave_choose_again_on_arrival() {
        // Two ranks; rank 1 holds a queued request and another is on its way to it (ready at
        // 1 us) when the pool shrinks to one rank.
        let mut pool = pool(2);
        pool.ranks[1].waiting.push_back(live(0, 1));
        pool.receive(live(1, 1), 1_000);
        let change = Change {
            failed: Vec::new(),
            ranks: 1,
            moved: Moved::Recompute,
            restart: false,
            pause_until_ns: 0,
        };
        assert_eq!(pool.resize(&change), (0, 0));
        pool.clock_ns = 1_000;
        pool.admit_ready();
        let ids: Vec<u64> = pool.ranks[0].waiting.iter().map(|l| l.id).collect();
        assert_eq!(ids, [0, 1]);
        assert!(pool.ranks[0].waiting.iter().all(|l| l.rank == 0));
    }

    #[test]
    fn a_failed_ranks_requests_in_flight_choose_again_and_the_moved_ranks_follow_it() {
        // Three ranks; rank 0 fails, rank 2 takes its place. Rank 1 already holds a request, so
        // the one on its way to the failed rank lands on the least loaded serving rank: 0.
        let mut pool = pool(3);
        pool.ranks[1].waiting.push_back(live(0, 1));
        pool.receive(live(1, 0), 1_000);
        pool.receive(live(2, 2), 1_000);
        let change = Change {
            failed: vec![0],
            ranks: 2,
            moved: Moved::Recompute,
            restart: false,
            pause_until_ns: 0,
        };
        pool.resize(&change);
        let heading: Vec<usize> = pool.inbox.values().map(|l| l.rank).collect();
        assert_eq!(heading, [usize::MAX, 0]);
        pool.clock_ns = 1_000;
        pool.admit_ready();
        let on = |r: usize| {
            pool.ranks[r]
                .waiting
                .iter()
                .map(|l| l.id)
                .collect::<Vec<_>>()
        };
        assert_eq!((on(0), on(1)), (vec![1, 2], vec![0]));
    }
}
