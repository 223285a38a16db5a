//! The instrumented kernel's ring-buffer records and their assembly into a [`RoutingTrace`].
//!
//! A record is `4 + 2k` little-endian u32 words:
//! `[seq_lo, seq_hi, layer, token, expert ids x k, f32 weight bits x k]`. Every decision takes
//! the next global sequence number; the host copies the ring slots of a launch's sequence range
//! (`seq % capacity`) in sequence order and hands them to [`Assembler::absorb`]. A slot whose
//! sequence field is not the one expected holds an older record: the kernel dropped this one
//! (ring full) and counted it in its overflow counter. [`Assembler::finish`] checks the two counts
//! agree, so a loss is never silent, and leaves a lost decision's (layer, token) without experts.

use crate::error::{Error, Result};
use crate::trace::{ExpertId, LayerRouting, RoutingTrace, TokenMeta};

/// Words before the expert ids: sequence number (2), layer, token.
pub const HEADER_WORDS: usize = 4;

/// Words per record for top-`k` routing.
pub fn record_words(top_k: usize) -> usize {
    HEADER_WORDS + 2 * top_k
}

/// One decoded decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Global sequence number (the order the kernel made its decisions in).
    pub seq: u64,
    /// MoE layer.
    pub layer: u32,
    /// Token index.
    pub token: u32,
    /// Chosen experts, best first.
    pub experts: Vec<u32>,
    /// Their gate weights.
    pub weights: Vec<f32>,
}

/// Decodes one record of `record_words(top_k)` words.
pub fn decode(words: &[u32], top_k: usize) -> Record {
    let ids = &words[HEADER_WORDS..HEADER_WORDS + top_k];
    let weights = &words[HEADER_WORDS + top_k..HEADER_WORDS + 2 * top_k];
    Record {
        seq: u64::from(words[0]) | (u64::from(words[1]) << 32),
        layer: words[2],
        token: words[3],
        experts: ids.to_vec(),
        weights: weights.iter().map(|&bits| f32::from_bits(bits)).collect(),
    }
}

/// Encodes a record (the kernel's layout); the inverse of [`decode`], used by the tests and by
/// whoever fabricates ring contents.
pub fn encode(record: &Record) -> Vec<u32> {
    let mut words = vec![
        record.seq as u32,
        (record.seq >> 32) as u32,
        record.layer,
        record.token,
    ];
    words.extend_from_slice(&record.experts);
    words.extend(record.weights.iter().map(|w| w.to_bits()));
    words
}

/// What a capture produced: the trace, the kernel's per-expert counters and the losses.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    /// Decisions that reached the host, as a trace (a lost decision's token has no experts at
    /// that layer).
    pub trace: RoutingTrace,
    /// The kernel's per-expert decision counts, `[layer][expert]`, lost decisions included.
    pub expert_counts: Vec<Vec<u64>>,
    /// Decisions lost to a full ring buffer.
    pub lost_records: u64,
}

/// Collects records, in sequence order, into per-layer routing.
#[derive(Debug)]
pub struct Assembler {
    num_experts: usize,
    num_tokens: usize,
    top_k: usize,
    /// Per layer, `[token * k ..][..k]` experts and weights.
    experts: Vec<Vec<ExpertId>>,
    weights: Vec<Vec<f32>>,
    /// Per layer and token, whether its decision arrived.
    filled: Vec<Vec<bool>>,
    next_seq: u64,
    lost: u64,
}

impl Assembler {
    /// An empty assembler for `num_layers` x `num_tokens` decisions of top-`top_k`.
    pub fn new(num_layers: usize, num_tokens: usize, num_experts: usize, top_k: usize) -> Self {
        Assembler {
            num_experts,
            num_tokens,
            top_k,
            experts: vec![vec![0; num_tokens * top_k]; num_layers],
            weights: vec![vec![0.0; num_tokens * top_k]; num_layers],
            filled: vec![vec![false; num_tokens]; num_layers],
            next_seq: 0,
            lost: 0,
        }
    }

