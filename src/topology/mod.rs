//! The cluster as a graph: GPUs, NVSwitches, PCIe switches, hosts, NICs and network switches
//! joined by directed links (one per direction) with a bandwidth and a latency.
//!
//! A [`Cluster`] is built from a [`ClusterSpec`] (a preset such as `dgx-h100` or `hgx-h800x4`,
//! or a TOML file, see [`custom`]). Construction precomputes the route between every pair of GPUs
//! (the lowest-latency path; GPUs are endpoints, never transit), so [`Cluster::route`] is an O(1)
//! lookup on the cost models' hot paths.

mod build;
pub mod custom;
pub mod device;
mod presets;
mod routing;
pub mod spec;

use std::path::Path;

use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

pub use device::{DataType, GpuSpec};
pub use spec::{ClusterSpec, NetworkSpec, NvLinkSpec, PcieSpec};

use crate::error::{Error, Result};

/// What a graph node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A GPU (an endpoint of routes).
    Gpu,
    /// A machine's NVSwitch fabric, modelled as one non-blocking crossbar.
    NvSwitch,
    /// A PCIe switch.
    PcieSwitch,
    /// A host CPU's root complex joining PCIe switches.
    Host,
    /// A network card.
    Nic,
    /// A leaf (rail) network switch.
    LeafSwitch,
    /// The spine layer joining the leaves.
    SpineSwitch,
}

/// A graph node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it is.
    pub kind: NodeKind,
    /// Unique name, e.g. `n1/gpu3`, `n0/nvswitch`, `leaf2`.
    pub name: String,
    /// Position among the nodes of its kind in its machine (GPU `i`, NIC `i`, PCIe switch `s`);
    /// for leaf switches the rail number.
    pub index: usize,
    /// The machine it belongs to; `None` for network switches.
    pub machine: Option<usize>,
}

/// The technology of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// NVLink between a GPU and an NVSwitch.
    NvLink,
    /// A PCIe link.
    Pcie,
    /// A network cable (NIC to leaf, leaf to spine).
    Network,
}

/// Index of a directed link in its [`Cluster`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u32);

impl LinkId {
    /// The index as `usize`, for per-link arrays of length [`Cluster::num_links`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A directed link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Source node id (see [`Cluster::node`]).
    pub from: usize,
    /// Destination node id.
    pub to: usize,
    /// Technology.
    pub kind: LinkKind,
    /// Bandwidth in this direction, GB/s (10^9 bytes/s, so bytes / bandwidth_gbps = ns).
    pub bandwidth_gbps: f64,
    /// One-way latency.
    pub latency_ns: u64,
    /// `from-name->to-name`.
    pub name: String,
}

/// The path between two GPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Links in path order; empty from a GPU to itself.
    pub links: Vec<LinkId>,
    /// Sum of the links' latencies.
    pub latency_ns: u64,
    /// The smallest link bandwidth on the path; infinite for the empty route.
    pub bottleneck_gbps: f64,
}

/// A cluster: the link graph plus the precomputed GPU-to-GPU routes.
#[derive(Debug, Clone)]
pub struct Cluster {
    spec: ClusterSpec,
    graph: DiGraph<Node, Link>,
    /// Graph node of each GPU, in GPU order (machine-major).
    gpu_nodes: Vec<NodeIndex>,
    /// `routes[src * num_gpus + dst]`.
    routes: Vec<Route>,
}

impl Cluster {
    /// Builds the cluster described by `spec` and precomputes all GPU-to-GPU routes.
    pub fn from_spec(spec: ClusterSpec) -> Result<Cluster> {
        spec.validate()?;
        let (graph, gpu_nodes) = build::graph(&spec);
        let routes = routing::all_pairs(&graph, &gpu_nodes, &[])?;
        Ok(Cluster {
            spec,
            graph,
            gpu_nodes,
            routes,
        })
    }

    /// A built-in cluster: `dgx-h100`, `hgx-h800`, `hgx-h200`, `gb200-nvl72`, `pcie-l40s`, the
    /// single-GPU workstations of expert offloading `rtx4090-host`, `l40s-host`, `h100-host`,
    /// each optionally suffixed `xN` for N machines on a rail-optimised network (`hgx-h800x4` is
    /// 32 GPUs).
    pub fn preset(name: &str) -> Result<Cluster> {
        Cluster::from_spec(presets::spec(name)?)
    }

    /// The built-in cluster `name` (without `xN`) replicated over `nodes` machines.
    pub fn preset_with_nodes(name: &str, nodes: usize) -> Result<Cluster> {
        Cluster::from_spec(presets::spec_with_nodes(name, nodes)?)
    }

