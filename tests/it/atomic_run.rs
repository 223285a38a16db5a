//! `moesim run` killed (SIGKILL) at random instants: its report folder then holds the previous
//! complete report or the new one, byte for byte, never a mix, and nothing is left beside it
//! but what the next run removes (`<folder>.<pid>.tmp`, `<folder>.<pid>.old`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::Files;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Runs killed, half while they write their report, half anywhere in their run.
const KILLS: usize = 6;

/// Starts `moesim run scenario --out out`.
fn start(scenario: &Path, out: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_moesim"))
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Whether the run `child` has begun writing its report into `out` (in `parent`), or ended:
/// a temporary file or folder named for its pid shows up there or inside `out`.
fn writing_or_ended(child: &mut Child, parent: &Path, out: &Path) -> bool {
    let pid = format!(".{}.", child.id());
    let named_for_it = [parent, out].iter().any(|dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .any(|entry| entry.unwrap().file_name().to_string_lossy().contains(&pid))
    });
    named_for_it || child.try_wait().unwrap().is_some()
}

/// Waits until `child` writes its report or ends; returns when that was.
fn wait_for_writing(child: &mut Child, parent: &Path, out: &Path) -> Instant {
    while !writing_or_ended(child, parent, out) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Instant::now()
}

/// The entries of `parent` other than `out` (names).
fn beside(parent: &Path, out: &str) -> Vec<String> {
    let mut names: Vec<String> = common::files(parent).unwrap().into_keys().collect();
    names.retain(|name| name != out);
    names
}

/// Whether `name` is a leftover of a killed run into `out`: `<out>.<pid>.tmp` or `.old`.
fn is_leftover(name: &str, out: &str) -> bool {
    let pid = name
        .strip_prefix(out)
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(".tmp").or(rest.strip_suffix(".old")));
    pid.is_some_and(|pid| pid.parse::<u32>().is_ok())
}

/// What a killed run left: the report folder, or `None` if it was missing (killed between
/// the two renames of the swap) with the old one whole in `old`.
struct Outcome {
    when: Duration,
    folder: Option<Files>,
    old: Option<Files>,
}

#[test]
fn a_killed_run_leaves_the_old_report_or_the_new_one_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios: Vec<PathBuf> = [1, 2]
        .map(|seed| common::synth_scenario(dir.path(), &format!("s{seed}"), "dgx-h100", seed))
        .to_vec();
    let parent = dir.path().join("reports");
    let out = parent.join("out");
    std::fs::create_dir(&parent).unwrap();
    // A complete run of the first scenario, timed: how long it runs, how long it writes.
    let started = Instant::now();
    let mut child = start(&scenarios[0], &out);
    let writing = wait_for_writing(&mut child, &parent, &out);
    assert!(child.wait().unwrap().success());
    let (run_time, write_time) = (started.elapsed(), writing.elapsed());
    let first = common::files(&out).unwrap();
    assert!(first.contains_key("summary.json") && first.len() > 2);
    // Each killed run is of the scenario the folder does not hold, so a mix would show.
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let mut next = 1;
    let mut outcomes = Vec::new();
    for kill in 0..KILLS {
        let started = Instant::now();
        let mut child = start(&scenarios[next], &out);
        let pid = child.id();
        let delay = if kill % 2 == 0 {
            wait_for_writing(&mut child, &parent, &out);
            write_time.mul_f64(rng.random_range(0.0..1.2))
        } else {
            run_time.mul_f64(rng.random_range(0.0..1.2))
        };
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
        child.wait().unwrap();
        let left: Vec<String> = beside(&parent, "out");
        assert!(
            left.iter().all(|name| is_leftover(name, "out")),
            "left beside the report: {left:?}"
        );
        let old = parent.join(format!("out.{pid}.old"));
        let outcome = Outcome {
            when: started.elapsed(),
            folder: common::files(&out),
            old: common::files(&old),
        };
        next = usize::from(outcome.folder.as_ref() == Some(&first));
        outcomes.push(outcome);
    }
    // A complete run of the second scenario removes what the killed ones left.
    assert!(start(&scenarios[1], &out).wait().unwrap().success());
    assert_eq!(beside(&parent, "out"), Vec::<String>::new());
    let second = common::files(&out).unwrap();
    assert_ne!(first, second);
    for (kill, outcome) in outcomes.iter().enumerate() {
        let whole = outcome.folder.as_ref().or(outcome.old.as_ref());
        assert!(
            whole == Some(&first) || whole == Some(&second),
            "kill {kill} after {:?} (runs take {run_time:?}, writing {write_time:?}) left {:?}",
            outcome.when,
            whole.map(|files| files.keys().collect::<Vec<_>>())
        );
    }
}
