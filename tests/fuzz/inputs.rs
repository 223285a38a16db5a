//! Structure-aware generators: files that are close to valid (the right container, plausible
//! fields, numbers at the edges of their ranges), so the checks past the parser get exercised.

use proptest::prelude::*;
use serde_json::{Value, json};

/// Integers at and around the edges moesim's formats care about.
fn edge_int() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -2i64..12,
        1 => prop::sample::select(vec![
            -1i64, 255, 256, 1023, 1024, 65535, 65536, 70000, 244800, i32::MAX as i64,
            u32::MAX as i64, i64::MAX, i64::MIN,
        ]),
    ]
}

/// A JSON number or, now and then, something else.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => edge_int().prop_map(Value::from),
        2 => prop::sample::select(vec![1.5f64, -0.0, -3.25, 1e300, 0.5]).prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!("x")),
        1 => Just(json!(true)),
    ]
}

/// Nested arrays `depth` deep (ragged now and then), with a leaf or an array where an array or
/// a leaf is expected.
fn nested(depth: u32) -> BoxedStrategy<Value> {
    if depth == 0 {
        return json_leaf().boxed();
    }
    prop_oneof![
        9 => prop::collection::vec(nested(depth - 1), 0..5).prop_map(Value::Array),
        1 => json_leaf(),
    ]
    .boxed()
}

/// An `.npy` file: a header of plausible and implausible fields, then a body.
pub fn npy() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop::sample::select(vec![
        "<i8", "<i4", "<i2", "|i1", "|u1", "<u2", "<u4", "<u8", ">i4", "<f4", "|b1", "<i3", "x",
    ]);
    let dim = prop_oneof![
        6 => 0usize..5,
        1 => prop::sample::select(vec![65536usize, 244800, u32::MAX as usize, usize::MAX / 2]),
    ];
    let shape = prop::collection::vec(dim, 0..4);
    (
        descr,
        any::<bool>(),
        shape,
        prop::collection::vec(edge_int(), 0..48),
        1u8..4,
    )
        .prop_map(|(descr, fortran, shape, values, version)| {
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            let tuple = match dims.len() {
                1 => format!("({},)", dims[0]),
                _ => format!("({})", dims.join(", ")),
            };
            let fortran = if fortran { "True" } else { "False" };
            let dict =
                format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {tuple}, }}\n");
            let mut bytes = b"\x93NUMPY".to_vec();
            bytes.push(version);
            bytes.push(0);
            match version {
                1 => bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes()),
                _ => bytes.extend_from_slice(&(dict.len() as u32).to_le_bytes()),
            }
            bytes.extend_from_slice(dict.as_bytes());
            let size = descr
                .get(2..)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1usize)
                .clamp(1, 8);
            for v in values {
                bytes.extend_from_slice(&v.to_le_bytes()[..size]);
            }
            bytes
        })
}

/// A vLLM routed-experts JSON: `[tokens][layers][k]`, bare or under `routed_experts`.
pub fn vllm_json() -> impl Strategy<Value = Vec<u8>> {
    (nested(3), any::<bool>()).prop_map(|(tokens, keyed)| {
        let value = if keyed {
            json!({ "routed_experts": tokens })
        } else {
            tokens
        };
        value.to_string().into_bytes()
    })
}

/// An SGLang dump: `logical_count` 2-D or 3-D, with other keys now and then.
pub fn sglang_json() -> impl Strategy<Value = Vec<u8>> {
    (prop_oneof![nested(2), nested(3)], any::<bool>()).prop_map(|(counts, extra)| {
        let mut value = json!({ "logical_count": counts });
        if extra {
            value["rank"] = json!(0);
        }
        value.to_string().into_bytes()
    })
}

