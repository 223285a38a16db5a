//! Sweep speed: a 200-point sweep of step-level scenarios (the quickstart: OLMoE-1B-7B on its
//! routing trace, four placement strategies, every step simulated) over 50 token counts per GPU
//! x 2 clusters x 2 all-to-all algorithms, run in memory on all cores. Prints the wall time and
//! points per second.
//!
//! Run: `cargo bench --bench sweep`.

use std::path::Path;
use std::time::Instant;

use moesim::sweep::{self, Shard, SweepSpec};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("a temporary folder");
    let tokens: Vec<String> = (1..=50).map(|i| (32 * i).to_string()).collect();
    let spec_path = dir.path().join("sweep.toml");
    let text = format!(
        "scenario = {:?}\n[grid]\ncluster = [\"dgx-h100\", \"hgx-h200\"]\n\
         \"sim.all_to_all\" = [\"direct\", \"hierarchical\"]\ntokens_per_gpu = [{}]\n",
        root.join("scenarios/quickstart.toml"),
        tokens.join(", ")
    );
    std::fs::write(&spec_path, text).expect("the sweep file is written");
    let spec = SweepSpec::load(&spec_path).expect("the bench sweep loads");
    assert_eq!(spec.points.len(), 200);
    let start = Instant::now();
    let table = sweep::run(&spec, Shard::ALL, || {});
    let wall = start.elapsed().as_secs_f64();
    let failed = table.rows.iter().filter(|r| r.outcome.is_err()).count();
    assert_eq!(failed, 0, "every bench point runs");
    println!(
        "sweep: {} step-level points (quickstart, 4 placements each) on {} threads in {wall:.1} s \
         wall = {:.1} points/s",
        table.rows.len(),
        rayon::current_num_threads(),
        table.rows.len() as f64 / wall
    );
}
