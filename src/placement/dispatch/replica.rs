//! Which replica of a replicated expert a (token, expert) pair goes to. Each rule is a plug-in
//! in [`REPLICAS`], chosen by `[dispatch] replica`.

use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry};
use crate::topology::Cluster;

/// Picks among an expert's replicas.
pub trait ReplicaChoice: Send + Sync + std::fmt::Debug {
    /// The GPU among `replicas` (never empty) that the pair of token `token`, which starts on
    /// GPU `src`, goes to; `gpu_pairs` counts the pairs each GPU computes so far in the layer.
    fn pick(
        &self,
        cluster: &Cluster,
        token: usize,
        src: usize,
        replicas: &[usize],
        gpu_pairs: &[f64],
    ) -> usize;

    /// How `pairs` expected pairs from GPU `src` split over `replicas` (aggregate loads, no token
    /// identities): pushes `(gpu, pairs)` onto `out`.
    fn split(
        &self,
        cluster: &Cluster,
        src: usize,
        replicas: &[usize],
        pairs: f64,
        gpu_pairs: &[f64],
        out: &mut Vec<(usize, f64)>,
    );
}

/// Every replica choice, by name.
pub static REPLICAS: Registry<dyn ReplicaChoice> = Registry {
    kind: "replica choice",
    entries: &[
        plugin_entry!(ReplicaChoice, SameNode),
        plugin_entry!(ReplicaChoice, Even),
        plugin_entry!(ReplicaChoice, LeastLoaded),
    ],
};

/// The name of the default replica choice.
pub const DEFAULT_REPLICA: &str = SameNode::NAME;

/// `candidates` of a pair, `t mod count` among them; loads split evenly over them.
fn pick_by_token(candidates: &[usize], token: usize) -> usize {
    candidates[token % candidates.len()]
}

fn split_evenly(candidates: &[usize], pairs: f64, out: &mut Vec<(usize, f64)>) {
    let share = pairs / candidates.len() as f64;
    out.extend(candidates.iter().map(|&gpu| (gpu, share)));
}

/// The replica on the token's own GPU if any, else those on its machine, else all of them, by
/// token among several (moesim's behaviour before the choice was a plug-in; the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SameNode;

impl SameNode {
    /// `src` itself if it holds a replica, else the replicas on `src`'s machine, else all.
    fn candidates(cluster: &Cluster, src: usize, replicas: &[usize], out: &mut Vec<usize>) {
        out.clear();
        if replicas.contains(&src) {
            out.push(src);
            return;
        }
        let machine = cluster.node_of(src);
        out.extend(
            replicas
                .iter()
                .copied()
                .filter(|&gpu| cluster.node_of(gpu) == machine),
        );
        if out.is_empty() {
            out.extend_from_slice(replicas);
        }
    }
}

impl ReplicaChoice for SameNode {
    fn pick(
        &self,
        cluster: &Cluster,
        token: usize,
        src: usize,
        replicas: &[usize],
        _: &[f64],
    ) -> usize {
        // As `candidates`, without building the list (this runs for every pair).
        if replicas.contains(&src) {
            return src;
        }
        let machine = cluster.node_of(src);
        let local = || {
            replicas
                .iter()
                .copied()
                .filter(|&g| cluster.node_of(g) == machine)
        };
        match local().count() {
            0 => pick_by_token(replicas, token),
            count => local().nth(token % count).expect("within the count"),
        }
    }

    fn split(
        &self,
        cluster: &Cluster,
        src: usize,
        replicas: &[usize],
        pairs: f64,
        _: &[f64],
        out: &mut Vec<(usize, f64)>,
    ) {
        let mut candidates = Vec::with_capacity(replicas.len());
        SameNode::candidates(cluster, src, replicas, &mut candidates);
        split_evenly(&candidates, pairs, out);
    }
}

impl Plugin for SameNode {
    const NAME: &'static str = "same-node";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(SameNode)
    }
}

/// All replicas alike, wherever the token is: `t mod replicas`; loads split evenly.
#[derive(Debug, Clone, Copy, Default)]
pub struct Even;

impl ReplicaChoice for Even {
    fn pick(&self, _: &Cluster, token: usize, _: usize, replicas: &[usize], _: &[f64]) -> usize {
        pick_by_token(replicas, token)
    }

    fn split(
        &self,
        _: &Cluster,
        _: usize,
        replicas: &[usize],
        pairs: f64,
        _: &[f64],
        out: &mut Vec<(usize, f64)>,
    ) {
        split_evenly(replicas, pairs, out);
    }
}

impl Plugin for Even {
    const NAME: &'static str = "even";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Even)
    }
}

/// The replica whose GPU computes the fewest pairs so far (the lowest GPU on a tie); loads fill
/// the least-loaded replicas' GPUs up to a common level (water-filling).
#[derive(Debug, Clone, Copy, Default)]
pub struct LeastLoaded;

impl ReplicaChoice for LeastLoaded {
    fn pick(
        &self,
        _: &Cluster,
        _: usize,
        _: usize,
        replicas: &[usize],
        gpu_pairs: &[f64],
    ) -> usize {
        replicas
            .iter()
            .copied()
            .min_by(|&a, &b| gpu_pairs[a].total_cmp(&gpu_pairs[b]).then(a.cmp(&b)))
            .expect("every expert has a replica")
    }

    fn split(
        &self,
        _: &Cluster,
        _: usize,
        replicas: &[usize],
        pairs: f64,
        gpu_pairs: &[f64],
        out: &mut Vec<(usize, f64)>,
    ) {
        let mut levels: Vec<f64> = replicas.iter().map(|&gpu| gpu_pairs[gpu]).collect();
        levels.sort_by(f64::total_cmp);
        // Raise the lowest `i + 1` GPUs together until the pairs run out or they reach the next.
        let (mut level, mut left) = (levels[0], pairs);
        for i in 0..levels.len() {
            let width = (i + 1) as f64;
            let next = levels.get(i + 1).copied().unwrap_or(f64::INFINITY);
            let room = (next - level) * width;
            if room >= left {
                level += left / width;
                break;
            }
            left -= room;
            level = next;
        }
        out.extend(replicas.iter().filter_map(|&gpu| {
            let share = level - gpu_pairs[gpu];
            (share > 0.0).then_some((gpu, share))
        }));
    }
}

impl Plugin for LeastLoaded {
    const NAME: &'static str = "least-loaded";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(LeastLoaded)
    }
}
