//! How much a strategy's advantage survives out of sample: fit on one trace, evaluate on the
//! same trace (in sample) and on another one or the held-out rest (out of sample).

use std::path::Path;

use serde::Serialize;

use super::evaluate::{EvalContext, evaluate};
use super::{PlacementRequest, strategy};
use crate::error::{Error, Result};
use crate::output::write_bytes_atomic;
use crate::trace::{self, Trace};

/// The strategies the example report compares on every case: quick and deterministic.
pub const EXAMPLE_STRATEGIES: [&str; 3] = ["contiguous", "round-robin", "eplb"];

/// The solver strategies the example report adds: `ilp-balance` on every case, and
/// `ilp-affinity` where the fitted trace has token-level routing (its transitions). They take
/// seconds to a minute and stop at their time limits, so the tests recompute only
/// [`EXAMPLE_STRATEGIES`].
pub const EXAMPLE_SOLVERS: [&str; 2] = ["ilp-balance", "ilp-affinity"];

/// Which tokens of a token-level trace to keep: `floor(F x tokens)` splits it, so `First(F)`
/// and `Rest(F)` are disjoint and together cover every token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenPart {
    /// The first fraction `F` of the tokens, `0 < F <= 1`.
    First(f64),
    /// The tokens after the first fraction `F`, `0 <= F < 1`.
    Rest(f64),
}

/// `part` of `trace`'s tokens; the error says why when the trace has no tokens, the fraction is
/// out of range or the part is empty.
pub fn token_part(trace: &Trace, part: TokenPart) -> Result<Trace> {
    let Some(tokens) = trace.tokens() else {
        return Err(Error::invalid(
            "splitting needs a token-level trace, but this one has aggregate loads only",
        ));
    };
    let (fraction, valid) = match part {
        TokenPart::First(f) => (f, f > 0.0 && f <= 1.0),
        TokenPart::Rest(f) => (f, (0.0..1.0).contains(&f)),
    };
    if !valid {
        return Err(Error::invalid(format!(
            "the split fraction must be in (0, 1] for the first part and in [0, 1) for the \
             rest, got {fraction}"
        )));
    }
    let total = tokens.num_tokens();
    let cut = (fraction * total as f64).floor() as usize;
    let range = match part {
        TokenPart::First(_) => 0..cut,
        TokenPart::Rest(_) => cut..total,
    };
    if range.is_empty() {
        return Err(Error::invalid(format!(
            "{fraction} of {total} tokens leaves no tokens to use"
        )));
    }
    Ok(Trace::Tokens(tokens.slice_tokens(range)))
}

/// One fit / held-out pair and the shape to place onto.
pub struct HoldoutCase<'a> {
    /// A name for the report.
    pub name: String,
    /// The trace strategies are fitted on.
    pub fit: &'a Trace,
    /// The trace they are judged on out of sample.
    pub held_out: &'a Trace,
    /// GPUs.
    pub num_gpus: usize,
    /// Slots per GPU (strategies without replicas leave spare ones empty).
    pub slots_per_gpu: usize,
    /// Machines.
    pub num_nodes: usize,
    /// Expert groups.
    pub num_groups: usize,
}

/// One strategy on one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldoutRow {
    /// The case's name.
    pub case: String,
    /// The strategy.
    pub strategy: String,
    /// Mean over loaded layers of the GPU max/mean load on the fitted trace.
    pub in_sample_max_mean: f64,
    /// The same on the held-out trace.
    pub out_of_sample_max_mean: f64,
    /// Cross-GPU transition fraction on the fitted trace (token-level traces).
    pub in_sample_cross_gpu: Option<f64>,
    /// The same on the held-out trace.
    pub out_of_sample_cross_gpu: Option<f64>,
}

/// Fits every strategy in `strategies` on `case.fit` and evaluates it in and out of sample.
pub fn compare(case: &HoldoutCase, strategies: &[&str]) -> Result<Vec<HoldoutRow>> {
    let loads = case.fit.expert_loads();
    let request = PlacementRequest {
        slots_per_gpu: case.slots_per_gpu,
        num_nodes: case.num_nodes,
        num_groups: case.num_groups,
        transitions: case.fit.tokens(),
        ..PlacementRequest::new(&loads, case.num_gpus)
    };
    strategies
        .iter()
        .map(|&name| {
            let placement = strategy(name)?.place(&request)?;
            let inside = evaluate(&placement, case.fit, EvalContext::bare())?;
            let outside = evaluate(&placement, case.held_out, EvalContext::bare())?;
            Ok(HoldoutRow {
                case: case.name.clone(),
                strategy: name.to_string(),
                in_sample_max_mean: inside.summary.mean_max_mean,
                out_of_sample_max_mean: outside.summary.mean_max_mean,
                in_sample_cross_gpu: inside.summary.cross_gpu_fraction,
                out_of_sample_cross_gpu: outside.summary.cross_gpu_fraction,
            })
        })
        .collect()
}

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[HoldoutRow]) -> String {
    let mut out = String::from(
        "| case | strategy | max/mean in sample | max/mean out of sample | cross-GPU in sample | cross-GPU out of sample |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for row in rows {
        out += &markdown_row(row);
    }
    out
}

