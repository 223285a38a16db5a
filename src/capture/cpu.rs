//! Capture without a GPU: the CPU twin routes recorded logits, giving the trace the kernel would.

use super::gating::GatingConfig;
use super::logits::RouterLogits;
use super::records::Captured;
use super::reference::route_layer;
use crate::error::Result;
use crate::trace::{LayerRouting, RoutingTrace, TokenMeta};

/// Routes every layer of `logits` with the CPU twin. `bias` has one row per layer when given.
pub fn capture(
    config: &GatingConfig,
    logits: &RouterLogits,
    bias: Option<&[Vec<f32>]>,
) -> Result<Captured> {
    let mut layers = Vec::with_capacity(logits.layers.len());
    let mut expert_counts = Vec::with_capacity(logits.layers.len());
    for (layer, values) in logits.layers.iter().enumerate() {
        let layer_bias = bias.map(|rows| rows[layer].as_slice());
        let decisions = route_layer(config, values, layer_bias, &format!("layer {layer}"))?;
        let mut counts = vec![0_u64; config.num_experts()];
        for &expert in &decisions.experts {
            counts[usize::from(expert)] += 1;
        }
        expert_counts.push(counts);
        layers.push(LayerRouting::fixed_k(
            config.top_k(),
            decisions.experts,
            Some(decisions.weights),
        )?);
    }
    let trace = RoutingTrace::new(config.num_experts(), layers, TokenMeta::default())?;
    Ok(Captured {
        trace,
        expert_counts,
        lost_records: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::gating::Scoring;

    #[test]
    fn two_layers_of_two_tokens_are_routed_and_counted() {
        // Layer 0: token 0 prefers expert 2, token 1 expert 0; layer 1: both expert 1.
        let logits = RouterLogits {
            num_experts: 3,
            num_tokens: 2,
            layers: vec![
                vec![0.0, 1.0, 2.0, 5.0, 1.0, 0.0],
                vec![0.0, 4.0, 1.0, 1.0, 3.0, 2.0],
            ],
        };
        let config = GatingConfig::new(3, 1, Scoring::Softmax, None, true).unwrap();
        let captured = capture(&config, &logits, None).unwrap();
        assert_eq!(captured.trace.layer(0).experts(), [2, 0]);
        assert_eq!(captured.trace.layer(1).experts(), [1, 1]);
        assert_eq!(captured.trace.layer(1).weights(), Some(&[1.0, 1.0][..]));
        assert_eq!(captured.expert_counts, [[1, 0, 1], [0, 2, 0]]);
        assert_eq!(captured.lost_records, 0);
    }
}
