//! The CUDA gating kernel's own source, run on the CPU by tests/kernel_emulator/emulate.cpp (one
//! warp, lanes as threads), against the CPU twin bit for bit, and its ring records through the
//! host's decoder. Checks the kernel's logic and float order where no GPU is available; the GPU
//! itself is checked by tests/capture_gpu.rs. Skips when no C++20 compiler (`g++`) is found.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::gating_cases::{Case, assert_same_bits, cases_with_logits, logits};
use moesim::capture::gating::{GatingConfig, Scoring};
use moesim::capture::records::{Assembler, record_words};
use moesim::capture::reference::route_layer;

/// The emulator, compiled once per test run into Cargo's scratch folder, or `None` (with a
/// notice) without g++.
fn emulator() -> Option<&'static Path> {
    static EMULATOR: OnceLock<Option<PathBuf>> = OnceLock::new();
    EMULATOR
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let binary = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gating_emulator");
            let built = Command::new("g++")
                .args(["-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-o"])
                .arg(&binary)
                .arg(root.join("tests/kernel_emulator/emulate.cpp"))
                .output();
            match built {
                Ok(output) if output.status.success() => Some(binary),
                Ok(output) => panic!(
                    "emulator build failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(_) => None,
            }
        })
        .as_deref()
        .or_else(|| {
            eprintln!("skipping: g++ not found");
            None
        })
}

fn write_f32s(path: &Path, values: &[f32]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_words<const N: usize>(path: &Path) -> Vec<[u8; N]> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(N)
        .map(|c| c.try_into().unwrap())
        .collect()
}

/// What one emulated launch wrote.
struct Emulated {
    experts: Vec<i32>,
    weights: Vec<f32>,
    ring: Vec<u32>,
    seq_counter: u64,
    overflow: u64,
    expert_counts: Vec<u64>,
}

/// Runs the kernel (instrumented or plain) on `values` in `dir`.
fn emulate(
    emulator: &Path,
    dir: &Path,
    config: &GatingConfig,
    values: &[f32],
    bias: Option<&[f32]>,
    ring: (u64, u64),
    instrumented: bool,
) -> Emulated {
    write_f32s(&dir.join("logits.bin"), values);
    if let Some(bias) = bias {
        write_f32s(&dir.join("bias.bin"), bias);
    }
    let (groups, top_groups) = config
        .group_limit()
        .map_or((0, 0), |g| (g.groups, g.top_groups));
    let tokens = values.len() / config.num_experts();
    let args = [
        tokens,
        config.num_experts(),
        config.top_k(),
        config.scoring().kernel_code() as usize,
        groups,
        top_groups,
        usize::from(config.renormalize()),
        usize::from(bias.is_some()),
        ring.0 as usize,
        ring.1 as usize,
        usize::from(instrumented),
    ];
    let output = Command::new(emulator)
        .arg(dir)
        .args(args.iter().map(usize::to_string))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counters: Vec<u64> = read_words::<8>(&dir.join("counters.bin"))
        .into_iter()
        .map(u64::from_le_bytes)
        .collect();
    Emulated {
        experts: read_words::<4>(&dir.join("experts.bin"))
            .into_iter()
            .map(i32::from_le_bytes)
            .collect(),
        weights: read_words::<4>(&dir.join("weights.bin"))
            .into_iter()
            .map(f32::from_le_bytes)
            .collect(),
        ring: read_words::<4>(&dir.join("ring.bin"))
            .into_iter()
            .map(u32::from_le_bytes)
            .collect(),
        seq_counter: counters[0],
        overflow: counters[1],
        expert_counts: counters[2..].to_vec(),
    }
}

#[test]
fn the_kernel_source_matches_the_cpu_twin_bit_for_bit() {
    let Some(emulator) = emulator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (Case { config, bias, .. }, values) in cases_with_logits(12) {
        let twin = route_layer(&config, &values, bias.as_deref(), "twin").unwrap();
        let kernel = emulate(
            emulator,
            dir.path(),
            &config,
            &values,
            bias.as_deref(),
            (1, 0),
            false,
        );
        let experts: Vec<i32> = twin.experts.iter().map(|&e| i32::from(e)).collect();
        assert_eq!(kernel.experts, experts, "{}", config.describe());
        assert_same_bits(&kernel.weights, &twin.weights, &config.describe());
    }
}

#[test]
fn the_instrumented_kernel_records_decode_to_the_twin_and_count_their_losses() {
    let Some(emulator) = emulator() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = GatingConfig::new(16, 2, Scoring::Softmax, None, true).unwrap();
    let values = logits(7, 20, 16, false);
    let twin = route_layer(&config, &values, None, "twin").unwrap();
    let twin_counts = |decisions: &[u16]| {
        let mut counts = vec![0_u64; 16];
        decisions.iter().for_each(|&e| counts[usize::from(e)] += 1);
        counts
    };
    // A ring of 20 holds every record; one of 6 keeps sequence numbers 0..6 and loses 14.
    for (capacity, lost) in [(20_u64, 0_u64), (6, 14)] {
        let kernel = emulate(
            emulator,
            dir.path(),
            &config,
            &values,
            None,
            (capacity, 0),
            true,
        );
        assert_eq!((kernel.seq_counter, kernel.overflow), (20, lost));
        assert_eq!(kernel.expert_counts, twin_counts(&twin.experts));
        // The ring in sequence order: slot seq % capacity, stale where a record was lost.
        let stride = record_words(2);
        let words: Vec<u32> = (0..20_u64)
            .flat_map(|seq| {
                let slot = (seq % capacity) as usize * stride;
                kernel.ring[slot..slot + stride].to_vec()
            })
            .collect();
        let mut assembler = Assembler::new(1, 20, 16, 2);
        assembler.absorb(0, &words).unwrap();
        let captured = assembler
            .finish(kernel.overflow, vec![kernel.expert_counts])
            .unwrap();
        assert_eq!(captured.lost_records, lost);
        let layer = captured.trace.layer(0);
        let mut received = 0;
        for token in 0..20 {
            let experts = layer.experts_of(token);
            if !experts.is_empty() {
                assert_eq!(experts, &twin.experts[token * 2..token * 2 + 2]);
                assert_eq!(
                    layer.weights_of(token).unwrap(),
                    &twin.weights[token * 2..token * 2 + 2]
                );
                received += 1;
            }
        }
        assert_eq!(received, 20 - lost);
    }
}
