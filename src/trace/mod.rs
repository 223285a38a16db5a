//! Routing traces: which token went to which experts, layer by layer.
//!
//! [`RoutingTrace`] is the one canonical token-level form. It is columnar: per MoE layer, a CSR
//! layout (`offsets`, `experts`, optional `weights`) so every token may carry its own number of
//! routed experts (dynamic top-k, top-p routing, or none at all for a dropped / null-routed token).
//! Shared experts are a property of the model, never entries of a trace.
//!
//! [`ExpertLoads`] is the aggregate form (tokens per expert per layer), which is what SGLang's
//! expert-distribution recorder writes and what EPLB consumes. Any token-level trace can be reduced
//! to it; [`Trace`] holds either.

pub mod importers;
pub mod parquet;
pub mod synth;
pub mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Reads a trace from moesim's Parquet format (`.parquet`) or from any format
/// [`importers::import`] understands, inferring the format and expert count.
pub fn load(path: &Path) -> Result<Trace> {
    load_with(path, &importers::ImportOptions::default())
}

/// [`load`] for `trace validate`: an imported file keeps the entries validation rejects
/// (importing refuses them at the first), so that every one can be listed.
pub fn load_for_validation(path: &Path) -> Result<Trace> {
    let options = importers::ImportOptions {
        keep_violations: true,
        ..importers::ImportOptions::default()
    };
    load_with(path, &options)
}

fn load_with(path: &Path, options: &importers::ImportOptions) -> Result<Trace> {
    if path.extension().is_some_and(|e| e == "parquet") {
        parquet::read_trace(path)
    } else {
        importers::import_with(path, None, options)
    }
}

/// A routed expert's id inside one MoE layer.
pub type ExpertId = u16;

/// The most routed experts per layer a trace can hold: expert ids are 16-bit.
pub const MAX_EXPERTS: usize = ExpertId::MAX as usize + 1;

/// The most MoE layers a trace can hold: the file format's layer index is 16-bit.
pub const MAX_LAYERS: usize = u16::MAX as usize + 1;

/// Which serving phase a token was routed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Prompt processing: many tokens per request in one forward pass.
    Prefill,
    /// Generation: one new token per request per step.
    Decode,
}

impl Phase {
    /// The lowercase name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prefill => "prefill",
            Phase::Decode => "decode",
        }
    }

    /// Parses `prefill` or `decode`.
    pub fn parse(text: &str) -> Option<Phase> {
        match text {
            "prefill" => Some(Phase::Prefill),
            "decode" => Some(Phase::Decode),
            _ => None,
        }
    }
}

/// Per-token metadata, each column present only when the source recorded it.
/// Every present column has one entry per token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenMeta {
    /// Engine step (or batch) the token was processed in.
    pub step: Option<Vec<u32>>,
    /// Request the token belongs to.
    pub request_id: Option<Vec<u64>>,
    /// Position of the token inside its request.
    pub position: Option<Vec<u32>>,
    /// Prefill or decode.
    pub phase: Option<Vec<Phase>>,
    /// Data-parallel rank that ran the token's attention.
    pub dp_rank: Option<Vec<u16>>,
}

impl TokenMeta {
    /// Number of tokens described by the first present column, if any.
    fn len(&self) -> Option<usize> {
        [
            self.step.as_ref().map(Vec::len),
            self.request_id.as_ref().map(Vec::len),
            self.position.as_ref().map(Vec::len),
            self.phase.as_ref().map(Vec::len),
            self.dp_rank.as_ref().map(Vec::len),
        ]
        .into_iter()
        .flatten()
        .next()
    }

    /// Checks every present column has `tokens` entries.
    fn check_len(&self, tokens: usize) -> Result<()> {
        let columns = [
            ("step", self.step.as_ref().map(Vec::len)),
            ("request_id", self.request_id.as_ref().map(Vec::len)),
            ("position", self.position.as_ref().map(Vec::len)),
            ("phase", self.phase.as_ref().map(Vec::len)),
            ("dp_rank", self.dp_rank.as_ref().map(Vec::len)),
        ];
        for (name, len) in columns {
            if let Some(len) = len.filter(|&len| len != tokens) {
                return Err(Error::invalid(format!(
                    "token metadata column `{name}` has {len} entries, expected {tokens}"
                )));
            }
        }
        Ok(())
    }
}

