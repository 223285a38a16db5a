//! What `moesim profile` measures: the benchmark plan, pure logic so it is tested without a GPU.
//!
//! Expert FFN GEMMs for every distinct expert shape of the model presets (routed and shared
//! experts), at token counts from 1 to 16384, plus HBM and PCIe copies of several sizes.

use std::collections::BTreeMap;

use crate::model::MoeModel;

/// Token counts every GEMM shape is timed at: powers of two from 1 to 16384 plus a few points
/// between them where GEMMs turn from memory-bound to compute-bound.
pub const TOKEN_COUNTS: [u64; 21] = [
    1, 2, 3, 4, 8, 16, 24, 32, 64, 96, 128, 256, 384, 512, 1024, 1536, 2048, 4096, 8192, 12288,
    16384,
];

/// Buffer sizes of the HBM (device-to-device) copies: 1 MiB to 1 GiB by factors of 4.
pub const HBM_COPY_BYTES: [u64; 6] = [1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28, 1 << 30];

/// Buffer sizes of the host-device copies over PCIe (pinned host memory): 64 KiB to 256 MiB
/// by factors of 4; the small ones expose the fixed latency, the large ones the bandwidth.
pub const PCIE_COPY_BYTES: [u64; 7] = [
    1 << 16,
    1 << 18,
    1 << 20,
    1 << 22,
    1 << 24,
    1 << 26,
    1 << 28,
];

/// One expert projection `[tokens, k] x [k, n]` in bf16.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GemmShape {
    /// Inner dimension.
    pub k: u64,
    /// Output columns.
    pub n: u64,
    /// Which models and projections use it, e.g. `mixtral-8x7b gate_up`.
    pub users: Vec<String>,
}

impl GemmShape {
    /// The label written to the `shape` column: `gemm 4096x28672 (mixtral-8x7b gate_up)`;
    /// beyond two users, the first and a count (`gemm 768x3072 (switch-base-8 up +5 more)`).
    pub fn label(&self) -> String {
        let users = match self.users.as_slice() {
            [first, _, _, ..] => format!("{first} +{} more", self.users.len() - 1),
            users => users.join(", "),
        };
        format!("gemm {}x{} ({users})", self.k, self.n)
    }

    /// bf16 weight bytes of the projection.
    pub fn weight_bytes(&self) -> u64 {
        2 * self.k * self.n
    }
}

/// The GEMMs (`(k, n)`) one FFN of width `ffn_size` runs: a gated FFN fuses gate and up into one
/// `hidden x 2 ffn` projection, a plain one has `hidden x ffn`; then `ffn x hidden` down.
pub fn ffn_gemms(hidden: u64, ffn_size: u64, gated: bool) -> [(&'static str, u64, u64); 2] {
    let (up_name, up_n) = if gated {
        ("gate_up", 2 * ffn_size)
    } else {
        ("up", ffn_size)
    };
    [(up_name, hidden, up_n), ("down", ffn_size, hidden)]
}

/// The distinct expert GEMM shapes of `models` (routed experts and fused shared experts),
/// sorted by `(k, n)`, each listing its users in model order.
pub fn gemm_shapes(models: &[MoeModel]) -> Vec<GemmShape> {
    let mut shapes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for model in models {
        let hidden = model.hidden_size as u64;
        let mut ffns = vec![("", model.expert_ffn_size as u64)];
        if model.num_shared_experts > 0 {
            let width = (model.num_shared_experts * model.shared_expert_ffn_size) as u64;
            ffns.push(("shared ", width));
        }
        for (prefix, width) in ffns {
            for (name, k, n) in ffn_gemms(hidden, width, model.gated_ffn) {
                let user = format!("{} {prefix}{name}", model.name);
                shapes.entry((k, n)).or_default().push(user);
            }
        }
    }
    shapes
        .into_iter()
        .map(|((k, n), users)| GemmShape { k, n, users })
        .collect()
}

/// The shapes of every model preset.
pub fn preset_gemm_shapes() -> Vec<GemmShape> {
    let models: Vec<MoeModel> = MoeModel::preset_names()
        .iter()
        .filter_map(|name| MoeModel::preset(name).ok())
        .collect();
    gemm_shapes(&models)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_counts_cover_one_to_16384_in_increasing_order() {
        assert_eq!(TOKEN_COUNTS.first(), Some(&1));
        assert_eq!(TOKEN_COUNTS.last(), Some(&16384));
        assert!(TOKEN_COUNTS.windows(2).all(|w| w[0] < w[1]));
        let powers = TOKEN_COUNTS.iter().filter(|t| t.is_power_of_two()).count();
        assert_eq!(powers, 15, "every power of two 2^0..2^14");
    }

    #[test]
    fn gated_and_plain_ffns_split_into_their_projections() {
        assert_eq!(
            ffn_gemms(4096, 14336, true),
            [("gate_up", 4096, 28672), ("down", 14336, 4096)]
        );
        assert_eq!(
            ffn_gemms(768, 3072, false),
            [("up", 768, 3072), ("down", 3072, 768)]
        );
    }

    #[test]
    fn mixtral_and_deepseek_shapes_by_hand() {
        let models = [
            MoeModel::preset("mixtral-8x7b").unwrap(),
            MoeModel::preset("deepseek-v3").unwrap(),
        ];
        let shapes = gemm_shapes(&models);
        let keys: Vec<(u64, u64)> = shapes.iter().map(|s| (s.k, s.n)).collect();
        // DeepSeek-V3: hidden 7168, routed and the one shared expert both 2048 wide, so they
        // share shapes; Mixtral: hidden 4096, experts 14336 wide.
        assert_eq!(
            keys,
            [(2048, 7168), (4096, 28672), (7168, 4096), (14336, 4096)]
        );
        assert_eq!(
            shapes[0].users,
            ["deepseek-v3 down", "deepseek-v3 shared down"]
        );
        assert_eq!(shapes[1].label(), "gemm 4096x28672 (mixtral-8x7b gate_up)");
        assert_eq!(shapes[1].weight_bytes(), 2 * 4096 * 28672);
    }

    #[test]
    fn presets_give_distinct_sorted_shapes_with_switch_sizes_merged() {
        let shapes = preset_gemm_shapes();
        assert!(
            shapes
                .windows(2)
                .all(|w| (w[0].k, w[0].n) < (w[1].k, w[1].n))
        );
        let switch = shapes.iter().find(|s| (s.k, s.n) == (768, 3072)).unwrap();
        // All six switch-base presets share hidden 768 x expert 3072.
        assert_eq!(switch.users.len(), 6);
        assert_eq!(switch.label(), "gemm 768x3072 (switch-base-8 up +5 more)");
    }
}
