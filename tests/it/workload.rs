//! The workload: arrival processes and length distributions against their closed forms,
//! replay of every fixture format against hand-counted rows, the plain CSV round trip,
//! determinism, and the command line on good and bad input.

use crate::common;

use std::path::{Path, PathBuf};

use common::{assert_fails_with, moesim, stdout};
use moesim::workload::plain::write_requests;
use moesim::workload::replay::{self, ReplaySpec};
use moesim::workload::spec::WorkloadSpec;
use moesim::workload::{Request, RequestStream};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/requests")
        .join(name)
}

/// The requests of a spec written as TOML (replay files relative to the fixtures).
fn generate(toml: &str) -> Vec<Request> {
    let spec = WorkloadSpec::parse(toml, &fixture("")).unwrap();
    collect(spec.open().unwrap())
}

fn collect(stream: RequestStream) -> Vec<Request> {
    stream.map(Result::unwrap).collect()
}

fn arrivals(requests: &[Request]) -> Vec<f64> {
    requests.iter().map(|r| r.arrival_s).collect()
}

/// Mean and coefficient of variation of `values`.
fn mean_cv(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt() / mean)
}

/// Gaps between consecutive arrivals, the first from 0.
fn gaps(requests: &[Request]) -> Vec<f64> {
    let mut previous = 0.0;
    arrivals(requests)
        .into_iter()
        .map(|t| {
            let gap = t - previous;
            previous = t;
            gap
        })
        .collect()
}

fn assert_close(got: f64, expected: f64, relative: f64, what: &str) {
    assert!(
        (got - expected).abs() <= relative * expected.abs(),
        "{what}: {got} vs {expected} (tolerance {relative})"
    );
}

const FIXED_LENGTHS: &str = "[workload.input]\ndist = \"fixed\"\ntokens = 512\n\
                             [workload.output]\ndist = \"fixed\"\ntokens = 128\n";

#[test]
fn poisson_gaps_have_mean_one_over_rate_and_cv_one() {
    let requests = generate(&format!(
        "[workload]\nseed = 1\nrequests = 200000\n[workload.arrival]\nprocess = \"poisson\"\nrate = 10.0\n{FIXED_LENGTHS}"
    ));
    assert_eq!(requests.len(), 200_000);
    // Standard errors over 200k gaps: about 0.22% on the mean, 0.3% on the CV.
    let (mean, cv) = mean_cv(&gaps(&requests));
    assert_close(mean, 0.1, 0.01, "mean gap");
    assert_close(cv, 1.0, 0.02, "CV");
    assert!(
        requests
            .iter()
            .all(|r| r.input_tokens == 512 && r.output_tokens == 128)
    );
    assert_eq!(requests[199_999].id, 199_999);
}

#[test]
fn gamma_gaps_have_the_cv_asked_for() {
    for cv_asked in [0.5, 2.0, 4.0] {
        let requests = generate(&format!(
            "[workload]\nseed = 2\nrequests = 200000\n[workload.arrival]\nprocess = \"gamma\"\nrate = 5.0\ncv = {cv_asked}\n{FIXED_LENGTHS}"
        ));
        let (mean, cv) = mean_cv(&gaps(&requests));
        assert_close(mean, 0.2, 0.03, "mean gap");
        assert_close(cv, cv_asked, 0.04, "CV");
    }
}

#[test]
fn on_off_long_run_rate_is_the_time_weighted_mean() {
    // (20 x 5 + 2 x 15) / (5 + 15) = 6.5 requests/s, bursty: CV above 1.
    let requests = generate(&format!(
        "[workload]\nseed = 3\nduration_s = 200000.0\n[workload.arrival]\nprocess = \"on-off\"\n\
         rate_on = 20.0\nrate_off = 2.0\non_s = 5.0\noff_s = 15.0\n{FIXED_LENGTHS}"
    ));
    assert_close(
        requests.len() as f64 / 200_000.0,
        6.5,
        0.03,
        "long-run rate",
    );
    assert!(mean_cv(&gaps(&requests)).1 > 1.5);
    assert!(requests.last().unwrap().arrival_s < 200_000.0);
}

