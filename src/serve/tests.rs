//! The engine against answers worked out by hand, with steps of known cost.

use std::path::Path;

use super::metrics::{Collector, RequestRecord, SecondRow, ServingSummary, StepRecord};
use super::*;
use crate::workload::spec::WorkloadSpec;
use crate::workload::{Request, RequestStream};

/// Every step costs `fixed_ns` plus `per_token_ns` per token of its busiest rank.
struct Linear {
    fixed_ns: u64,
    per_token_ns: u64,
}

impl StepPricer for Linear {
    fn price(&mut self, ranks: &[RankBatch], _runs: &[TokenRun]) -> Result<StepCost> {
        let busiest = ranks.iter().map(RankBatch::tokens).max().unwrap_or(0);
        Ok(StepCost {
            ns: self.fixed_ns + self.per_token_ns * busiest,
            imbalance: 1.0,
        })
    }
}

fn constant(ns: u64) -> Box<dyn StepPricer> {
    Box::new(Linear {
        fixed_ns: ns,
        per_token_ns: 0,
    })
}

fn pool_config(role: Role) -> PoolConfig {
    PoolConfig {
        role,
        ranks: 1,
        gpus: 1,
        max_batch_tokens: 8192,
        max_running: 256,
        chunked_prefill: true,
        block_size: 16,
        kv_blocks: 1_000_000,
        prefix_caching: false,
    }
}

fn requests(list: &[(f64, u64, u64)]) -> RequestStream {
    let list: Vec<_> = list
        .iter()
        .enumerate()
        .map(|(id, &(arrival_s, input_tokens, output_tokens))| {
            Ok(Request {
                id: id as u64,
                arrival_s,
                input_tokens,
                output_tokens,
                prefix_blocks: None,
            })
        })
        .collect();
    RequestStream::new(list.into_iter(), false)
}

fn workload(text: &str) -> RequestStream {
    WorkloadSpec::parse(text, Path::new(""))
        .unwrap()
        .open()
        .unwrap()
}

/// Collects every record besides the summary.
#[derive(Default)]
struct Log {
    collector: Collector,
    records: Vec<RequestRecord>,
    steps: Vec<StepRecord>,
}

impl Observer for Log {
    fn arrival(&mut self, arrival_ns: u64) {
        self.collector.arrival(arrival_ns);
    }
    fn request(&mut self, record: &RequestRecord) -> Result<()> {
        self.records.push(record.clone());
        self.collector.request(record)
    }
    fn step(&mut self, record: &StepRecord) {
        self.steps.push(record.clone());
        self.collector.step(record);
    }
}

fn serve(config: PoolConfig, pricer: Box<dyn StepPricer + '_>, stream: RequestStream) -> Log {
    let mut engine =
        Engine::colocated(Pool::new(config, pricer, "decode-first", "round-robin").unwrap());
    let mut log = Log::default();
    engine.run(stream, &mut log, &mut |_| {}).unwrap();
    log
}

fn summary(log: &mut Log) -> ServingSummary {
    log.collector.summary(1, 1, 2.0)
}

#[test]
fn one_request_alone_takes_its_prefill_step_then_one_step_per_token() {
    // 100-token prompt in one 10 ms step (its first token), 4 more tokens in 4 decode steps.
    let mut log = serve(
        pool_config(Role::Colocated),
        constant(10_000_000),
        requests(&[(1.0, 100, 5)]),
    );
    let r = &log.records[0];
    assert_eq!((r.queue_s, r.ttft_s, r.e2e_s), (0.0, 0.010, 0.050));
    assert!((r.tpot_s - 0.010).abs() < 1e-12, "{}", r.tpot_s);
    assert_eq!(r.output_tokens, 5);
    assert_eq!(log.steps.len(), 5);
    assert_eq!(
        (log.steps[0].prefill_tokens, log.steps[1].decode_tokens),
        (100, 1)
    );
    let s = summary(&mut log);
    // 5 output tokens over 1.05 s of simulated time; one GPU for 1.05 s at 2 per hour.
    assert!((s.output_tokens_per_s - 5.0 / 1.05).abs() < 1e-9);
    assert!((s.cost_per_million_output_tokens - 1.05 / 3600.0 * 2.0 * 1e6 / 5.0).abs() < 1e-6);
}

