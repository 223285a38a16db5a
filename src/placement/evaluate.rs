//! Judging a placement on a trace: per-GPU loads, transitions that change GPU or node between
//! consecutive layers and memory. (Step times and bytes per link need steps and cost models:
//! the pipeline adds them.)
//!
//! Transition rule: for every token and every pair (expert `a` it visits at layer `l`, expert
//! `b` it visits at layer `l + 1`), the pair stays on one GPU when some GPU holds a replica of
//! both `a` (at `l`) and `b` (at `l + 1`), i.e. the token could be served without moving. With
//! replicas this counts a pair as local whenever *any* replica choice keeps it local, so it is a
//! lower bound on what a real dispatcher (which may pick another replica) moves. The same rule
//! with machines in place of GPUs gives the cross-node fraction. Layer `l`'s fractions describe
//! the transitions from `l` to `l + 1`; the last layer has none.

use serde::Serialize;

use super::Placement;
use crate::analysis::imbalance::max_mean;
use crate::error::{Error, Result};
use crate::model::MoeModel;
use crate::topology::Cluster;
use crate::trace::{LayerRouting, Trace};

/// What an evaluation may use beyond the placement and the trace.
#[derive(Clone, Copy)]
pub struct EvalContext<'a> {
    /// The model, for expert weight bytes (memory).
    pub model: Option<&'a MoeModel>,
    /// The cluster (as many GPUs as the placement), for cross-node fractions.
    pub cluster: Option<&'a Cluster>,
}

impl EvalContext<'static> {
    /// Loads and transitions only: no model, no cluster.
    pub fn bare() -> Self {
        EvalContext {
            model: None,
            cluster: None,
        }
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The totals over all layers.
    #[serde(flatten)]
    pub summary: EvaluationSummary,
    /// Per MoE layer.
    pub layers: Vec<LayerEvaluation>,
}

/// An evaluation's totals over all layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluationSummary {
    /// GPUs of the placement.
    pub num_gpus: usize,
    /// Experts per layer.
    pub num_experts: usize,
    /// Tokens of the trace (`None` for aggregate loads).
    pub num_tokens: Option<usize>,
    /// Mean of `max_mean` over the layers that carry load (SGLang records DeepSeek's dense
    /// layers as all-zero MoE layers; they would dilute the mean with 1s).
    pub mean_max_mean: f64,
    /// Cross-GPU pairs over all pairs of all layer transitions (token-level traces only).
    pub cross_gpu_fraction: Option<f64>,
    /// Per GPU, routed-expert weight bytes over all layers (slots used x expert bytes; needs
    /// a model).
    pub gpu_memory_bytes: Option<Vec<u64>>,
}

/// One MoE layer under the placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerEvaluation {
    /// MoE layer index.
    pub layer: usize,
    /// Expert-token entries per GPU over the whole trace, in GPU order (replicas split evenly).
    pub gpu_loads: Vec<f64>,
    /// Max over GPUs of load / mean load (1 for an empty layer).
    pub max_mean: f64,
    /// Share of this layer's (expert at `l`, expert at `l + 1`) pairs whose experts share no
    /// GPU; absent for aggregate traces and the last layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_gpu_fraction: Option<f64>,
    /// The same over machines (needs a cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_node_fraction: Option<f64>,
    /// The fullest GPU's expert weight bytes at this layer (needs a model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
}

/// Evaluates `placement` on `trace`; the trace must have the placement's layers and experts and
/// the cluster (if any) its GPU count.
pub fn evaluate(placement: &Placement, trace: &Trace, context: EvalContext) -> Result<Evaluation> {
    check_shapes(placement, trace, context.cluster)?;
    let loads = trace.expert_loads();
    let gpu_loads = placement.gpu_loads(&loads)?;
    let (cross_gpu, cross_node) = match trace.tokens() {
        Some(tokens) => (
            transitions(placement, tokens.layers(), |gpu| gpu),
            context
                .cluster
                .map(|c| transitions(placement, tokens.layers(), |gpu| c.node_of(gpu))),
        ),
        None => (Vec::new(), None),
    };
    let expert_bytes = context.model.map(MoeModel::expert_weight_bytes);
    let layers: Vec<LayerEvaluation> = gpu_loads
        .into_iter()
        .enumerate()
        .map(|(layer, gpu_loads)| LayerEvaluation {
            layer,
            max_mean: max_mean(&gpu_loads),
            gpu_loads,
            cross_gpu_fraction: fraction(&cross_gpu, layer),
            cross_node_fraction: cross_node.as_ref().and_then(|pairs| fraction(pairs, layer)),
            peak_memory_bytes: expert_bytes.map(|bytes| {
                let fullest = (0..placement.num_gpus())
                    .map(|gpu| placement.experts_on(layer, gpu).len())
                    .max()
                    .unwrap_or(0);
                fullest as u64 * bytes
            }),
        })
        .collect();
    let (cross, total) = cross_gpu
        .iter()
        .fold((0, 0), |(c, t), &(cross, total)| (c + cross, t + total));
    let summary = EvaluationSummary {
        num_gpus: placement.num_gpus(),
        num_experts: placement.num_experts(),
        num_tokens: trace.tokens().map(|t| t.num_tokens()),
        mean_max_mean: mean_over_loaded(&layers),
        cross_gpu_fraction: (total > 0).then(|| cross as f64 / total as f64),
        gpu_memory_bytes: expert_bytes.map(|bytes| {
            (0..placement.num_gpus())
                .map(|gpu| {
                    let slots: usize = (0..placement.num_layers())
                        .map(|layer| placement.experts_on(layer, gpu).len())
                        .sum();
                    slots as u64 * bytes
                })
                .collect()
        }),
    };
    Ok(Evaluation { summary, layers })
}

