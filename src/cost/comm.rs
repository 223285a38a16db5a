//! All-to-all time on a cluster: every GPU pair's bytes follow the pair's route, links shared
//! by several routes carry the sum, and the collective lasts as long as its busiest link needs
//! plus the longest route latency among the pairs that send anything.
//!
//! This is the "bytes over the bottleneck link of each path" model generalised to link sharing.
//! It assumes perfect pipelining and fair sharing (each link busy the whole time), so it is a
//! lower bound the discrete-event simulator refines. On an NVSwitch machine the busiest links
//! are the GPUs' NVLink ports, so a uniform all-to-all of B bytes per pair on 8 GPUs takes
//! 7 B / port bandwidth plus one route latency.

use crate::error::{Error, Result};
use crate::topology::{Cluster, LinkId};

/// Bytes each GPU sends each GPU in one collective; the diagonal (a GPU to itself) costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficMatrix {
    num_gpus: usize,
    /// Row-major: `bytes[src * num_gpus + dst]`; empty until bytes are first added, so that
    /// a matrix that stays empty (no tensor parallelism) costs nothing per GPU pair.
    bytes: Vec<u64>,
}

impl TrafficMatrix {
    /// No traffic between `num_gpus` GPUs.
    pub fn zeros(num_gpus: usize) -> TrafficMatrix {
        TrafficMatrix {
            num_gpus,
            bytes: Vec::new(),
        }
    }

    /// Number of GPUs.
    pub fn num_gpus(&self) -> usize {
        self.num_gpus
    }

    /// Bytes from `src` to `dst`.
    pub fn get(&self, src: usize, dst: usize) -> u64 {
        assert!(
            src < self.num_gpus && dst < self.num_gpus,
            "GPU out of range"
        );
        self.bytes
            .get(src * self.num_gpus + dst)
            .copied()
            .unwrap_or(0)
    }

    /// Adds `bytes` from `src` to `dst`.
    pub fn add(&mut self, src: usize, dst: usize, bytes: u64) {
        assert!(
            src < self.num_gpus && dst < self.num_gpus,
            "GPU out of range"
        );
        if bytes == 0 {
            return;
        }
        if self.bytes.is_empty() {
            self.bytes = vec![0; self.num_gpus * self.num_gpus];
        }
        self.bytes[src * self.num_gpus + dst] += bytes;
    }

    /// Bytes sent between distinct GPUs.
    pub fn off_diagonal_bytes(&self) -> u64 {
        self.pairs().map(|(_, _, b)| b).sum()
    }

    /// Every `(src, dst, bytes)` with `src != dst` and bytes > 0, row by row.
    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize, u64)> + '_ {
        let n = self.num_gpus;
        self.bytes
            .iter()
            .enumerate()
            .filter(move |&(i, &b)| b > 0 && i / n != i % n)
            .map(move |(i, &b)| (i / n, i % n, b))
    }
}

/// The cost of one collective and where its bytes went.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectiveCost {
    /// `transfer_ns + latency_ns`.
    pub time_ns: u64,
    /// The busiest link's bytes over its bandwidth, rounded up.
    pub transfer_ns: u64,
    /// The longest route latency among pairs that send bytes.
    pub latency_ns: u64,
    /// The busiest link (the first such in id order); `None` when nothing crosses a link.
    pub bottleneck: Option<LinkId>,
    /// Bytes crossing each link, indexed by [`LinkId::index`].
    pub link_bytes: Vec<u64>,
    /// Bytes between GPUs of the same machine.
    pub intra_node_bytes: u64,
    /// Bytes between GPUs of different machines.
    pub inter_node_bytes: u64,
}