/// A CSV trace: a header of known and unknown columns in any order, then rows of edge values.
pub fn csv() -> impl Strategy<Value = Vec<u8>> {
    let columns = prop::collection::vec(
        prop::sample::select(vec!["layer", "token", "expert", "weight", "load", "step"]),
        1..5,
    );
    let field = prop_oneof![
        6 => edge_int().prop_map(|v| v.to_string()),
        1 => Just(String::new()),
        1 => prop::sample::select(vec!["0.5", "-1.5", "NaN", "inf", "1e9", "x"])
            .prop_map(str::to_string),
    ];
    let row = prop::collection::vec(field, 1..6);
    (columns, prop::collection::vec(row, 0..12)).prop_map(|(columns, rows)| {
        let mut text = columns.join(",") + "\n";
        for row in rows {
            text += &(row.join(",") + "\n");
        }
        text.into_bytes()
    })
}

/// A moesim placement document (or an ExFlow array) with small, sometimes wrong, numbers.
pub fn placement_json() -> impl Strategy<Value = Vec<u8>> {
    let small = || prop_oneof![4 => 0i64..5, 1 => edge_int()];
    let layers = prop::collection::vec(nested(2), 0..3);
    let document = (small(), small(), small(), small(), layers).prop_map(
        |(version, gpus, experts, slots, layers)| {
            let layers: Vec<Value> = layers
                .into_iter()
                .map(|gpu_experts| json!({ "gpu_experts": gpu_experts }))
                .collect();
            json!({
                "format_version": version % 3,
                "strategy": "eplb",
                "placement": {
                    "num_gpus": gpus,
                    "num_experts": experts,
                    "slots_per_gpu": slots,
                    "layers": layers,
                },
            })
        },
    );
    prop_oneof![document, nested(3)].prop_map(|value| value.to_string().into_bytes())
}

/// A calibration TOML: every table present, axes and values at their edges.
pub fn calibration_toml() -> impl Strategy<Value = Vec<u8>> {
    let axis = || prop::collection::vec(prop_oneof![0u64..4, Just(u64::MAX), Just(1 << 20)], 0..4);
    let floats = || {
        prop::collection::vec(
            prop::sample::select(vec![0.0f64, 1.0, -1.0, 2.5e3, f64::NAN, f64::INFINITY]),
            0..4,
        )
    };
    let kind = prop::sample::select(vec!["gemm", "hbm-copy", "h2d", "d2h", "gating", "x"]);
    let half = prop::sample::select(vec!["all", "even", "odd", "none"]);
    (
        axis(),
        axis(),
        floats(),
        floats(),
        axis(),
        floats(),
        kind,
        half,
    )
        .prop_map(
            |(tokens, time, intercept, slope, bytes, gbps, kind, half)| {
                let list = |v: &[u64]| format!("{v:?}");
                let float_list = |v: &[f64]| {
                    let items: Vec<String> = v
                        .iter()
                        .map(|f| match f {
                            f if f.is_nan() => "nan".into(),
                            f if f.is_infinite() => "inf".into(),
                            f => format!("{f:?}"),
                        })
                        .collect();
                    format!("[{}]", items.join(", "))
                };
                format!(
                    "gpu = \"H100\"\ndriver = \"1\"\ndate = \"2026-01-01\"\nsource = \"measured\"\n\
                 fit_half = \"{half}\"\n\n[[gemm]]\nk = 2048\nn = 7168\ntokens = {}\n\
                 time_ns = {}\n\n[gemm_model]\ntokens = {}\nintercept_ns = {}\n\
                 ns_per_weight = {}\n\n[[copy]]\nkind = \"{kind}\"\nbytes = {}\ngbps = {}\n",
                    list(&tokens),
                    list(&time),
                    list(&tokens),
                    float_list(&intercept),
                    float_list(&slope),
                    list(&bytes),
                    float_list(&gbps),
                )
                .into_bytes()
            },
        )
}