#[test]
fn a_long_prompt_is_chunked_to_the_token_budget() {
    // 20,000 prompt tokens at 8,192 a step: 3 steps (8192, 8192, 3616), then 1 decode step.
    let mut config = pool_config(Role::Colocated);
    let pricer = Box::new(Linear {
        fixed_ns: 1_000_000,
        per_token_ns: 1_000,
    });
    let log = serve(config.clone(), pricer, requests(&[(0.0, 20_000, 2)]));
    let tokens: Vec<u64> = log.steps.iter().map(|s| s.prefill_tokens).collect();
    assert_eq!(tokens, [8192, 8192, 3616, 0]);
    // TTFT: 3 x 1 ms + 20,000 x 1 us = 23 ms; then 1 ms + 1 us.
    assert_eq!(log.records[0].ttft_s, 0.023);
    assert_eq!(log.records[0].e2e_s, 0.024001);
    // Without chunking the prompt runs whole, alone, in one step.
    config.chunked_prefill = false;
    let pricer = Box::new(Linear {
        fixed_ns: 1_000_000,
        per_token_ns: 1_000,
    });
    let log = serve(config, pricer, requests(&[(0.0, 20_000, 2)]));
    assert_eq!(log.steps[0].prefill_tokens, 20_000);
    assert_eq!(log.records[0].ttft_s, 0.021);
}

#[test]
fn batch_size_one_with_deterministic_service_and_poisson_arrivals_is_m_d_1() {
    // Service D = 10 ms (one prefill step, one output token), arrivals at 50/s: rho = 0.5, mean
    // wait rho / (2 mu (1 - rho)) = 0.5 / (2 x 100 x 0.5) = 5 ms.
    let mut config = pool_config(Role::Colocated);
    config.max_running = 1;
    let stream = workload(
        "[workload]\nseed = 3\nrequests = 200000\n[workload.arrival]\nprocess = \"poisson\"\nrate = 50.0\n\
         [workload.input]\ndist = \"fixed\"\ntokens = 64\n[workload.output]\ndist = \"fixed\"\ntokens = 1\n",
    );
    let mut log = serve(config, constant(10_000_000), stream);
    let s = summary(&mut log);
    assert_eq!(s.finished, 200_000);
    let expected = 0.5 / (2.0 * 100.0 * 0.5);
    let error = (s.queue.mean - expected).abs() / expected;
    assert!(
        error < 0.03,
        "mean wait {} s vs M/D/1 {expected} s",
        s.queue.mean
    );
}

#[test]
fn littles_law_holds_on_the_outputs() {
    // Mean requests in the system (time-weighted over the steps) = throughput x mean latency.
    let stream = workload(
        "[workload]\nseed = 5\nrequests = 3000\n[workload.arrival]\nprocess = \"poisson\"\nrate = 20.0\n\
         [workload.input]\ndist = \"uniform\"\nlow = 64\nhigh = 1024\n[workload.output]\ndist = \"uniform\"\nlow = 8\nhigh = 256\n",
    );
    let pricer = Box::new(Linear {
        fixed_ns: 5_000_000,
        per_token_ns: 2_000,
    });
    let mut log = serve(pool_config(Role::Colocated), pricer, stream);
    let s = summary(&mut log);
    let little = s.requests_per_s * s.e2e.mean;
    assert!(s.mean_in_system > 5.0, "{}", s.mean_in_system);
    let error = (s.mean_in_system - little).abs() / little;
    assert!(
        error < 0.05,
        "L = {} vs lambda W = {little}",
        s.mean_in_system
    );
}

#[test]
fn every_request_finishes_once_with_its_tokens_and_kv_never_overflows() {
    // 40 requests of 300 + 200 tokens on 100 blocks of 16 tokens (1,600 tokens): only three fit
    // at once, so decodes preempt the latest admitted, which recompute later.
    let mut config = pool_config(Role::Colocated);
    config.kv_blocks = 100;
    let list: Vec<_> = (0..40).map(|i| (i as f64 * 0.001, 300, 200)).collect();
    let mut log = serve(config, constant(1_000_000), requests(&list));
    let mut ids: Vec<u64> = log.records.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..40).collect::<Vec<_>>());
    assert!(
        log.records
            .iter()
            .all(|r| r.output_tokens == 200 && !r.rejected)
    );
    assert!(log.steps.iter().all(|s| s.kv_used_blocks <= 100));
    let s = summary(&mut log);
    assert!(s.preemptions > 0);
    assert!(
        s.peak_kv_use <= 1.0 && s.peak_kv_use > 0.9,
        "{}",
        s.peak_kv_use
    );
}

#[test]
fn a_request_longer_than_the_kv_cache_is_rejected_and_counted() {
    let mut config = pool_config(Role::Colocated);
    config.kv_blocks = 10; // 160 tokens
    // The second arrives while the engine is idle: rejected, the engine waits for the third.
    let list = [(0.0, 100, 50), (0.5, 100, 61), (0.7, 10, 1)];
    let mut log = serve(config, constant(1_000_000), requests(&list));
    let rejected: Vec<u64> = log
        .records
        .iter()
        .filter(|r| r.rejected)
        .map(|r| r.id)
        .collect();
    assert_eq!(rejected, [1]);
    let s = summary(&mut log);
    assert_eq!((s.requests, s.finished, s.rejected), (3, 2, 1));
    assert_eq!(s.slo_attainment, 2.0 / 3.0);
}