/// The routing decisions of every token at one MoE layer, in CSR form.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRouting {
    /// `offsets[t]..offsets[t + 1]` indexes token `t`'s entries; `offsets.len() == tokens + 1`.
    offsets: Vec<u32>,
    /// Routed expert ids, token after token, in the router's rank order.
    experts: Vec<ExpertId>,
    /// Gate weights aligned with `experts`, when the source recorded them.
    weights: Option<Vec<f32>>,
}

impl LayerRouting {
    /// Builds a layer from CSR parts, checking they are consistent.
    pub fn new(
        offsets: Vec<u32>,
        experts: Vec<ExpertId>,
        weights: Option<Vec<f32>>,
    ) -> Result<Self> {
        if offsets.first() != Some(&0) {
            return Err(Error::invalid("layer offsets must start at 0"));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::invalid("layer offsets must not decrease"));
        }
        if *offsets.last().unwrap() as usize != experts.len() {
            return Err(Error::invalid(format!(
                "layer offsets end at {} but there are {} expert entries",
                offsets.last().unwrap(),
                experts.len()
            )));
        }
        if let Some(w) = &weights
            && w.len() != experts.len()
        {
            return Err(Error::invalid(format!(
                "{} gate weights for {} expert entries",
                w.len(),
                experts.len()
            )));
        }
        Ok(LayerRouting {
            offsets,
            experts,
            weights,
        })
    }

    /// Builds a layer where every token has exactly `k` experts (`experts.len() == tokens * k`).
    pub fn fixed_k(k: usize, experts: Vec<ExpertId>, weights: Option<Vec<f32>>) -> Result<Self> {
        if k == 0 || !experts.len().is_multiple_of(k) {
            return Err(Error::invalid(format!(
                "{} expert entries is not a multiple of top-k {k}",
                experts.len()
            )));
        }
        let offsets = (0..=experts.len() / k).map(|t| (t * k) as u32).collect();
        LayerRouting::new(offsets, experts, weights)
    }

    /// Number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Number of (token, expert) entries.
    pub fn num_entries(&self) -> usize {
        self.experts.len()
    }

    /// Token `token`'s routed experts, in rank order.
    pub fn experts_of(&self, token: usize) -> &[ExpertId] {
        &self.experts[self.offsets[token] as usize..self.offsets[token + 1] as usize]
    }

    /// Token `token`'s gate weights, when recorded.
    pub fn weights_of(&self, token: usize) -> Option<&[f32]> {
        self.weights
            .as_ref()
            .map(|w| &w[self.offsets[token] as usize..self.offsets[token + 1] as usize])
    }

    /// The CSR offsets.
    pub fn offsets(&self) -> &[u32] {
        &self.offsets
    }

    /// All expert entries, token after token.
    pub fn experts(&self) -> &[ExpertId] {
        &self.experts
    }

    /// All gate weights, when recorded.
    pub fn weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    /// `Some(k)` when every token has exactly `k` experts.
    pub fn uniform_k(&self) -> Option<usize> {
        let k = self.offsets.get(1).copied()? as usize;
        self.offsets
            .windows(2)
            .all(|w| (w[1] - w[0]) as usize == k)
            .then_some(k)
    }
}

/// A token-level routing trace: per MoE layer, per token, the routed experts.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingTrace {
    num_experts: usize,
    num_tokens: usize,
    layers: Vec<LayerRouting>,
    meta: TokenMeta,
}

