//! Turning a [`ClusterSpec`] into the link graph (shape described in [`super::spec`]).

use petgraph::graph::{DiGraph, NodeIndex};

use super::spec::ClusterSpec;
use super::{Link, LinkKind, Node, NodeKind};

/// The link graph of `spec` and the graph node of every GPU, machine by machine.
pub(super) fn graph(spec: &ClusterSpec) -> (DiGraph<Node, Link>, Vec<NodeIndex>) {
    let mut builder = Builder {
        graph: DiGraph::new(),
    };
    let rails = if spec.nodes > 1 {
        builder.rails(spec)
    } else {
        Vec::new()
    };
    let gpus = (0..spec.nodes)
        .flat_map(|machine| builder.machine(spec, machine, &rails))
        .collect();
    (builder.graph, gpus)
}

/// Adds nodes and duplex links to a graph under construction.
struct Builder {
    graph: DiGraph<Node, Link>,
}

impl Builder {
    /// One leaf switch per rail (GPU index inside a machine), joined by the spine when there is
    /// more than one rail. The spine link of a leaf carries its whole downlink capacity
    /// (`nodes` NICs) divided by the oversubscription ratio.
    fn rails(&mut self, spec: &ClusterSpec) -> Vec<NodeIndex> {
        let network = &spec.network;
        let leaves: Vec<NodeIndex> = (0..spec.gpus_per_node)
            .map(|rail| self.node(NodeKind::LeafSwitch, format!("leaf{rail}"), rail, None))
            .collect();
        if leaves.len() > 1 {
            let spine = self.node(NodeKind::SpineSwitch, "spine".to_string(), 0, None);
            let uplink_gbps = spec.nodes as f64 * network.nic_gbps / network.oversubscription;
            for &leaf in &leaves {
                self.duplex(
                    leaf,
                    spine,
                    LinkKind::Network,
                    uplink_gbps,
                    network.spine_latency_ns,
                );
            }
        }
        leaves
    }

    /// The GPUs, NVSwitch, PCIe switches, host and NICs of machine `machine`; returns its GPUs.
    fn machine(
        &mut self,
        spec: &ClusterSpec,
        machine: usize,
        rails: &[NodeIndex],
    ) -> Vec<NodeIndex> {
        let inside = Some(machine);
        let gpus: Vec<NodeIndex> = (0..spec.gpus_per_node)
            .map(|i| self.node(NodeKind::Gpu, format!("n{machine}/gpu{i}"), i, inside))
            .collect();
        if let Some(nvlink) = &spec.nvlink {
            let nvswitch = self.node(
                NodeKind::NvSwitch,
                format!("n{machine}/nvswitch"),
                0,
                inside,
            );
            for &gpu in &gpus {
                self.duplex(
                    gpu,
                    nvswitch,
                    LinkKind::NvLink,
                    nvlink.gbps,
                    nvlink.latency_ns,
                );
            }
        }
        let pcie = &spec.pcie;
        let switches: Vec<NodeIndex> = (0..spec.gpus_per_node.div_ceil(pcie.gpus_per_switch))
            .map(|s| {
                self.node(
                    NodeKind::PcieSwitch,
                    format!("n{machine}/pcie{s}"),
                    s,
                    inside,
                )
            })
            .collect();
        if switches.len() > 1 {
            let host = self.node(NodeKind::Host, format!("n{machine}/host"), 0, inside);
            for &switch in &switches {
                self.duplex(switch, host, LinkKind::Pcie, pcie.gbps, pcie.latency_ns);
            }
        }
        for (i, &gpu) in gpus.iter().enumerate() {
            let switch = switches[i / pcie.gpus_per_switch];
            self.duplex(gpu, switch, LinkKind::Pcie, pcie.gbps, pcie.latency_ns);
            if let Some(&leaf) = rails.get(i) {
                let nic = self.node(NodeKind::Nic, format!("n{machine}/nic{i}"), i, inside);
                self.duplex(switch, nic, LinkKind::Pcie, pcie.gbps, pcie.latency_ns);
                let network = &spec.network;
                self.duplex(
                    nic,
                    leaf,
                    LinkKind::Network,
                    network.nic_gbps,
                    network.nic_latency_ns,
                );
            }
        }
        gpus
    }

    /// Adds a node.
    fn node(
        &mut self,
        kind: NodeKind,
        name: String,
        index: usize,
        machine: Option<usize>,
    ) -> NodeIndex {
        self.graph.add_node(Node {
            kind,
            name,
            index,
            machine,
        })
    }

    /// Adds one link in each direction between `a` and `b`, `a -> b` first.
    fn duplex(
        &mut self,
        a: NodeIndex,
        b: NodeIndex,
        kind: LinkKind,
        bandwidth_gbps: f64,
        latency_ns: u64,
    ) {
        for (from, to) in [(a, b), (b, a)] {
            let name = format!("{}->{}", self.graph[from].name, self.graph[to].name);
            self.graph.add_edge(
                from,
                to,
                Link {
                    from: from.index(),
                    to: to.index(),
                    kind,
                    bandwidth_gbps,
                    latency_ns,
                    name,
                },
            );
        }
    }
}