#[test]
fn prefill_first_runs_prompts_in_steps_of_their_own() {
    // Request 0 decodes; request 1 arrives: under prefill-first its prompt takes a step alone,
    // under decode-first it shares the step with request 0's decode.
    let list = [(0.0, 10, 4), (0.0105, 10, 2)];
    for (policy, expected) in [("prefill-first", 0), ("decode-first", 1)] {
        let mut engine = Engine::colocated(
            Pool::new(
                pool_config(Role::Colocated),
                constant(10_000_000),
                policy,
                "round-robin",
            )
            .unwrap(),
        );
        let mut log = Log::default();
        engine.run(requests(&list), &mut log, &mut |_| {}).unwrap();
        let shared = log
            .steps
            .iter()
            .find(|s| s.prefill_tokens == 10 && s.start_ns > 0)
            .unwrap();
        assert_eq!(shared.decode_tokens, expected, "{policy}");
    }
}

#[test]
fn data_parallel_ranks_share_the_requests_and_step_together() {
    let mut config = pool_config(Role::Colocated);
    config.ranks = 2;
    let pricer = Box::new(Linear {
        fixed_ns: 1_000_000,
        per_token_ns: 1_000,
    });
    // Round-robin: requests 0 and 2 on rank 0, 1 on rank 1. The step is as slow as its busiest
    // rank: 1 ms + (100 + 300) us.
    let log = serve(
        config,
        pricer,
        requests(&[(0.0, 100, 1), (0.0, 200, 1), (0.0, 300, 1)]),
    );
    let ranks: Vec<u32> = log.records.iter().map(|r| r.dp_rank).collect();
    assert_eq!(ranks, [0, 0, 1]);
    assert_eq!(log.steps.len(), 1);
    assert_eq!(log.steps[0].ns, 1_400_000);
}

/// A transport in which every transfer has a link of its own: `bytes / gbps + latency`.
struct OneLinkPerRank {
    gbps: f64,
    latency_ns: u64,
    /// (landing time, ticket) of the transfers in flight.
    landings: Vec<(u64, u64)>,
}

impl KvTransport for OneLinkPerRank {
    fn start(&mut self, at_ns: u64, _from: usize, _to: usize, bytes: u64, ticket: u64) {
        let ns = (bytes as f64 / self.gbps).ceil() as u64 + self.latency_ns;
        self.landings.push((at_ns + ns, ticket));
    }

    fn next_event_ns(&self) -> Option<u64> {
        self.landings.iter().map(|l| l.0).min()
    }

    fn advance(&mut self, now_ns: u64, landed: &mut Vec<u64>) {
        landed.extend(self.landings.iter().filter(|l| l.0 == now_ns).map(|l| l.1));
        self.landings.retain(|l| l.0 != now_ns);
    }
}

#[test]
fn disaggregated_pools_hand_the_kv_over_the_link() {
    // Prefill 10 ms; 1,000 tokens x 70,272 bytes (DeepSeek-V3's MLA KV) over 50 GB/s plus 5 us:
    // 1,405,440 + 5,000 ns; then 3 decode steps of 20 ms.
    let handoff = Handoff {
        transport: Box::new(OneLinkPerRank {
            gbps: 50.0,
            latency_ns: 5_000,
            landings: Vec::new(),
        }),
        kv_bytes_per_token: 70_272.0,
    };
    let mut engine = Engine::disaggregated(
        Pool::new(
            pool_config(Role::Prefill),
            constant(10_000_000),
            "decode-first",
            "round-robin",
        )
        .unwrap(),
        Pool::new(
            pool_config(Role::Decode),
            constant(20_000_000),
            "decode-first",
            "round-robin",
        )
        .unwrap(),
        handoff,
    );
    let mut log = Log::default();
    engine
        .run(requests(&[(0.0, 1000, 4)]), &mut log, &mut |_| {})
        .unwrap();
    let r = &log.records[0];
    assert_eq!(r.ttft_s, 0.010);
    assert_eq!(r.kv_transfer_s, 0.00141044);
    assert!(
        (r.e2e_s - (0.010 + 0.00141044 + 0.060)).abs() < 1e-12,
        "{}",
        r.e2e_s
    );
    let roles: Vec<Role> = log.steps.iter().map(|s| s.role).collect();
    assert_eq!(
        roles,
        [Role::Prefill, Role::Decode, Role::Decode, Role::Decode]
    );
}

