//! The Markdown report of a run.

use std::fmt::Write;

use crate::pipeline::RunResult;
use crate::pipeline::SimResult;

/// Renders `result` as Markdown, referring to the charts written beside it.
pub fn render(result: &RunResult) -> String {
    let mut md = String::new();
    let _ = write_body(&mut md, result);
    md
}

fn write_body(md: &mut String, r: &RunResult) -> std::fmt::Result {
    writeln!(md, "# moesim report: {}\n", r.scenario)?;
    write_verdict(md, &r.simulated)?;
    writeln!(md, "| setting | value |\n|---|---|")?;
    writeln!(md, "| model | {} |", r.model)?;
    writeln!(
        md,
        "| cluster | {} ({} GPUs on {} node(s) hold experts) |",
        r.cluster, r.gpus, r.nodes
    )?;
    writeln!(
        md,
        "| tokens per GPU per step | {} (without a schedule) |",
        r.tokens_per_gpu
    )?;
    writeln!(md, "| trace | {} |", r.trace_source)?;
    let routing = match (r.trace.num_tokens, r.trace.top_k) {
        (Some(tokens), Some(k)) => format!("{tokens} tokens, top-{k}"),
        (Some(tokens), None) => format!("{tokens} tokens, top-k varies by token"),
        (None, _) => "expert loads only (no per-token routing)".to_string(),
    };
    writeln!(
        md,
        "| trace shape | {routing}, {} MoE layers, {} experts |",
        r.trace.num_layers, r.trace.num_experts,
    )?;
    writeln!(md, "| steps | {} |", r.steps)?;
    writeln!(md, "| seed | {} |\n", r.seed)?;

    writeln!(md, "## Placements compared\n")?;
    writeln!(
        md,
        "Step time is the analytical estimate summed over MoE layers: dispatch all-to-all, the \
         slowest GPU's expert compute, combine all-to-all (no overlap), the mean over the {} \
         step(s) the simulation below replays.\n",
        r.steps
    )?;
    writeln!(
        md,
        "| placement | est. MoE step (ms) | dispatch (ms) | expert compute (ms) | combine (ms) | mean GPU max/mean | worst GPU max/mean |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|---:|---:|")?;
    for s in &r.strategies {
        let sum = |f: fn(&crate::pipeline::LayerResult) -> u64| s.layers.iter().map(f).sum::<u64>();
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
    write_simulated(md, &r.simulated)?;

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

/// The report's first sentence: the placement and overlap strategy with the shortest mean
/// simulated step, and how far the slowest combination is behind it.
fn write_verdict(md: &mut String, sim: &SimResult) -> std::fmt::Result {
    let by_step = |s: &&crate::sim::StrategySim| s.step_ns;
    let (Some(best), Some(worst)) = (
        sim.strategies.iter().min_by_key(by_step),
        sim.strategies.iter().max_by_key(by_step),
    ) else {
        return Ok(());
    };
    writeln!(
        md,
        "**Shortest simulated step: placement {}, overlap `{}`, {:.3} ms (mean of {} step(s)); \
         the slowest combination, {} with `{}`, takes {:.3} ms ({:.1}% longer).**\n",
        best.placement,
        best.strategy,
        ms(best.step_ns),
        sim.steps,
        worst.placement,
        worst.strategy,
        ms(worst.step_ns),
        (worst.step_ns as f64 / best.step_ns.max(1) as f64 - 1.0) * 100.0
    )
}

/// The discrete-event simulation: per placement and overlap strategy, step times, exposed
/// communication and all-to-all volume, then the charts.
fn write_simulated(md: &mut String, sim: &SimResult) -> std::fmt::Result {
    writeln!(md, "## Simulated steps\n")?;
    writeln!(
        md,
        "The discrete-event simulator replays {} step(s) of the trace through every MoE layer \
         ({} all-to-all, communication kernels take {} SMs while they overlap GEMMs). Exposed \
         communication is dispatch and combine on the critical path; volumes are per step.\n",
        sim.steps, sim.all_to_all, sim.comm_sms
    )?;
    writeln!(
        md,
        "| placement | overlap | mean step (ms) | p50 (ms) | p99 (ms) | exposed comm | intra-node a2a (MB) | inter-node a2a (MB) |"
    )?;
    writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|")?;
    let per_step_mb = |bytes: u64| bytes as f64 / sim.steps.max(1) as f64 / 1e6;
    for s in &sim.strategies {
        writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.1}% | {:.2} | {:.2} |",
            s.placement,
            s.strategy,
            ms(s.step_ns),
            ms(s.p50_step_ns),
            ms(s.p99_step_ns),
            s.exposed_comm_share * 100.0,
            per_step_mb(s.intra_node_bytes),
            per_step_mb(s.inter_node_bytes)
        )?;
    }
    let d = &sim.dispatch;
    writeln!(
        md,
        "\nDispatch: replica choice `{}`, capacity factor {}, least-loaded EP {}.\n",
        d.replica,
        d.capacity_factor.map_or("none".into(), |f| f.to_string()),
        if d.llep { "on" } else { "off" }
    )?;
    writeln!(
        md,
        "| placement | routed pairs | dropped (quality proxy) | LLEP moved pairs | LLEP weights (MB) |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---:|")?;
    for p in &d.placements {
        writeln!(
            md,
            "| {} | {:.0} | {:.2}% | {:.0} | {:.1} |",
            p.placement,
            p.tally.routed_pairs,
            p.dropped_share * 100.0,
            p.tally.moved_pairs,
            p.tally.weight_bytes / 1e6
        )?;
    }
    write_kernels(md, sim)?;
    writeln!(
        md,
        "\n![simulated step breakdown](sim_step_breakdown.png)\n"
    )?;
    writeln!(md, "![link utilisation per layer](sim_link_heatmap.png)\n")?;
    writeln!(md, "![timeline excerpt](sim_timeline.png)\n")
}

/// The kernels of one layer with the rates they ran at, beside the published figures their
/// model is fitted to.
fn write_kernels(md: &mut String, sim: &SimResult) -> std::fmt::Result {
    if sim.kernels.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "\n### Kernels of one MoE layer\n\nThe first MoE layer of the first step under the first \
         placement, on its GPU with the slowest routed experts (launch costs left out), and the \
         published kernel figures each model is fitted to.\n"
    )?;
    writeln!(
        md,
        "| kernel | time (us) | TFLOP/s | GB/s | published figures the model is fitted to |"
    )?;
    writeln!(md, "|---|---:|---:|---:|---|")?;
    for k in &sim.kernels {
        // FLOP per ns = TFLOP/s / 10^3; bytes per ns = GB/s.
        let ns = k.ns.max(1) as f64;
        writeln!(
            md,
            "| {} | {:.1} | {:.0} | {:.0} | {} |",
            k.kernel,
            k.ns as f64 / 1e3,
            k.flops / ns / 1e3,
            k.bytes / ns,
            k.source
        )?;
    }
    Ok(())
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}
