//! Results do not depend on the number of threads: rayon shares out topology routing, trace
//! synthesis and analysis, the simulation runs placements in parallel, and `moesim simulate
//! --json` (with its Perfetto trace) and `moesim run` write byte-identical
//! outputs with `RAYON_NUM_THREADS=1` and `=2`, on the quickstart (a trace file, one machine)
//! and on a synthetic trace over two machines.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::Files;

/// What `moesim simulate --json` prints, the Perfetto trace it writes and the files `moesim run`
/// writes for `scenario` with `threads` rayon threads, running from the repository root.
fn outputs(scenario: &Path, threads: &str) -> (Vec<u8>, Vec<u8>, Files) {
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report");
    let moesim = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_moesim"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", common::stderr(&output));
        output.stdout
    };
    let scenario = scenario.to_str().unwrap();
    let perfetto = out.path().join("perfetto.json");
    let simulated = moesim(&[
        "simulate",
        scenario,
        "--json",
        "--perfetto",
        perfetto.to_str().unwrap(),
    ]);
    moesim(&["run", scenario, "--out", report.to_str().unwrap()]);
    let perfetto = std::fs::read(perfetto).unwrap();
    (simulated, perfetto, common::files(&report).unwrap())
}

#[test]
fn one_or_two_threads_give_byte_identical_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/quickstart.toml");
    let synthetic = common::synth_scenario(dir.path(), "synthetic", "hgx-h800x2", 3);
    for scenario in [quickstart, synthetic] {
        let (simulated, perfetto, report) = outputs(&scenario, "1");
        assert!(report.contains_key("summary.json") && !simulated.is_empty());
        assert!(perfetto.starts_with(b"{"));
        assert!(
            (simulated, perfetto, report) == outputs(&scenario, "2"),
            "{} differs with 2 threads",
            scenario.display()
        );
    }
}