    /// Base names accepted by [`Cluster::preset`] (append `xN` for N machines).
    pub fn preset_names() -> &'static [&'static str] {
        presets::NAMES
    }

    /// Reads a custom cluster from a TOML file (schema in [`custom`]).
    pub fn from_toml(path: &Path) -> Result<Cluster> {
        let spec = custom::read_spec(path)?;
        Cluster::from_spec(spec).map_err(|e| Error::bad_file(path, e.to_string()))
    }

    /// A preset name or a path to a `.toml` cluster file.
    pub fn resolve(spec: &str) -> Result<Cluster> {
        let path = Path::new(spec);
        if spec.ends_with(".toml") || path.is_file() {
            Cluster::from_toml(path)
        } else {
            Cluster::preset(spec)
        }
    }

    /// The cluster of its first `gpus` GPUs in cluster order (machine-major): the machines
    /// they fill, as a cluster of their own (same GPUs, NVLink and PCIe; the scale-out network
    /// those machines would have alone). This is where an expert-parallel group of `gpus` GPUs
    /// runs. `gpus` must fit in one machine or fill whole machines; the error names `gpus`
    /// otherwise.
    pub fn first_gpus(&self, gpus: usize) -> Result<Cluster> {
        let per_node = self.gpus_per_node();
        if gpus == self.num_gpus() {
            return Ok(self.clone());
        }
        let mut spec = self.spec.clone();
        if gpus == 0
            || gpus > self.num_gpus()
            || (gpus > per_node && !gpus.is_multiple_of(per_node))
        {
            return Err(Error::invalid(format!(
                "`gpus` = {gpus}: cluster `{}` has {} GPUs, {per_node} per machine; the \
                 expert-parallel group must fit in one machine or fill whole machines",
                self.name(),
                self.num_gpus()
            )));
        }
        if gpus < per_node {
            spec.nodes = 1;
            spec.gpus_per_node = gpus;
            spec.pcie.gpus_per_switch = spec.pcie.gpus_per_switch.min(gpus);
        } else {
            spec.nodes = gpus / per_node;
        }
        spec.name = format!("{} (first {gpus} GPUs)", spec.name);
        Cluster::from_spec(spec)
    }

    /// The links of component `name`: a graph node's name (`n0/nic3`, `leaf2`, `n1/nvswitch`)
    /// gives every link into or out of it; a link's name (`n0/nic3->leaf3`) gives the cable,
    /// that link and its reverse. `None` when the cluster has no such component.
    pub fn component_links(&self, name: &str) -> Option<Vec<LinkId>> {
        let of_node = |node: usize| self.graph[NodeIndex::new(node)].name.as_str();
        let links: Vec<LinkId> = self
            .links()
            .filter(|(_, link)| match name.split_once("->") {
                Some((a, b)) => {
                    (of_node(link.from), of_node(link.to)) == (a, b)
                        || (of_node(link.from), of_node(link.to)) == (b, a)
                }
                None => of_node(link.from) == name || of_node(link.to) == name,
            })
            .map(|(id, _)| id)
            .collect();
        (!links.is_empty()).then_some(links)
    }

    /// The same cluster with links `failed` out of service: every GPU-to-GPU route is
    /// recomputed around them (another NIC on the GPU's PCIe switch, another rail); link ids
    /// stay the same. The error names the first GPU pair left without a path.
    pub fn with_failed_links(&self, failed: &[LinkId]) -> Result<Cluster> {
        let mut mask = vec![false; self.num_links()];
        for link in failed {
            mask[link.index()] = true;
        }
        Ok(Cluster {
            routes: routing::all_pairs(&self.graph, &self.gpu_nodes, &mask)?,
            ..self.clone()
        })
    }

    /// The parameters the cluster was built from.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.gpu_nodes.len()
    }

    /// Number of machines (NVLink / PCIe domains joined by the network).
    pub fn num_nodes(&self) -> usize {
        self.spec.nodes
    }

    /// GPUs per machine.
    pub fn gpus_per_node(&self) -> usize {
        self.spec.gpus_per_node
    }

    /// The machine GPU `gpu` sits in (GPUs are numbered machine by machine).
    pub fn node_of(&self, gpu: usize) -> usize {
        gpu / self.spec.gpus_per_node
    }

    /// The specification of GPU `gpu` (clusters are homogeneous today).
    pub fn gpu_spec(&self, _gpu: usize) -> &GpuSpec {
        &self.spec.gpu
    }

    /// The precomputed route from `src_gpu` to `dst_gpu`.
    pub fn route(&self, src_gpu: usize, dst_gpu: usize) -> &Route {
        &self.routes[src_gpu * self.num_gpus() + dst_gpu]
    }

    /// The path host memory takes to GPU `gpu`: the PCIe links from its machine's host root
    /// complex down through the GPU's PCIe switch to the GPU (on a machine with a single PCIe
    /// switch the switch stands for the root complex, so the path is the GPU's own PCIe link).
    /// Expert offloading fetches weights over it.
    pub fn host_route(&self, gpu: usize) -> Route {
        let pcie_into = |node: NodeIndex, from: NodeKind| {
            self.graph
                .edges_directed(node, petgraph::Direction::Incoming)
                .find(|e| e.weight().kind == LinkKind::Pcie && self.graph[e.source()].kind == from)
        };
        let mut links = Vec::new();
        if let Some(down) = pcie_into(self.gpu_nodes[gpu], NodeKind::PcieSwitch) {
            links.extend(pcie_into(down.source(), NodeKind::Host).map(|e| e.id()));
            links.push(down.id());
        }
        let links: Vec<LinkId> = links.iter().map(|e| LinkId(e.index() as u32)).collect();
        Route {
            latency_ns: links.iter().map(|&l| self.link(l).latency_ns).sum(),
            bottleneck_gbps: links
                .iter()
                .map(|&l| self.link(l).bandwidth_gbps)
                .fold(f64::INFINITY, f64::min),
            links,
        }
    }

    /// The link with id `id`.
    pub fn link(&self, id: LinkId) -> &Link {
        &self.graph[EdgeIndex::new(id.index())]
    }

    /// Number of directed links; link ids run from 0 to this.
    pub fn num_links(&self) -> usize {
        self.graph.edge_count()
    }

    /// All links with their ids, in id order.
    pub fn links(&self) -> impl Iterator<Item = (LinkId, &Link)> {
        self.graph
            .edge_indices()
            .map(|e| (LinkId(e.index() as u32), &self.graph[e]))
    }

    /// The node with id `id` (as in [`Link::from`]).
    pub fn node(&self, id: usize) -> &Node {
        &self.graph[NodeIndex::new(id)]
    }

    /// Number of graph nodes.
    pub fn num_graph_nodes(&self) -> usize {
        self.graph.node_count()
    }
}

#[cfg(test)]
mod tests;