impl RoutingTrace {
    /// Builds a trace, checking every layer has the same token count and metadata matches it.
    /// Expert ids are not range-checked here; [`validate`] reports every violation with its row.
    pub fn new(num_experts: usize, layers: Vec<LayerRouting>, meta: TokenMeta) -> Result<Self> {
        let num_tokens = layers
            .first()
            .map(LayerRouting::num_tokens)
            .or(meta.len())
            .unwrap_or(0);
        if let Some((index, layer)) = layers
            .iter()
            .enumerate()
            .find(|(_, l)| l.num_tokens() != num_tokens)
        {
            return Err(Error::invalid(format!(
                "layer {index} has {} tokens but layer 0 has {num_tokens}",
                layer.num_tokens()
            )));
        }
        meta.check_len(num_tokens)?;
        if num_experts == 0 || num_experts > MAX_EXPERTS {
            return Err(Error::invalid(format!(
                "number of experts must be between 1 and 65536, got {num_experts}"
            )));
        }
        Ok(RoutingTrace {
            num_experts,
            num_tokens,
            layers,
            meta,
        })
    }

    /// Builds a trace from a dense `[tokens][layers][k]` array of expert ids (the layout of vLLM's
    /// routed-experts replay and of ExFlow's `.npy` files, where k = 1).
    pub fn from_dense(
        num_experts: usize,
        num_layers: usize,
        k: usize,
        ids: &[ExpertId],
    ) -> Result<Self> {
        let row = num_layers * k;
        if row == 0 || !ids.len().is_multiple_of(row) {
            return Err(Error::invalid(format!(
                "{} ids do not fill whole rows of {num_layers} layers x top-{k}",
                ids.len()
            )));
        }
        let tokens = ids.len() / row;
        let layers = (0..num_layers)
            .map(|layer| {
                let mut experts = Vec::with_capacity(tokens * k);
                for token in 0..tokens {
                    let start = token * row + layer * k;
                    experts.extend_from_slice(&ids[start..start + k]);
                }
                LayerRouting::fixed_k(k, experts, None)
            })
            .collect::<Result<Vec<_>>>()?;
        RoutingTrace::new(num_experts, layers, TokenMeta::default())
    }

    /// Number of routed experts per layer in the model the trace came from.
    pub fn num_experts(&self) -> usize {
        self.num_experts
    }

    /// Number of MoE layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.num_tokens
    }

    /// Total (token, layer, expert) entries.
    pub fn num_entries(&self) -> usize {
        self.layers.iter().map(LayerRouting::num_entries).sum()
    }

    /// One layer's routing.
    pub fn layer(&self, layer: usize) -> &LayerRouting {
        &self.layers[layer]
    }

    /// All layers.
    pub fn layers(&self) -> &[LayerRouting] {
        &self.layers
    }

    /// Per-token metadata.
    pub fn meta(&self) -> &TokenMeta {
        &self.meta
    }

    /// `Some(k)` when every token has exactly `k` experts at every layer.
    pub fn uniform_k(&self) -> Option<usize> {
        let k = self.layers.first()?.uniform_k()?;
        self.layers
            .iter()
            .all(|l| l.uniform_k() == Some(k))
            .then_some(k)
    }

    /// The largest number of experts any token has at any layer.
    pub fn max_k(&self) -> usize {
        self.layers
            .iter()
            .flat_map(|l| l.offsets.windows(2).map(|w| (w[1] - w[0]) as usize))
            .max()
            .unwrap_or(0)
    }

    /// Reduces the trace to per-layer, per-expert token counts. Ids past `num_experts` are ignored
    /// (run [`validate`] to find them).
    pub fn expert_loads(&self) -> ExpertLoads {
        let mut loads = vec![0.0; self.num_layers() * self.num_experts];
        for (layer, routing) in self.layers.iter().enumerate() {
            let row = &mut loads[layer * self.num_experts..(layer + 1) * self.num_experts];
            for &expert in &routing.experts {
                if let Some(slot) = row.get_mut(expert as usize) {
                    *slot += 1.0;
                }
            }
        }
        ExpertLoads {
            num_layers: self.num_layers(),
            num_experts: self.num_experts,
            loads,
        }
    }

    /// Tokens `range` of this trace as a trace of their own (metadata sliced alongside).
    pub fn slice_tokens(&self, range: std::ops::Range<usize>) -> RoutingTrace {
        self.gather_tokens(range)
    }

    /// The tokens `rows` (in that order, repeats allowed) as a trace of their own, metadata
    /// gathered alongside.
    pub fn gather_tokens(&self, rows: impl Iterator<Item = usize> + Clone) -> RoutingTrace {
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let mut offsets = vec![0];
                let mut experts = Vec::new();
                let mut weights = l.weights.as_ref().map(|_| Vec::new());
                for token in rows.clone() {
                    let (start, end) = (l.offsets[token] as usize, l.offsets[token + 1] as usize);
                    experts.extend_from_slice(&l.experts[start..end]);
                    if let (Some(out), Some(w)) = (&mut weights, &l.weights) {
                        out.extend_from_slice(&w[start..end]);
                    }
                    offsets.push(experts.len() as u32);
                }
                LayerRouting {
                    offsets,
                    experts,
                    weights,
                }
            })
            .collect();
        let meta = TokenMeta {
            step: gather_column(&self.meta.step, rows.clone()),
            request_id: gather_column(&self.meta.request_id, rows.clone()),
            position: gather_column(&self.meta.position, rows.clone()),
            phase: gather_column(&self.meta.phase, rows.clone()),
            dp_rank: gather_column(&self.meta.dp_rank, rows.clone()),
        };
        RoutingTrace {
            num_experts: self.num_experts,
            num_tokens: rows.count(),
            layers,
            meta,
        }
    }
}