/// Mean `max_mean` over the layers with any load (1 when none has).
fn mean_over_loaded(layers: &[LayerEvaluation]) -> f64 {
    let loaded: Vec<f64> = layers
        .iter()
        .filter(|l| l.gpu_loads.iter().sum::<f64>() > 0.0)
        .map(|l| l.max_mean)
        .collect();
    if loaded.is_empty() {
        1.0
    } else {
        loaded.iter().sum::<f64>() / loaded.len() as f64
    }
}

/// The trace, placement and cluster must agree on layers, experts and GPUs.
fn check_shapes(placement: &Placement, trace: &Trace, cluster: Option<&Cluster>) -> Result<()> {
    if trace.num_layers() != placement.num_layers()
        || trace.num_experts() != placement.num_experts()
    {
        return Err(Error::invalid(format!(
            "the trace has {} layers x {} experts but the placement {} x {}",
            trace.num_layers(),
            trace.num_experts(),
            placement.num_layers(),
            placement.num_experts()
        )));
    }
    if let Some(cluster) = cluster
        && cluster.num_gpus() != placement.num_gpus()
    {
        return Err(Error::invalid(format!(
            "cluster `{}` has {} GPUs but the placement {}",
            cluster.name(),
            cluster.num_gpus(),
            placement.num_gpus()
        )));
    }
    Ok(())
}

/// Per layer transition `l -> l + 1`, (pairs whose experts share no domain, all pairs);
/// `domain_of` maps a GPU to itself or to its machine.
fn transitions(
    placement: &Placement,
    routing: &[LayerRouting],
    domain_of: impl Fn(usize) -> usize,
) -> Vec<(u64, u64)> {
    routing
        .windows(2)
        .enumerate()
        .map(|(layer, pair)| layer_pairs(placement, layer, &pair[0], &pair[1], &domain_of))
        .collect()
}

/// Layer `layer`'s cross-domain fraction; `None` for the last layer and for no pairs.
fn fraction(pairs: &[(u64, u64)], layer: usize) -> Option<f64> {
    let &(cross, total) = pairs.get(layer)?;
    (total > 0).then(|| cross as f64 / total as f64)
}

/// (pairs whose experts share no domain, all pairs) from `layer` to `layer + 1`. Expert ids
/// past the placement's count are skipped, as [`Trace::expert_loads`] skips them.
fn layer_pairs(
    placement: &Placement,
    layer: usize,
    from: &LayerRouting,
    to: &LayerRouting,
    domain_of: &dyn Fn(usize) -> usize,
) -> (u64, u64) {
    let experts = placement.num_experts();
    let mut shared = SharedDomains::new(placement, layer, domain_of);
    let (mut cross, mut total) = (0u64, 0u64);
    for token in 0..from.num_tokens() {
        for &a in from.experts_of(token) {
            for &b in to.experts_of(token) {
                if let (true, true) = ((a as usize) < experts, (b as usize) < experts) {
                    total += 1;
                    cross += u64::from(!shared.any(a as usize, b as usize));
                }
            }
        }
    }
    (cross, total)
}

/// Whether some domain holds expert `a` at a layer and expert `b` at the next, answered from
/// each expert's sorted domains and remembered per pair: the cost follows the pairs the tokens
/// visit and the experts' replica counts, not experts^2 or GPUs^2 (a million GPUs, or 65,536
/// experts, stay cheap).
struct SharedDomains {
    /// Per expert, the domains holding it at the layer, ascending, once each.
    from: Vec<Vec<usize>>,
    /// The same at the next layer.
    to: Vec<Vec<usize>>,
    /// Answers so far, by `a * experts + b`.
    known: std::collections::HashMap<usize, bool>,
}

impl SharedDomains {
    fn new(placement: &Placement, layer: usize, domain_of: &dyn Fn(usize) -> usize) -> Self {
        let domains = |layer: usize| -> Vec<Vec<usize>> {
            (0..placement.num_experts())
                .map(|expert| {
                    let mut domains: Vec<usize> = placement
                        .replicas_of(layer, expert)
                        .iter()
                        .map(|&gpu| domain_of(gpu))
                        .collect();
                    domains.sort_unstable();
                    domains.dedup();
                    domains
                })
                .collect()
        };
        SharedDomains {
            from: domains(layer),
            to: domains(layer + 1),
            known: std::collections::HashMap::new(),
        }
    }

    /// Whether a domain holds `a` (at the layer) and `b` (at the next).
    fn any(&mut self, a: usize, b: usize) -> bool {
        let key = a * self.from.len() + b;
        if let Some(&shared) = self.known.get(&key) {
            return shared;
        }
        let (from, to) = (&self.from[a], &self.to[b]);
        let (mut i, mut j) = (0, 0);
        let mut shared = false;
        while i < from.len() && j < to.len() {
            match from[i].cmp(&to[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    shared = true;
                    break;
                }
            }
        }
        self.known.insert(key, shared);
        shared
    }
}

#[cfg(test)]
mod tests;