/// One row of [`markdown_table`], with its line end.
pub fn markdown_row(row: &HoldoutRow) -> String {
    let cell = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.4}"));
    format!(
        "| {} | {} | {:.4} | {:.4} | {} | {} |\n",
        row.case,
        row.strategy,
        row.in_sample_max_mean,
        row.out_of_sample_max_mean,
        cell(row.in_sample_cross_gpu),
        cell(row.out_of_sample_cross_gpu)
    )
}

/// The committed example report's comparison, from the shared third-party data under
/// `data_root`: DeepSeek-V3 loads fitted on `prefill_in1024` and judged on `prefill_in4096`
/// (EP32, 4 nodes, 8 groups, 9 slots per GPU), and switch-base-128 routing fitted on its first
/// half and judged on its second (8 GPUs, 18 slots each), for [`EXAMPLE_STRATEGIES`] and,
/// with `solvers`, [`EXAMPLE_SOLVERS`].
pub fn example_rows(data_root: &Path, solvers: bool) -> Result<Vec<HoldoutRow>> {
    let load = |relative: &str| trace::load(&data_root.join(relative));
    let ds_fit = load("deepseek-v3-expert-load/prefill_in1024.json")?;
    let ds_held = load("deepseek-v3-expert-load/prefill_in4096.json")?;
    let switch_path = "switch-top1/switch-base-128.trace.npy";
    let switch = load(switch_path)?;
    let in_context = |e: Error| Error::bad_file(data_root.join(switch_path), e.to_string());
    let switch_fit = token_part(&switch, TokenPart::First(0.5)).map_err(in_context)?;
    let switch_held = token_part(&switch, TokenPart::Rest(0.5)).map_err(in_context)?;
    let cases = [
        HoldoutCase {
            name: "deepseek-v3 prefill_in1024 -> prefill_in4096, EP32".into(),
            fit: &ds_fit,
            held_out: &ds_held,
            num_gpus: 32,
            slots_per_gpu: 9,
            num_nodes: 4,
            num_groups: 8,
        },
        HoldoutCase {
            name: "switch-base-128 first half -> second half, 8 GPUs".into(),
            fit: &switch_fit,
            held_out: &switch_held,
            num_gpus: 8,
            slots_per_gpu: 18,
            num_nodes: 1,
            num_groups: 1,
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        let mut strategies = EXAMPLE_STRATEGIES.to_vec();
        if solvers {
            let token_level = case.fit.tokens().is_some();
            strategies.extend(
                EXAMPLE_SOLVERS
                    .iter()
                    .filter(|&&name| token_level || name != "ilp-affinity"),
            );
        }
        rows.extend(compare(case, &strategies)?);
    }
    Ok(rows)
}

/// Writes `rows` to `dir` as `summary.json` and `report.md` (each atomically).
pub fn write_report(rows: &[HoldoutRow], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_vec_pretty(rows)
        .map_err(|e| Error::invalid(format!("serialising the holdout rows: {e}")))?;
    write_bytes_atomic(&dir.join("summary.json"), &json)?;
    let markdown = format!(
        "# Placement strategies in and out of sample\n\n\
         Generated by `cargo run --example placement_report -- ../shared/data \
         reports/placement-example`. Each strategy is fitted on one trace and judged on it (in \
         sample) and on another (out of sample). max/mean: the busiest GPU's tokens over the \
         mean GPU's, averaged over the layers that carry load; cross-GPU: share of a token's \
         layer-to-layer transitions whose experts share no GPU (token-level traces only). \
         The gap between the in- and out-of-sample columns is how much a fitted strategy's \
         advantage shrinks on traffic it did not see. Only derived statistics of the \
         third-party data appear here.\n\n{}",
        markdown_table(rows)
    );
    write_bytes_atomic(&dir.join("report.md"), markdown.as_bytes())
}

#[cfg(test)]
mod tests;