impl RoutingTrace {
    /// Appends `other`'s tokens after this trace's, so traces of different workloads play one
    /// after the other (a workload switch). Both must have the same experts and layers. Gate
    /// weights and metadata columns are kept only when both traces have them; `step` and
    /// `request_id` of `other` are shifted past this trace's largest, so steps and requests of the
    /// two parts stay distinct. Fails, changing nothing, on a shape mismatch or when a layer
    /// would exceed 2^32 entries.
    pub fn append(&mut self, other: &RoutingTrace) -> Result<()> {
        if (other.num_experts, other.num_layers()) != (self.num_experts, self.num_layers()) {
            return Err(Error::invalid(format!(
                "has {} experts x {} layers but the traces before it have {} x {}",
                other.num_experts,
                other.num_layers(),
                self.num_experts,
                self.num_layers()
            )));
        }
        if let Some(layer) = self
            .layers
            .iter()
            .zip(&other.layers)
            .position(|(a, b)| a.experts.len() + b.experts.len() > u32::MAX as usize)
        {
            return Err(Error::invalid(format!(
                "layer {layer} would hold more than 2^32 routed entries"
            )));
        }
        for (mine, theirs) in self.layers.iter_mut().zip(&other.layers) {
            let base = mine.experts.len() as u32;
            mine.offsets
                .extend(theirs.offsets[1..].iter().map(|o| base + o));
            mine.experts.extend_from_slice(&theirs.experts);
            mine.weights = match (mine.weights.take(), &theirs.weights) {
                (Some(mut w), Some(more)) => {
                    w.extend_from_slice(more);
                    Some(w)
                }
                _ => None,
            };
        }
        let meta = &mut self.meta;
        meta.step = shifted_column(meta.step.take(), &other.meta.step);
        meta.request_id = shifted_column(meta.request_id.take(), &other.meta.request_id);
        meta.position = joined_column(meta.position.take(), &other.meta.position);
        meta.phase = joined_column(meta.phase.take(), &other.meta.phase);
        meta.dp_rank = joined_column(meta.dp_rank.take(), &other.meta.dp_rank);
        self.num_tokens += other.num_tokens;
        Ok(())
    }
}

/// `first` followed by `second`, when both are present.
fn joined_column<T: Clone>(first: Option<Vec<T>>, second: &Option<Vec<T>>) -> Option<Vec<T>> {
    let (mut first, second) = (first?, second.as_ref()?);
    first.extend_from_slice(second);
    Some(first)
}