#[test]
fn prefix_caching_skips_the_blocks_a_rank_has_seen() {
    let mut config = pool_config(Role::Colocated);
    config.prefix_caching = true;
    let with_blocks = |id, arrival_s, blocks: Vec<u64>| {
        Ok(Request {
            id,
            arrival_s,
            input_tokens: 1200,
            output_tokens: 1,
            prefix_blocks: Some(blocks),
        })
    };
    // The second request shares the first two 512-token blocks: 1,024 tokens from the cache.
    let stream = RequestStream::new(
        vec![
            with_blocks(0, 0.0, vec![1, 2, 3]),
            with_blocks(1, 1.0, vec![1, 2, 9]),
        ]
        .into_iter(),
        true,
    );
    let log = serve(config, constant(1_000_000), stream);
    assert_eq!(log.records[1].cached_tokens, 1024);
    assert_eq!(log.steps[1].prefill_tokens, 1200 - 1024);
}

#[test]
fn requests_sharing_a_prefix_hold_its_blocks_once() {
    let mut config = pool_config(Role::Colocated);
    config.prefix_caching = true;
    let request = |id, arrival_s, output_tokens, blocks: Vec<u64>| {
        Ok(Request {
            id,
            arrival_s,
            input_tokens: 1200,
            output_tokens,
            prefix_blocks: Some(blocks),
        })
    };
    // A prefills at 0 ms and decodes from 1 ms; B arrives at 1.5 ms sharing A's two whole
    // 512-token blocks and is admitted at 2 ms.
    let stream = RequestStream::new(
        vec![
            request(0, 0.0, 10, vec![1, 2, 3]),
            request(1, 0.0015, 2, vec![1, 2, 9]),
        ]
        .into_iter(),
        true,
    );
    let log = serve(config, constant(1_000_000), stream);
    // At 2 ms (16-token blocks): the two shared blocks once (2 x 32), A's own blocks past them
    // for 1,202 tokens (76 - 64 = 12) and B's for 1,200 (75 - 64 = 11); without sharing it
    // would be 76 + 75 = 151.
    assert_eq!(log.steps[2].start_ns, 2_000_000);
    assert_eq!(log.steps[2].kv_used_blocks, 64 + 12 + 11);
    let b = log.records.iter().find(|r| r.id == 1).unwrap();
    assert_eq!(b.cached_tokens, 1024);
    // A's last step, alone: the shared blocks and its own for 1,210 tokens (76 - 64).
    assert_eq!(log.steps.last().unwrap().kv_used_blocks, 64 + 12);
}

/// Prices every step at 1 ms and keeps the token runs it was shown.
#[derive(Default)]
struct Runs(Vec<Vec<TokenRun>>);

impl StepPricer for &std::cell::RefCell<Runs> {
    fn price(&mut self, _ranks: &[RankBatch], runs: &[TokenRun]) -> Result<StepCost> {
        self.borrow_mut().0.push(runs.to_vec());
        Ok(StepCost {
            ns: 1_000_000,
            imbalance: 1.0,
        })
    }
}

#[test]
fn the_pricer_sees_each_requests_positions_in_the_step() {
    let mut config = pool_config(Role::Colocated);
    config.ranks = 2;
    config.max_batch_tokens = 300;
    let runs = std::cell::RefCell::new(Runs::default());
    serve(
        config,
        Box::new(&runs),
        requests(&[(0.0, 500, 2), (0.0, 100, 2)]),
    );
    let run = |request, rank, first, count| TokenRun {
        request,
        rank,
        first,
        count,
    };
    // Request 0 on rank 0 prefills 300 + 200 tokens, then decodes position 500; request 1 on
    // rank 1 prefills its 100 at once, then decodes position 100.
    assert_eq!(
        runs.into_inner().0,
        [
            vec![run(0, 0, 0, 300), run(1, 1, 0, 100)],
            vec![run(0, 0, 300, 200), run(1, 1, 100, 1)],
            vec![run(0, 0, 500, 1)],
        ]
    );
}

#[test]
fn the_per_second_table_spreads_steps_over_the_seconds_they_cover() {
    // One 1.5 s step from 0.8 s: 0.2 s in second 0, 1 s in second 1, 0.3 s in second 2.
    let log = serve(
        pool_config(Role::Colocated),
        constant(1_500_000_000),
        requests(&[(0.8, 10, 1)]),
    );
    let busy: Vec<f64> = log
        .collector
        .seconds()
        .iter()
        .map(|s: &SecondRow| s.gpus_busy)
        .collect();
    let expected = [0.2, 1.0, 0.3];
    assert!(
        busy.iter().zip(expected).all(|(b, e)| (b - e).abs() < 1e-9),
        "{busy:?}"
    );
}
