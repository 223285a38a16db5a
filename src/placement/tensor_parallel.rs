//! Tensor parallelism inside experts: a placement over expert-parallel ranks of `tp`
//! consecutive GPUs, listed GPU by GPU.

use super::{LayerPlacement, Placement};
use crate::error::Result;

/// The GPU-level placement of `ranks` (a placement over tensor-parallel ranks of `tp`
/// consecutive GPUs): every GPU of a rank lists the rank's experts, as replicas do. The
/// analytical tier reads it as such (tokens split over the rank's GPUs); the simulator splits
/// each expert's FFN over them instead.
pub fn tp_expand(ranks: &Placement, tp: usize) -> Result<Placement> {
    if tp == 1 {
        return Ok(ranks.clone());
    }
    let layers = ranks
        .layers()
        .iter()
        .map(|layer| LayerPlacement {
            gpu_experts: layer
                .gpu_experts
                .iter()
                .flat_map(|experts| std::iter::repeat_n(experts.clone(), tp))
                .collect(),
        })
        .collect();
    Placement::new(
        ranks.num_gpus() * tp,
        ranks.num_experts(),
        ranks.slots_per_gpu(),
        layers,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tp_expand_lists_each_rank_on_its_gpus() {
        let ranks = Placement::new(
            2,
            4,
            2,
            vec![LayerPlacement {
                gpu_experts: vec![vec![0, 1], vec![2, 3]],
            }],
        )
        .unwrap();
        let gpus = tp_expand(&ranks, 2).unwrap();
        assert_eq!(gpus.num_gpus(), 4);
        assert_eq!(gpus.experts_on(0, 1), &[0, 1]);
        assert_eq!(gpus.experts_on(0, 2), &[2, 3]);
        assert_eq!(tp_expand(&ranks, 1).unwrap(), ranks);
    }
}
