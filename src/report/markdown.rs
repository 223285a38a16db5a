//! The Markdown report of a run.

use std::fmt::Write;

use crate::runner::RunResult;

/// Renders `result` as Markdown, referring to the charts written beside it.
pub fn render(result: &RunResult) -> String {
    let mut md = String::new();
    let _ = write_body(&mut md, result);
    md
}

fn write_body(md: &mut String, r: &RunResult) -> std::fmt::Result {
    writeln!(md, "# moesim report: {}\n", r.scenario)?;
    writeln!(md, "| setting | value |\n|---|---|")?;
    writeln!(md, "| model | {} |", r.model)?;
    writeln!(
        md,
        "| cluster | {} ({} GPUs on {} node(s) hold experts) |",
        r.cluster, r.gpus, r.nodes
    )?;
    writeln!(md, "| tokens per GPU per step | {} |", r.tokens_per_gpu)?;
    writeln!(md, "| trace | {} |", r.trace_source)?;
    writeln!(
        md,
        "| trace shape | {} tokens, {} MoE layers, {} experts, top-{} |",
        r.trace.num_tokens.map_or("?".into(), |t| t.to_string()),
        r.trace.num_layers,
        r.trace.num_experts,
        r.trace.top_k.map_or("?".into(), |k| k.to_string())
    )?;
    writeln!(md, "| steps | {} |", r.steps)?;
    writeln!(md, "| seed | {} |\n", r.seed)?;

    writeln!(md, "## Placements compared\n")?;
    writeln!(
        md,
        "Step time is the analytical estimate summed over MoE layers: dispatch all-to-all, the \
         slowest GPU's expert compute, combine all-to-all (no overlap).\n"
    )?;
    writeln!(
        md,
        "| placement | est. MoE step (ms) | dispatch (ms) | expert compute (ms) | combine (ms) | mean GPU max/mean | worst GPU max/mean |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for s in &r.strategies {
        let sum = |f: fn(&crate::runner::LayerResult) -> u64| s.layers.iter().map(f).sum::<u64>();
        let worst = s.layers.iter().map(|l| l.max_mean).fold(0.0, f64::max);
        writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.name,
            ms(s.step_ns),
            ms(sum(|l| l.dispatch_ns)),
            ms(sum(|l| l.compute_ns)),
            ms(sum(|l| l.combine_ns)),
            s.mean_gpu_max_mean,
            worst
        )?;
    }
    writeln!(md, "\n![load imbalance per layer](imbalance.png)\n")?;
    writeln!(md, "![GPU load heatmap](gpu_load_heatmap.png)\n")?;

    writeln!(md, "## Routing statistics per MoE layer\n")?;
    writeln!(
        md,
        "| layer | expert max/mean | CV | Gini | entropy (bits) | experts for 50% | dead |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|")?;
    for l in &r.trace.layers {
        writeln!(
            md,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |",
            l.layer, l.max_mean, l.cv, l.gini, l.entropy, l.experts_for_half_load, l.dead_experts
        )?;
    }
    writeln!(md, "\nFull numbers: `summary.json` in this folder.")?;
    Ok(())
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
