//! All-pairs GPU routes: per source GPU one Dijkstra run, then each destination's path read back
//! from the distances.
//!
//! A path's cost is, in order of precedence:
//! 1. the time a reference message of [`REFERENCE_BYTES`] takes if every link is crossed in turn
//!    (each link's latency plus the message size over its bandwidth). Pure latency would send
//!    traffic between two GPUs on one PCIe switch over PCIe rather than over a 10x faster NVLink
//!    whose fixed latency is slightly higher; the reference message keeps the choice in line with
//!    what NCCL and DeepEP do;
//! 2. fewer links;
//! 3. fewer links touching a NIC of another rail than the source GPU's (when GPUs share a PCIe
//!    switch, each uses its own NIC, as NCCL assigns them, instead of all piling onto one).
//!
//! Paths never pass through a GPU other than their source (GPUs are endpoints). Remaining ties go
//! to the links created first, so the same cluster always yields the same routes; multipath /
//! ECMP spreading is not modelled.

use petgraph::Direction;
use petgraph::algo::dijkstra;
use petgraph::graph::{DiGraph, EdgeIndex, EdgeReference, NodeIndex};
use petgraph::visit::{EdgeFiltered, EdgeRef};
use rayon::prelude::*;

use super::{Link, LinkId, Node, NodeKind, Route};
use crate::error::{Error, Result};

/// Size of the message whose transfer time ranks paths: a typical all-to-all chunk (about nine
/// DeepSeek-V3 tokens of 7 KiB).
const REFERENCE_BYTES: f64 = 65536.0;

/// Weight of one ns of reference-message time in the integer path cost.
const TIME_WEIGHT: u64 = 1 << 20;
/// Weight of one link in the path cost (below any time difference).
const HOP_WEIGHT: u64 = 1 << 8;
/// Weight of one off-rail NIC link (below any hop difference).
const OFF_RAIL_WEIGHT: u64 = 1;

/// Routes between every ordered GPU pair, `routes[src * n + dst]` (sources in parallel), over
/// the links not marked in `failed` (indexed by link id; empty: none failed).
pub(super) fn all_pairs(
    graph: &DiGraph<Node, Link>,
    gpus: &[NodeIndex],
    failed: &[bool],
) -> Result<Vec<Route>> {
    let costs = LinkCosts::new(graph);
    let per_source = gpus
        .par_iter()
        .map(|&src| {
            let from_src = FromSource {
                graph,
                costs: &costs,
                src,
                rail: graph[src].index,
                failed,
            };
            let usable = EdgeFiltered::from_fn(graph, |e: EdgeReference<Link>| from_src.usable(&e));
            let mut cost = vec![None; graph.node_count()];
            for (node, c) in dijkstra(&usable, src, None, |e| from_src.link_cost(e.id())) {
                cost[node.index()] = Some(c);
            }
            gpus.iter()
                .map(|&dst| from_src.read_back(&cost, dst))
                .collect::<Result<Vec<Route>>>()
        })
        .collect::<Result<Vec<Vec<Route>>>>()?;
    Ok(per_source.into_iter().flatten().collect())
}

/// The source-independent parts of every link's cost.
struct LinkCosts {
    /// Reference-message time and hop weight, per link.
    base: Vec<u64>,
    /// The rail of the NIC a link touches, if it touches one.
    nic_rail: Vec<Option<usize>>,
}

impl LinkCosts {
    /// Precomputes the costs of every link of `graph`.
    fn new(graph: &DiGraph<Node, Link>) -> LinkCosts {
        let links = || graph.edge_indices().map(|e| &graph[e]);
        LinkCosts {
            base: links()
                .map(|link| {
                    let transfer_ns = (REFERENCE_BYTES / link.bandwidth_gbps).ceil() as u64;
                    (link.latency_ns + transfer_ns) * TIME_WEIGHT + HOP_WEIGHT
                })
                .collect(),
            nic_rail: links()
                .map(|link| {
                    [link.from, link.to]
                        .into_iter()
                        .map(|n| &graph[NodeIndex::new(n)])
                        .find(|node| node.kind == NodeKind::Nic)
                        .map(|nic| nic.index)
                })
                .collect(),
        }
    }
}

/// Path costs as seen from one source GPU.
struct FromSource<'a> {
    graph: &'a DiGraph<Node, Link>,
    costs: &'a LinkCosts,
    src: NodeIndex,
    /// The source GPU's index in its machine: the rail of its own NIC.
    rail: usize,
    /// Per link id, whether it has failed (empty: none).
    failed: &'a [bool],
}

impl FromSource<'_> {
    /// Whether a path may continue out of `node`: any node but a GPU other than the source.
    fn may_leave(&self, node: NodeIndex) -> bool {
        node == self.src || self.graph[node].kind != NodeKind::Gpu
    }

    /// Whether a path may take link `e`: it has not failed and leaves a node paths may leave.
    fn usable(&self, e: &EdgeReference<Link>) -> bool {
        !self.failed.get(e.id().index()).copied().unwrap_or(false) && self.may_leave(e.source())
    }

    /// The integer Dijkstra cost of one link (see the module docs); at least 1, so walking back
    /// along tight links always terminates.
    fn link_cost(&self, link: EdgeIndex) -> u64 {
        let off_rail = self.costs.nic_rail[link.index()].is_some_and(|rail| rail != self.rail);
        self.costs.base[link.index()] + if off_rail { OFF_RAIL_WEIGHT } else { 0 }
    }

    /// The path to `dst`: from `dst` back to the source, each step taking the first-created
    /// usable link that is tight (its source's cost plus its own equals its target's cost).
    fn read_back(&self, cost: &[Option<u64>], dst: NodeIndex) -> Result<Route> {
        let graph = self.graph;
        let unreachable = || {
            Error::invalid(format!(
                "no path from {} to {}",
                graph[self.src].name, graph[dst].name
            ))
        };
        let mut links = Vec::new();
        let mut node = dst;
        while node != self.src {
            let here = cost[node.index()].ok_or_else(unreachable)?;
            let step = graph
                .edges_directed(node, Direction::Incoming)
                .filter(|e| self.usable(e))
                .filter(|e| {
                    cost[e.source().index()].map(|c| c + self.link_cost(e.id())) == Some(here)
                })
                .min_by_key(|e| e.id())
                .ok_or_else(unreachable)?;
            links.push(LinkId(step.id().index() as u32));
            node = step.source();
        }
        links.reverse();
        let on_path = || links.iter().map(|l| &graph[EdgeIndex::new(l.index())]);
        Ok(Route {
            latency_ns: on_path().map(|l| l.latency_ns).sum(),
            bottleneck_gbps: on_path()
                .map(|l| l.bandwidth_gbps)
                .fold(f64::INFINITY, f64::min),
            links,
        })
    }
}