/// Prices the all-to-all `traffic` on `cluster` (see the module docs).
pub fn all_to_all(cluster: &Cluster, traffic: &TrafficMatrix) -> Result<CollectiveCost> {
    if traffic.num_gpus() != cluster.num_gpus() {
        return Err(Error::invalid(format!(
            "traffic between {} GPUs on cluster `{}` of {} GPUs",
            traffic.num_gpus(),
            cluster.name(),
            cluster.num_gpus()
        )));
    }
    let mut link_bytes = vec![0u64; cluster.num_links()];
    let (mut intra_node_bytes, mut inter_node_bytes, mut latency_ns) = (0, 0, 0);
    for (src, dst, bytes) in traffic.pairs() {
        let route = cluster.route(src, dst);
        for link in &route.links {
            link_bytes[link.index()] += bytes;
        }
        latency_ns = latency_ns.max(route.latency_ns);
        if cluster.node_of(src) == cluster.node_of(dst) {
            intra_node_bytes += bytes;
        } else {
            inter_node_bytes += bytes;
        }
    }
    let mut bottleneck = None;
    let mut busiest_ns = 0.0;
    for (id, link) in cluster.links() {
        let busy_ns = link_bytes[id.index()] as f64 / link.bandwidth_gbps;
        if busy_ns > busiest_ns {
            busiest_ns = busy_ns;
            bottleneck = Some(id);
        }
    }
    let transfer_ns = busiest_ns.ceil() as u64;
    Ok(CollectiveCost {
        time_ns: transfer_ns + latency_ns,
        transfer_ns,
        latency_ns,
        bottleneck,
        link_bytes,
        intra_node_bytes,
        inter_node_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::LinkKind;

    #[test]
    fn one_gigabyte_over_a_50_gbps_nic_takes_20_ms_plus_latency() {
        let cluster = Cluster::preset("hgx-h800x2").unwrap();
        let mut traffic = TrafficMatrix::zeros(16);
        traffic.add(0, 8, 1_000_000_000);
        let cost = all_to_all(&cluster, &traffic).unwrap();
        // 10^9 B / 50 B/ns = 2 x 10^7 ns; same-rail route latency 2800 ns.
        assert_eq!(cost.transfer_ns, 20_000_000);
        assert_eq!(cost.time_ns, 20_002_800);
        let bottleneck = cluster.link(cost.bottleneck.unwrap());
        assert_eq!(
            (bottleneck.kind, bottleneck.name.as_str()),
            (LinkKind::Network, "n0/nic0->leaf0")
        );
        assert_eq!(
            (cost.intra_node_bytes, cost.inter_node_bytes),
            (0, 1_000_000_000)
        );
        // Six links on the route carry the gigabyte, no other link anything.
        assert_eq!(
            cost.link_bytes
                .iter()
                .filter(|&&b| b == 1_000_000_000)
                .count(),
            6
        );
        assert_eq!(cost.link_bytes.iter().sum::<u64>(), 6_000_000_000);
    }

    #[test]
    fn uniform_all_to_all_on_dgx_h100_is_bound_by_each_nvlink_port() {
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let per_pair = 450_000_000;
        let mut traffic = TrafficMatrix::zeros(8);
        for src in 0..8 {
            for dst in 0..8 {
                traffic.add(src, dst, per_pair);
            }
        }
        let cost = all_to_all(&cluster, &traffic).unwrap();
        // Each GPU's egress port carries 7 x B: 3.15 x 10^9 B / 450 B/ns = 7 x 10^6 ns, plus
        // the 1 us GPU -> NVSwitch -> GPU latency. The diagonal costs nothing.
        assert_eq!(cost.time_ns, 7_000_000 + 1000);
        assert_eq!(cost.intra_node_bytes, 56 * per_pair);
        assert_eq!(traffic.off_diagonal_bytes(), 56 * per_pair);
        let port = cluster.link(cost.bottleneck.unwrap());
        assert_eq!(port.name, "n0/gpu0->n0/nvswitch");
    }

    #[test]
    fn shared_links_add_up() {
        // GPUs 0 and 1 both send to GPU 2: GPU 2's ingress port carries both.
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let mut traffic = TrafficMatrix::zeros(8);
        traffic.add(0, 2, 900);
        traffic.add(1, 2, 450);
        let cost = all_to_all(&cluster, &traffic).unwrap();
        // 1350 B / 450 B/ns = 3 ns.
        assert_eq!((cost.transfer_ns, cost.time_ns), (3, 1003));
        assert_eq!(
            cluster.link(cost.bottleneck.unwrap()).name,
            "n0/nvswitch->n0/gpu2"
        );
    }

    #[test]
    fn empty_traffic_is_free_and_size_mismatch_is_an_error() {
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let mut local = TrafficMatrix::zeros(8);
        local.add(3, 3, 1_000);
        let cost = all_to_all(&cluster, &local).unwrap();
        assert_eq!((cost.time_ns, cost.bottleneck), (0, None));
        let err = all_to_all(&cluster, &TrafficMatrix::zeros(4)).unwrap_err();
        assert!(err.to_string().contains("traffic between 4 GPUs"), "{err}");
    }
}