/// `first` followed by `second` shifted past `first`'s largest value (ids that must not collide).
fn shifted_column<T>(first: Option<Vec<T>>, second: &Option<Vec<T>>) -> Option<Vec<T>>
where
    T: Copy + Ord + std::ops::Add<Output = T> + From<u8>,
{
    let (mut first, second) = (first?, second.as_ref()?);
    let shift = first.iter().max().map_or(T::from(0), |&m| m + T::from(1));
    first.extend(second.iter().map(|&v| v + shift));
    Some(first)
}

/// Tokens `rows` of an optional metadata column.
fn gather_column<T: Clone>(
    column: &Option<Vec<T>>,
    rows: impl Iterator<Item = usize>,
) -> Option<Vec<T>> {
    column
        .as_ref()
        .map(|c| rows.map(|token| c[token].clone()).collect())
}

/// The most (layer, expert) cells a loads trace holds (512 MiB of loads): 65,536 experts over
/// 1,024 layers, far past any model, while a sparse source (a loads CSV) cannot ask for more.
pub const MAX_LOAD_CELLS: usize = 1 << 26;

/// Aggregate routing: tokens per expert per layer (token x top-k slots), as SGLang records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertLoads {
    num_layers: usize,
    num_experts: usize,
    /// Layer-major: `loads[layer * num_experts + expert]`.
    loads: Vec<f64>,
}

impl ExpertLoads {
    /// Builds loads from one row of `num_experts` values per layer.
    pub fn new(num_experts: usize, rows: Vec<Vec<f64>>) -> Result<Self> {
        if let Some((layer, row)) = rows
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() != num_experts)
        {
            return Err(Error::invalid(format!(
                "layer {layer} has {} expert loads, expected {num_experts}",
                row.len()
            )));
        }
        Ok(ExpertLoads {
            num_layers: rows.len(),
            num_experts,
            loads: rows.concat(),
        })
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }

    /// Number of experts per layer.
    pub fn num_experts(&self) -> usize {
        self.num_experts
    }

    /// Loads of every expert at `layer`.
    pub fn layer(&self, layer: usize) -> &[f64] {
        &self.loads[layer * self.num_experts..(layer + 1) * self.num_experts]
    }

    /// Total load over all experts at `layer`.
    pub fn layer_total(&self, layer: usize) -> f64 {
        self.layer(layer).iter().sum()
    }

    /// Keeps only the layers that carry any load (drops the all-zero dense layers that SGLang
    /// records for DeepSeek's first three layers). Returns the original indices kept.
    pub fn drop_empty_layers(&mut self) -> Vec<usize> {
        let kept: Vec<usize> = (0..self.num_layers)
            .filter(|&l| self.layer_total(l) > 0.0)
            .collect();
        self.loads = kept.iter().flat_map(|&l| self.layer(l).to_vec()).collect();
        self.num_layers = kept.len();
        kept
    }
}

/// A trace as read from a file: token-level routing or aggregate loads only.
#[derive(Debug, Clone, PartialEq)]
pub enum Trace {
    /// Token-level routing.
    Tokens(RoutingTrace),
    /// Per-expert token counts only.
    Loads(ExpertLoads),
}

impl Trace {
    /// Per-layer, per-expert loads, whichever form the trace is in.
    pub fn expert_loads(&self) -> ExpertLoads {
        match self {
            Trace::Tokens(t) => t.expert_loads(),
            Trace::Loads(l) => l.clone(),
        }
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        match self {
            Trace::Tokens(t) => t.num_layers(),
            Trace::Loads(l) => l.num_layers(),
        }
    }

    /// Number of experts per layer.
    pub fn num_experts(&self) -> usize {
        match self {
            Trace::Tokens(t) => t.num_experts(),
            Trace::Loads(l) => l.num_experts(),
        }
    }