#[test]
fn diurnal_counts_follow_the_integral_of_the_rate() {
    // Rate 2 -> 10 over [0, 50), 10 -> 2 over [50, 100): integral 600 per period, of which
    // (2 + 6) / 2 x 25 = 100 in [0, 25).
    let requests = generate(&format!(
        "[workload]\nseed = 4\nduration_s = 100000.0\n[workload.arrival]\nprocess = \"diurnal\"\n\
         period_s = 100.0\npoints = [[0.0, 2.0], [50.0, 10.0]]\n{FIXED_LENGTHS}"
    ));
    assert_close(requests.len() as f64, 600_000.0, 0.01, "arrivals");
    let early = requests
        .iter()
        .filter(|r| r.arrival_s.rem_euclid(100.0) < 25.0)
        .count();
    assert_close(
        early as f64,
        100_000.0,
        0.02,
        "arrivals in [0, 25) of each period",
    );
}

/// Input lengths of 200k requests drawn from `[workload.input]` body `input`.
fn input_lengths(input: &str) -> Vec<f64> {
    let requests = generate(&format!(
        "[workload]\nseed = 5\nrequests = 200000\n[workload.arrival]\nprocess = \"poisson\"\nrate = 1.0\n\
         [workload.input]\n{input}\n[workload.output]\ndist = \"fixed\"\ntokens = 1\n"
    ));
    requests.iter().map(|r| r.input_tokens as f64).collect()
}

#[test]
fn lognormal_mean_is_exp_mu_plus_half_sigma_squared() {
    // mean 1000, sigma 1: mu = ln 1000 - 0.5, median exp(mu) = 606.5; standard error of the
    // mean about 0.3%.
    let mut lengths = input_lengths("dist = \"lognormal\"\nmean = 1000.0\nsigma = 1.0");
    let (mean, _) = mean_cv(&lengths);
    assert_close(mean, (1000f64.ln() - 0.5 + 0.5).exp(), 0.02, "mean");
    lengths.sort_by(f64::total_cmp);
    assert_close(lengths[100_000], 1000.0 * (-0.5f64).exp(), 0.02, "median");
}

#[test]
fn uniform_histogram_and_clamp() {
    let (mean, _) = mean_cv(&input_lengths("dist = \"uniform\"\nlow = 100\nhigh = 300"));
    assert_close(mean, 200.0, 0.01, "uniform mean");
    let clamped = input_lengths("dist = \"uniform\"\nlow = 100\nhigh = 300\nmax = 150");
    assert_eq!(clamped.iter().cloned().fold(0.0, f64::max), 150.0);
    assert_eq!(clamped.iter().cloned().fold(f64::MAX, f64::min), 100.0);
    // Bins [1, 101) weight 3 and [101, 1001) weight 1: mean 0.75 x 51 + 0.25 x 551 = 176.
    let lengths =
        input_lengths("dist = \"histogram\"\nedges = [1, 101, 1001]\nweights = [3.0, 1.0]");
    assert_close(mean_cv(&lengths).0, 176.0, 0.02, "histogram mean");
    let short = lengths.iter().filter(|&&l| l < 101.0).count() as f64;
    assert_close(
        short / lengths.len() as f64,
        0.75,
        0.01,
        "share of the first bin",
    );
}

const GAMMA_SPEC: &str = "[workload]\nseed = 7\nrequests = 2000\n[workload.arrival]\nprocess = \"gamma\"\n\
                          rate = 10.0\ncv = 2.0\n[workload.input]\ndist = \"lognormal\"\nmean = 800.0\n\
                          sigma = 1.2\nmax = 8192\n[workload.output]\ndist = \"uniform\"\nlow = 16\nhigh = 512\n";

#[test]
fn same_seed_gives_byte_identical_csv_and_the_csv_reads_back_the_same_requests() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, spec: &str| {
        let path = dir.path().join(name);
        let parsed = WorkloadSpec::parse(spec, dir.path()).unwrap();
        write_requests(&path, parsed.open().unwrap()).unwrap();
        path
    };
    let a = write("a.csv", GAMMA_SPEC);
    let b = write("b.csv", GAMMA_SPEC);
    let c = write("c.csv", &GAMMA_SPEC.replace("seed = 7", "seed = 8"));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
    let original = generate(GAMMA_SPEC);
    assert_eq!(collect(replay::open(&a).unwrap()), original);
    assert!(original.iter().all(|r| r.input_tokens <= 8192));
}