/// A scenario TOML: a synthetic trace (so no file is needed) on a preset or an edge-sized
/// custom cluster, with sizes, schedules and simulator knobs at and past their bounds.
pub fn scenario_toml() -> impl Strategy<Value = Vec<u8>> {
    let size = || {
        prop_oneof![
            6 => 0u64..10,
            1 => prop::sample::select(vec![256u64, 65536, 65537, 1 << 32, i64::MAX as u64]),
        ]
    };
    let model = prop::sample::select(vec!["olmoe-1b-7b", "mixtral-8x7b", "deepseek-v3", "nope"]);
    let cluster = prop::sample::select(vec!["dgx-h100", "hgx-h800x4", "gb200-nvl72", "x.toml"]);
    let overlap = prop::sample::select(vec!["none", "dual-batch", "chunked", "fine-grained", "?"]);
    let all_to_all = prop::sample::select(vec!["direct", "hierarchical", "low-latency", "?"]);
    let tolerance = prop::sample::select(vec![0.0f64, 0.2, 1.0, 1.5, -0.1]);
    (
        (model, cluster, size(), size(), size()),
        (size(), size(), size(), size()),
        (overlap, all_to_all, tolerance, size(), size()),
        prop::collection::vec((size(), size()), 0..3),
    )
        .prop_map(
            |(
                (model, cluster, gpus, tp, tokens_per_gpu),
                (experts, layers, top_k, tokens),
                (overlap, all_to_all, tolerance, chunks, tiles),
                schedule,
            )| {
                let schedule: Vec<String> = schedule
                    .iter()
                    .map(|(t, r)| {
                        format!("{{ phase = \"decode\", tokens_per_gpu = {t}, repeat = {r} }}")
                    })
                    .collect();
                format!(
                    "name = \"fuzz\"\nmodel = \"{model}\"\ncluster = \"{cluster}\"\ngpus = {gpus}\n\
                     tp = {tp}\ntokens_per_gpu = {tokens_per_gpu}\nschedule = [{}]\n\
                     placements = [\"eplb\"]\n[trace.synth]\nnum_experts = {experts}\n\
                     num_layers = {layers}\ntop_k = {top_k}\nnum_tokens = {tokens}\n[sim]\n\
                     overlap = [\"{overlap}\"]\nall_to_all = \"{all_to_all}\"\n\
                     rate_tolerance = {tolerance:?}\n[sim.chunked]\nchunks = {chunks}\n\
                     [sim.fine-grained]\ntiles = {tiles}\n",
                    schedule.join(", ")
                )
                .into_bytes()
            },
        )
}

/// A cluster TOML: counts and bandwidths at and past their edges, tables present or not.
pub fn cluster_toml() -> impl Strategy<Value = Vec<u8>> {
    let count = || prop_oneof![4 => 0u64..10, 1 => prop::sample::select(vec![1u64 << 20, 1 << 40])];
    let rate = || prop::sample::select(vec![0.0f64, 1.0, 450.0, -1.0, 1e300, f64::NAN]);
    let gpu = prop::sample::select(vec![
        "gpu = \"h100\"".to_string(),
        "gpu = \"b300\"".to_string(),
        "[gpu]\nname = \"g\"\nbf16_tflops = 1.0\nhbm_gbps = 0.0\nmemory_bytes = 0\nsm_count = 0"
            .to_string(),
    ]);
    (count(), count(), gpu, rate(), rate(), count(), rate(), rate(), any::<bool>()).prop_map(
        |(nodes, per_node, gpu, nvlink, pcie, per_switch, nic, oversub, with_nvlink)| {
            let float = |f: f64| if f.is_nan() { "nan".into() } else { format!("{f:?}") };
            let nvlink = if with_nvlink {
                format!("[nvlink]\ngbps = {}\n", float(nvlink))
            } else {
                String::new()
            };
            // `gpu = "..."` must come before the first table.
            let (top_gpu, table_gpu) = if gpu.starts_with('[') {
                (String::new(), gpu)
            } else {
                (gpu, String::new())
            };
            format!(
                "name = \"c\"\nnodes = {nodes}\ngpus_per_node = {per_node}\n{top_gpu}\n{table_gpu}\n\
                 {nvlink}[pcie]\ngbps = {}\ngpus_per_switch = {per_switch}\n[network]\n\
                 nic_gbps = {}\noversubscription = {}\n",
                float(pcie),
                float(nic),
                float(oversub),
            )
            .into_bytes()
        },
    )
}
