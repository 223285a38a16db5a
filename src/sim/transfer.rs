//! Bulk transfers between GPUs timed as flows on the cluster's links: expert weights moved by a
//! re-placement, weights copied peer to peer to GPUs joining an elastic group.

use super::config::LinkSettings;
use super::network::FlowNetwork;
use crate::topology::Cluster;

/// Time until the last of `transfers` (source GPU, destination GPU, bytes), all started
/// together, has landed: flows on `cluster`'s links sharing them max-min fairly, each landing
/// its route's latency after its last byte left. 0 for no transfers.
pub fn transfers_ns(
    cluster: &Cluster,
    links: &LinkSettings,
    transfers: &[(usize, usize, u64)],
) -> u64 {
    let mut network = FlowNetwork::new(links.capacities(cluster));
    let mut latency = Vec::new();
    let mut path = Vec::new();
    for &(from, to, bytes) in transfers.iter().filter(|t| t.0 != t.1 && t.2 > 0) {
        let route = cluster.route(from, to);
        path.clear();
        path.extend(route.links.iter().map(|l| l.index() as u32));
        let flow = network.start(0, &path, bytes) as usize;
        latency.resize(latency.len().max(flow + 1), 0);
        latency[flow] = route.latency_ns;
    }
    network.settle(0);
    let mut end = 0;
    let mut drained = Vec::new();
    while let Some(ns) = network.next_drain_ns() {
        drained.clear();
        network.drain_at(ns, &mut drained);
        for &flow in &drained {
            end = end.max(ns + latency[flow as usize]);
        }
        network.settle(ns);
    }
    end
}
