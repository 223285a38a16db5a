//! Discrete-event simulator speed on real-size workloads; prints its figures.
//!
//! 1. `scenarios/deepseek-v3-ep64-decode.toml`: DeepSeek-V3, EP64 on 8 H800 machines, decode 128
//!    tokens per GPU, all 58 MoE layers with the shared DeepSeek decode loads (SGLang recorder),
//!    contiguous placement, no overlap and low-latency all-to-all, set up by the pipeline as
//!    `moesim simulate` sets it up: wall time of the step's simulation (target < 0.2 s) and
//!    events per second
//!    (target >= 5 M/s), and the heap the simulation allocates above its inputs (it should grow
//!    with GPUs x layers: compare `SIM_BENCH_LAYERS=1` with the default).
//! 2. The same on EP256 (32 machines): its memory, and the process's peak resident set.
//! 3. `scenarios/switch-base-128-replay.toml`: all 40,800 tokens in steps of 4096, 8 H100s, 6
//!    layers, every overlap strategy, the whole `moesim simulate` replay (target < 2 s).
//!
//! Needs MOESIM_SHARED_DATA. `SIM_BENCH_LAYERS` (default: all 58) limits the DeepSeek layers,
//! `SIM_BENCH_EP256=1` adds the EP256 case (under 1 s per layer) and
//! `SIM_BENCH_RATE_TOLERANCE` sets the DeepSeek cases' `rate_tolerance` (default: the
//! simulator's, 0.2; 0 is exact max-min), to weigh speed against the step time it gives.
//! Run: `cargo bench --bench sim`, or without a release build of the dependencies:
//! `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench sim`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use moesim::pipeline::{Setup, SimOptions, simulate};
use moesim::scenario::{Scenario, TraceSource};
use moesim::sim::simulate_step;

/// The repository's scenario `name`, its trace read from `$MOESIM_SHARED_DATA` (`None` when
/// that is not set).
fn bench_scenario(name: &str, trace: &str) -> Option<Scenario> {
    let root = std::env::var_os("MOESIM_SHARED_DATA")?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let scenario = Scenario::load(&dir.join(name)).expect("bench scenario");
    Some(Scenario {
        trace: TraceSource::File(PathBuf::from(root).join(trace)),
        ..scenario
    })
}

/// The system allocator, counting the bytes live and their peak, so that the simulator's own
/// memory can be told apart from its inputs and from what the allocator keeps resident.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes live on the heap now, and sets the peak to that, in MiB.
fn reset_heap_peak() -> f64 {
    let live = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(live, Ordering::Relaxed);
    live as f64 / MIB
}

/// Peak heap bytes since [`reset_heap_peak`], in MiB.
fn heap_peak_mib() -> f64 {
    PEAK_BYTES.load(Ordering::Relaxed) as f64 / MIB
}

const MIB: f64 = (1 << 20) as f64;

/// Peak resident set size of this process, from /proc (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Simulates the first `max_layers` MoE layers (all 58 when `None`) of the decode step on
/// `nodes` machines, with bandwidth re-divided within `rate_tolerance`.
fn deepseek_decode(nodes: usize, max_layers: Option<usize>, rate_tolerance: f64) {
    let Some(mut scenario) = bench_scenario(
        "deepseek-v3-ep64-decode.toml",
        "deepseek-v3-expert-load/decode_in1000out1000.json",
    ) else {
        println!("skipping: MOESIM_SHARED_DATA not set");
        return;
    };
    scenario.cluster = format!("hgx-h800x{nodes}");
    scenario.sim.rate_tolerance = rate_tolerance;
    let setup = Setup::from_scenario(&scenario).expect("set-up");
    let placements = setup.place_all().expect("placement");
    let (_, placement) = &placements[0];
    let mut layers = setup
        .layer_work(placement, &setup.steps[0])
        .expect("layer work");
    layers.truncate(max_layers.unwrap_or(layers.len()));
    let costs = setup.kernel_costs();
    let spec = setup.step_spec(&costs, &setup.steps[0], &layers);
    let traffic_mib: f64 = layers
        .iter()
        .flat_map(|l| [&l.dispatch, &l.combine, &l.tp_reduce])
        .filter(|m| m.pairs().next().is_some())
        .map(|m| (m.num_gpus() * m.num_gpus() * 8) as f64 / MIB)
        .sum();
    let heap_before = reset_heap_peak();
    let start = Instant::now();
    let sim = simulate_step(&spec, &setup.sim.overlaps[0], "contiguous");
    let wall = start.elapsed().as_secs_f64();
    println!(
        "DeepSeek-V3 EP{} decode 128 tok/GPU, {} MoE layers, rate tolerance {rate_tolerance}: step {:.3} ms simulated, {:.3} s wall, {} events, {:.2} M events/s, heap {heap_before:.0} MiB before (traffic matrices {traffic_mib:.0} MiB) and {:.1} MiB more at its peak, process peak RSS {:.0} MiB",
        setup.gpus(),
        layers.len(),
        sim.step_ns as f64 / 1e6,
        wall,
        sim.events,
        sim.events as f64 / wall / 1e6,
        heap_peak_mib() - heap_before,
        peak_rss_mib().unwrap_or(f64::NAN),
    );
}

fn switch_replay() {
    let Some(scenario) = bench_scenario(
        "switch-base-128-replay.toml",
        "switch-top1/switch-base-128.trace.npy",
    ) else {
        println!("skipping: MOESIM_SHARED_DATA not set");
        return;
    };
    let setup = Setup::from_scenario(&scenario).expect("set-up");
    let placements = setup.place_all().expect("placement");
    let start = Instant::now();
    let result = simulate::simulate(&setup, &placements, SimOptions::default()).expect("replay");
    let events: u64 = result.strategies.iter().map(|s| s.events).sum();
    println!(
        "switch-base-128 replay: {} steps x {} strategies, {} GPUs: {:.3} s wall, {events} events",
        result.steps,
        result.strategies.len(),
        result.gpus,
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    let max_layers = match std::env::var("SIM_BENCH_LAYERS").as_deref() {
        Ok("all") => None,
        Ok(n) => Some(n.parse().expect("SIM_BENCH_LAYERS: a layer count or `all`")),
        Err(_) => None,
    };
    let rate_tolerance = std::env::var("SIM_BENCH_RATE_TOLERANCE").map_or(
        moesim::sim::LinkSettings::default().rate_tolerance,
        |t| {
            t.parse()
                .expect("SIM_BENCH_RATE_TOLERANCE: a number in [0, 1)")
        },
    );
    switch_replay();
    deepseek_decode(8, max_layers, rate_tolerance);
    // Last, so its peak RSS is the process's; opt-in (`SIM_BENCH_EP256=1`).
    if std::env::var_os("SIM_BENCH_EP256").is_some() {
        deepseek_decode(32, max_layers, rate_tolerance);
    }
}