#[test]
fn prefix_blocks_round_trip_through_the_plain_csv() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.csv");
    let original = collect(replay::open(&fixture("mooncake.jsonl")).unwrap());
    write_requests(&path, replay::open(&fixture("mooncake.jsonl")).unwrap()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("arrival_s,input_tokens,output_tokens,prefix_blocks\n0,6955,52,0 1 2")
    );
    assert_eq!(collect(replay::open(&path).unwrap()), original);
}

#[test]
fn azure_fixture_arrivals_are_seconds_since_the_first_row() {
    let requests = collect(replay::open(&fixture("azure.csv")).unwrap());
    assert_eq!(requests.len(), 12);
    let expected = [
        0.0, 4.314579, 4.75993, 6.88877, 8.31941, 10.56941, 13.2, 15.41941, 18.0, 22.61941,
        25.31941, 30.0,
    ];
    for (got, want) in arrivals(&requests).iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    assert_eq!(
        (requests[0].input_tokens, requests[0].output_tokens),
        (374, 44)
    );
    assert_eq!(
        (requests[11].input_tokens, requests[11].output_tokens),
        (1170, 128)
    );
}

#[test]
fn burstgpt_fixture_drops_failed_requests_and_filters_by_model() {
    let requests = collect(replay::open(&fixture("burstgpt.csv")).unwrap());
    // 15 rows, 2 with zero response tokens (failed).
    assert_eq!(requests.len(), 13);
    assert!(!arrivals(&requests).contains(&124.0));
    assert_eq!(requests[2].arrival_s, 118.0);
    assert_eq!(
        (requests[2].input_tokens, requests[2].output_tokens),
        (417, 276)
    );
    let mut gpt4 = ReplaySpec::of(fixture("burstgpt.csv"));
    gpt4.model = Some("GPT-4".into());
    let gpt4 = collect(gpt4.open().unwrap());
    assert_eq!(arrivals(&gpt4), [118.0, 172.0, 389.0, 511.0]);
    assert_eq!(gpt4.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
}

#[test]
fn mooncake_fixture_has_millisecond_times_and_prefix_blocks() {
    let requests = collect(replay::open(&fixture("mooncake.jsonl")).unwrap());
    assert_eq!(requests.len(), 10);
    assert_eq!(
        arrivals(&requests),
        [
            0.0, 0.0, 27.482, 30.535, 41.502, 52.01, 60.001, 75.25, 90.0, 98.765
        ]
    );
    assert_eq!(requests[5].prefix_blocks, Some(vec![64, 65]));
    assert_eq!(requests[6].prefix_blocks.as_ref().unwrap().len(), 24);
    assert_eq!(
        (requests[7].input_tokens, requests[7].output_tokens),
        (512, 1)
    );
}

#[test]
fn plain_fixture_reads_as_written() {
    let requests = collect(replay::open(&fixture("plain.csv")).unwrap());
    assert_eq!(
        arrivals(&requests),
        [0.25, 0.5, 1.125, 1.875, 3.0, 3.5, 4.75, 6.0, 7.25, 9.5]
    );
    assert_eq!(requests.iter().map(|r| r.input_tokens).sum::<u64>(), 10_280);
    assert!(requests.iter().all(|r| r.prefix_blocks.is_none()));
}

#[test]
fn rate_scale_two_halves_every_arrival() {
    for file in ["azure.csv", "burstgpt.csv", "mooncake.jsonl", "plain.csv"] {
        let whole = collect(replay::open(&fixture(file)).unwrap());
        let mut fast = ReplaySpec::of(fixture(file));
        fast.rate_scale = 2.0;
        let fast = collect(fast.open().unwrap());
        assert_eq!(fast.len(), whole.len(), "{file}");
        for (f, w) in fast.iter().zip(&whole) {
            assert_eq!(f.arrival_s, w.arrival_s / 2.0, "{file}");
            assert_eq!(f.input_tokens, w.input_tokens);
        }
    }
}

#[test]
fn a_window_selects_the_hand_counted_rows_from_zero() {
    // BurstGPT rows at 100 <= t < 300: 118, 124 (failed), 148, 172, 205, 261.
    let requests = generate(
        "[workload.replay]\nfile = \"burstgpt.csv\"\nstart_s = 100.0\nduration_s = 200.0\n",
    );
    assert_eq!(arrivals(&requests), [18.0, 48.0, 72.0, 105.0, 161.0]);
    // Window, then rate scale: plain rows at 3 <= t < 7.25, twice as fast.
    let requests = generate(
        "[workload.replay]\nfile = \"plain.csv\"\nformat = \"plain\"\nstart_s = 3.0\nduration_s = 4.25\nrate_scale = 2.0\n",
    );
    assert_eq!(arrivals(&requests), [0.0, 0.25, 0.875, 1.5]);
}

#[test]
fn the_command_writes_the_requests_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("w.toml");
    std::fs::write(&spec, GAMMA_SPEC).unwrap();
    let out = dir.path().join("requests.csv");
    let output = moesim(&[
        "workload",
        spec.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let printed = stdout(&output);
    assert!(printed.starts_with("2000 requests over "), "{printed}");
    assert!(printed.contains("inter-arrival CV"), "{printed}");
    let requests = collect(replay::open(&out).unwrap());
    assert_eq!(requests, generate(GAMMA_SPEC));
}

#[test]
fn the_shipped_workload_specs_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |spec: &str| {
        let out = dir.path().join("r.csv");
        let output = moesim(&["workload", spec, "-o", out.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
        collect(replay::open(&out).unwrap())
    };
    // 600 s at 10 requests/s: about 6,000; Gamma CV 2 makes the count vary more than Poisson.
    let gamma = run("scenarios/workloads/gamma.toml");
    assert!((5000..7000).contains(&gamma.len()), "{}", gamma.len());
    // Azure rows at 5 <= t < 25 s: 7, at (t - 5) / 2.
    let azure = run("scenarios/workloads/azure-replay.toml");
    let expected = [0.944385, 1.659705, 2.784705, 4.1, 5.209705, 6.5, 8.809705];
    assert_eq!(azure.len(), expected.len());
    for (got, want) in arrivals(&azure).iter().zip(expected) {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
}

/// Runs `moesim workload` on a replay of a request file holding `content`; asserts it fails
/// with `needles` on one `error:` line and writes nothing.
fn replay_fails(name: &str, content: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), content).unwrap();
    spec_fails(
        dir.path(),
        &format!("[workload.replay]\nfile = \"{name}\"\n"),
        &[&[name], needles].concat(),
    );
}

/// Runs `moesim workload` on spec `toml` in `dir`; asserts the failure and that no output file
/// (or temporary) is left.
fn spec_fails(dir: &Path, toml: &str, needles: &[&str]) {
    let spec = dir.join("w.toml");
    std::fs::write(&spec, toml).unwrap();
    let out = dir.join("out");
    let output = moesim(&[
        "workload",
        spec.to_str().unwrap(),
        "-o",
        out.join("requests.csv").to_str().unwrap(),
    ]);
    assert_fails_with(&output, needles);
    let err = common::stderr(&output);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(&out).map_or(Vec::new(), |d| d.collect());
    assert!(left.is_empty(), "left behind: {left:?}");
}

const PLAIN: &str = "arrival_s,input_tokens,output_tokens\n";

#[test]
fn negative_time_is_named() {
    replay_fails(
        "r.csv",
        &format!("{PLAIN}-1.5,10,10\n"),
        &["line 2, `arrival_s`: negative time -1.5"],
    );
}

#[test]
fn unsorted_times_are_named() {
    replay_fails(
        "r.csv",
        &format!("{PLAIN}1,10,10\n2,10,10\n1.5,10,10\n"),
        &["line 4, `arrival_s`: time 1.5 is before the previous row's 2"],
    );
}

#[test]
fn zero_length_is_named() {
    replay_fails(
        "r.csv",
        &format!("{PLAIN}1,10,10\n2,0,10\n"),
        &["line 3, `input_tokens`: 0 tokens; must be in 1..=10000000"],
    );
}

#[test]
fn absurd_length_is_named() {
    replay_fails(
        "r.jsonl",
        "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 99999999, \"hash_ids\": []}\n",
        &["line 1, `output_length`: 99999999 tokens"],
    );
}

#[test]
fn unknown_column_is_named() {
    replay_fails(
        "r.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens,Region\n2023-11-16 18:15:46.68,10,10\n",
        &["line 1: unknown column `Region` for the Azure format"],
    );
    replay_fails(
        "r.jsonl",
        "{\"timestamp\": 5, \"input_length\": 10, \"output_length\": 9, \"session\": 3}\n",
        &["line 1, `session`: unknown field `session`"],
    );
    replay_fails(
        "r.csv",
        "time,prompt,answer\n1,2,3\n",
        &["line 1: unknown columns `time,prompt,answer`"],
    );
}

#[test]
fn an_empty_file_and_a_model_filter_on_another_format_are_refused() {
    replay_fails("r.csv", "\n\n", &["line 1: empty file"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("plain.csv"), dir.path().join("p.csv")).unwrap();
    spec_fails(
        dir.path(),
        "[workload.replay]\nfile = \"p.csv\"\nmodel = \"GPT-4\"\n",
        &[
            "p.csv",
            "`workload.replay.model` filters BurstGPT files only, not Plain",
        ],
    );
}

#[test]
fn missing_column_is_named() {
    replay_fails(
        "r.csv",
        "Timestamp,Model,Request tokens,Total tokens,Log Type\n5,ChatGPT,10,20,API log\n",
        &["line 1: missing column `Response tokens` of the Burstgpt format"],
    );
}

#[test]
fn malformed_row_is_named() {
    replay_fails(
        "r.csv",
        &format!("{PLAIN}1,10,10\n2,10\n"),
        &["line 3: 2 fields, expected 3"],
    );
}

#[test]
fn non_number_is_named() {
    replay_fails(
        "r.csv",
        &format!("{PLAIN}1,10,ten\n"),
        &["line 2, `output_tokens`: `ten` is not a whole number of tokens"],
    );
    replay_fails(
        "r.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 25:15:46,10,10\n",
        &["line 2, `TIMESTAMP`: `2023-11-16 25:15:46` is not a date and time"],
    );
    replay_fails(
        "r.jsonl",
        "{\"timestamp\": \"x\", \"input_length\": 1, \"output_length\": 1}\n",
        &["line 1, `timestamp`: invalid type"],
    );
}

#[test]
fn out_of_range_spec_values_name_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let synthetic = |arrival: &str, limit: &str| {
        format!("[workload]\n{limit}\n[workload.arrival]\n{arrival}\n{FIXED_LENGTHS}")
    };
    let cases: [(String, &[&str]); 8] = [
        (
            synthetic(
                "process = \"on-off\"\nrate_on = 1.0\non_s = 0.001\noff_s = 1.0",
                "requests = 10",
            ),
            &["`rate_on` x `on_s` = 0.001 requests per burst must be at least 0.01"],
        ),
        // A triangle of peak 1000 and base 2 s in a 100,000 s period: mean 0.01, 1/100,000 of the peak.
        (
            synthetic(
                "process = \"diurnal\"\nperiod_s = 100000.0\npoints = [[0.0, 0.0], [1.0, 1000.0], [2.0, 0.0]]",
                "requests = 10",
            ),
            &[
                "`points`: the mean rate (0.01) must be above zero and at least 1/1000 of the peak (1000)",
            ],
        ),
        (
            synthetic("process = \"poisson\"\nrate = 0.0", "requests = 10"),
            &["`workload.arrival`", "`rate` = 0 must be a positive number"],
        ),
        (
            synthetic(
                "process = \"gamma\"\nrate = 1.0\ncv = -1.0",
                "requests = 10",
            ),
            &["`workload.arrival`", "`cv` = -1"],
        ),
        (
            synthetic("process = \"poisson\"\nrate = 1.0", "requests = 100000001"),
            &["`workload.requests` = 100000001 must be in 1..=100000000"],
        ),
        (
            synthetic(
                "process = \"poisson\"\nrate = 1.0\nburst = 2",
                "requests = 10",
            ),
            &["`workload.arrival`", "unknown field `burst`"],
        ),
        (
            synthetic("process = \"weibull\"", "requests = 10"),
            &["unknown arrival process `weibull`; known: poisson, gamma, on-off, diurnal"],
        ),
        (
            synthetic("process = \"poisson\"\nrate = 1.0", "duration_s = -5.0"),
            &["`workload.duration_s` = -5"],
        ),
    ];
    for (toml, needles) in cases {
        spec_fails(dir.path(), &toml, &[&["w.toml"], needles].concat());
    }
    spec_fails(
        dir.path(),
        "[workload]\nrequests = 5\n[workload.replay]\nfile = \"x.csv\"\n",
        &["`workload.requests` cannot be combined with `workload.replay`"],
    );
    spec_fails(
        dir.path(),
        "[workload.replay]\nfile = \"x.csv\"\nrate_scale = 0.0\n",
        &["`workload.replay.rate_scale` = 0"],
    );
}