    /// Takes the ring slots of the sequence numbers `first_seq ..` (one record per
    /// `record_words(k)` words, in sequence order; ranges must follow each other).
    pub fn absorb(&mut self, first_seq: u64, words: &[u32]) -> Result<()> {
        if first_seq != self.next_seq {
            return Err(Error::invalid(format!(
                "ring drain out of order: got sequence {first_seq}, expected {}",
                self.next_seq
            )));
        }
        let stride = record_words(self.top_k);
        if !words.len().is_multiple_of(stride) {
            return Err(Error::invalid(format!(
                "ring drain of {} words is not a whole number of {stride}-word records",
                words.len()
            )));
        }
        for (offset, slot) in words.chunks_exact(stride).enumerate() {
            let expected = first_seq + offset as u64;
            let record = decode(slot, self.top_k);
            if record.seq == expected {
                self.store(&record)?;
            } else {
                self.lost += 1;
            }
        }
        self.next_seq = first_seq + (words.len() / stride) as u64;
        Ok(())
    }

    /// Places one record, checking it names a real layer, token and experts, once.
    fn store(&mut self, record: &Record) -> Result<()> {
        let bad = |what: String| Error::invalid(format!("ring record {}: {what}", record.seq));
        let layer = record.layer as usize;
        let token = record.token as usize;
        if layer >= self.filled.len() || token >= self.num_tokens {
            return Err(bad(format!(
                "layer {layer}, token {token} outside {} layers x {} tokens",
                self.filled.len(),
                self.num_tokens
            )));
        }
        if self.filled[layer][token] {
            return Err(bad(format!(
                "second decision for layer {layer}, token {token}"
            )));
        }
        if let Some(&expert) = record
            .experts
            .iter()
            .find(|&&e| e as usize >= self.num_experts)
        {
            return Err(bad(format!(
                "expert {expert} of {} experts",
                self.num_experts
            )));
        }
        let at = token * self.top_k..(token + 1) * self.top_k;
        for (slot, &expert) in self.experts[layer][at.clone()]
            .iter_mut()
            .zip(&record.experts)
        {
            *slot = expert as ExpertId;
        }
        self.weights[layer][at].copy_from_slice(&record.weights);
        self.filled[layer][token] = true;
        Ok(())
    }

    /// Builds the trace. `overflow` is the kernel's count of dropped records and must equal the
    /// records found missing; `expert_counts` (`[layer][expert]`) must equal the counts of the
    /// records received when nothing was lost.
    pub fn finish(self, overflow: u64, expert_counts: Vec<Vec<u64>>) -> Result<Captured> {
        let decisions = (self.filled.len() * self.num_tokens) as u64;
        if self.next_seq != decisions {
            return Err(Error::invalid(format!(
                "ring drained {} sequence numbers for {decisions} decisions",
                self.next_seq
            )));
        }
        if self.lost != overflow {
            return Err(Error::invalid(format!(
                "ring buffer: {} records missing but the kernel counted {overflow} lost",
                self.lost
            )));
        }
        let k = self.top_k;
        let mut layers = Vec::with_capacity(self.filled.len());
        for (layer, filled) in self.filled.iter().enumerate() {
            let mut offsets = Vec::with_capacity(self.num_tokens + 1);
            let (mut experts, mut weights) = (Vec::new(), Vec::new());
            offsets.push(0);
            for (token, &arrived) in filled.iter().enumerate() {
                if arrived {
                    let at = token * k..(token + 1) * k;
                    experts.extend_from_slice(&self.experts[layer][at.clone()]);
                    weights.extend_from_slice(&self.weights[layer][at]);
                }
                offsets.push(experts.len() as u32);
            }
            layers.push(LayerRouting::new(offsets, experts, Some(weights))?);
        }
        let trace = RoutingTrace::new(self.num_experts, layers, TokenMeta::default())?;
        if self.lost == 0 {
            check_counts(&trace, &expert_counts)?;
        }
        Ok(Captured {
            trace,
            expert_counts,
            lost_records: self.lost,
        })
    }
}

/// Checks the kernel's counters against the loads of the records received.
fn check_counts(trace: &RoutingTrace, expert_counts: &[Vec<u64>]) -> Result<()> {
    let loads = trace.expert_loads();
    for (layer, counts) in expert_counts.iter().enumerate() {
        for (expert, &count) in counts.iter().enumerate() {
            let received = loads.layer(layer).get(expert).copied().unwrap_or(0.0);
            if received != count as f64 {
                return Err(Error::invalid(format!(
                    "layer {layer} expert {expert}: the kernel counted {count} decisions but \
                     {received} records arrived"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