    /// The token-level routing, if the trace has it.
    pub fn tokens(&self) -> Option<&RoutingTrace> {
        match self {
            Trace::Tokens(t) => Some(t),
            Trace::Loads(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_layer_trace() -> RoutingTrace {
        // tokens x layers x k=2
        let ids = [0, 1, 2, 3, 1, 2, 3, 0, 0, 3, 2, 1];
        RoutingTrace::from_dense(4, 2, 2, &ids).unwrap()
    }

    #[test]
    fn dense_layout_is_split_per_layer() {
        let t = two_layer_trace();
        assert_eq!(t.num_tokens(), 3);
        assert_eq!(t.layer(0).experts_of(1), &[1, 2]);
        assert_eq!(t.layer(1).experts_of(2), &[2, 1]);
        assert_eq!(t.uniform_k(), Some(2));
        assert_eq!(t.num_entries(), 12);
    }

    #[test]
    fn loads_count_every_entry() {
        let loads = two_layer_trace().expert_loads();
        assert_eq!(loads.layer(0), &[2.0, 2.0, 1.0, 1.0]);
        assert_eq!(loads.layer(1), &[1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn variable_k_and_null_routing_are_representable() {
        let layer = LayerRouting::new(vec![0, 3, 3, 4], vec![5, 1, 2, 7], None).unwrap();
        assert_eq!(layer.experts_of(1), &[] as &[u16]);
        assert_eq!(layer.uniform_k(), None);
        let trace = RoutingTrace::new(8, vec![layer], TokenMeta::default()).unwrap();
        assert_eq!(trace.max_k(), 3);
    }

    #[test]
    fn mismatched_layers_are_rejected() {
        let a = LayerRouting::fixed_k(1, vec![0, 1], None).unwrap();
        let b = LayerRouting::fixed_k(1, vec![0], None).unwrap();
        let err = RoutingTrace::new(2, vec![a, b], TokenMeta::default()).unwrap_err();
        assert!(err.to_string().contains("layer 1 has 1 tokens"));
    }

    #[test]
    fn slicing_keeps_tokens_and_metadata_aligned() {
        let mut t = two_layer_trace();
        t.meta.position = Some(vec![10, 11, 12]);
        let s = t.slice_tokens(1..3);
        assert_eq!(s.num_tokens(), 2);
        assert_eq!(s.layer(0).experts_of(0), &[1, 2]);
        assert_eq!(s.meta().position.as_deref(), Some(&[11, 12][..]));
    }

    #[test]
    fn appending_joins_tokens_weights_and_shifted_metadata() {
        let mut a = two_layer_trace();
        a.meta.step = Some(vec![0, 0, 1]);
        a.meta.position = Some(vec![0, 1, 0]);
        let mut b = two_layer_trace().slice_tokens(1..3);
        b.meta.step = Some(vec![0, 4]);
        a.append(&b).unwrap();
        assert_eq!(a.num_tokens(), 5);
        assert_eq!(a.layer(0).offsets(), &[0, 2, 4, 6, 8, 10]);
        // b's tokens are a's tokens 1 and 2.
        assert_eq!(a.layer(0).experts_of(3), &[1, 2]);
        assert_eq!(a.layer(1).experts_of(4), &[2, 1]);
        // Steps continue after a's last (1): 0 + 2, 4 + 2; positions were only in a: dropped.
        assert_eq!(a.meta().step.as_deref(), Some(&[0, 0, 1, 2, 6][..]));
        assert_eq!(a.meta().position, None);
        let other_shape = RoutingTrace::from_dense(8, 2, 1, &[0, 1]).unwrap();
        let err = a.append(&other_shape).unwrap_err().to_string();
        assert_eq!(
            err,
            "has 8 experts x 2 layers but the traces before it have 4 x 2"
        );
        assert_eq!(a.num_tokens(), 5);
    }

    #[test]
    fn empty_layers_are_dropped() {
        let mut loads =
            ExpertLoads::new(2, vec![vec![0.0, 0.0], vec![3.0, 1.0], vec![0.0, 0.0]]).unwrap();
        assert_eq!(loads.drop_empty_layers(), vec![1]);
        assert_eq!(loads.num_layers(), 1);
        assert_eq!(loads.layer(0), &[3.0, 1.0]);
    }
}
