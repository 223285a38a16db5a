//! Which links can ever limit a flow, so the max-min computation can leave the others out.
//!
//! A link `A` never limits anything when every route through it also crosses a narrower link
//! and those narrower links together cannot carry more than `A` can: the traffic through `A` is
//! then bounded by their capacities before `A` fills. In a rail-optimised cluster this drops
//! the PCIe hop behind each NIC and the spine links (eight 50 GB/s NICs feed a 400 GB/s uplink),
//! leaving a typical GPU-to-GPU flow two links to share (the sending and the receiving port)
//! instead of six to eight: the fair shares are the same and the work per re-division is a
//! third.
//!
//! On each side of `A` (upstream, downstream) every route through `A` contributes the nearest
//! link narrower than `A` as a feeder, narrower meaning smaller in (capacity, link index); `A`
//! is excused when, on one side, every route has a feeder and the distinct feeders together
//! carry no more than `A`. Because a feeder is always smaller in that order, no two links can
//! excuse each other, and the narrowest link of every route always binds.

use crate::topology::Cluster;

/// Per GPU pair (`src * gpus + dst`), the links of its route that can limit a flow, in route
/// order; `capacity_gbps` is each link's usable bandwidth, by link index.
pub fn binding_routes(cluster: &Cluster, capacity_gbps: &[f64]) -> Vec<Vec<u32>> {
    let binding = binding_links(cluster, capacity_gbps);
    let gpus = cluster.num_gpus();
    (0..gpus * gpus)
        .map(|pair| {
            let route = cluster.route(pair / gpus, pair % gpus);
            route
                .links
                .iter()
                .map(|l| l.0)
                .filter(|&l| binding[l as usize])
                .collect()
        })
        .collect()
}

/// Per link, whether it can limit a flow (see the module docs).
fn binding_links(cluster: &Cluster, capacity_gbps: &[f64]) -> Vec<bool> {
    let narrower = |a: u32, b: u32| {
        let (ca, cb) = (capacity_gbps[a as usize], capacity_gbps[b as usize]);
        ca < cb || (ca == cb && a < b)
    };
    // Per link, the feeders found upstream and downstream, or `None` once a route through the
    // link had no narrower link on that side.
    let mut upstream: Vec<Option<Vec<u32>>> = vec![Some(Vec::new()); capacity_gbps.len()];
    let mut downstream = upstream.clone();
    let gpus = cluster.num_gpus();
    for pair in 0..gpus * gpus {
        let links: Vec<u32> = cluster
            .route(pair / gpus, pair % gpus)
            .links
            .iter()
            .map(|l| l.0)
            .collect();
        for (at, &link) in links.iter().enumerate() {
            let before = links[..at].iter().rev().find(|&&l| narrower(l, link));
            let after = links[at + 1..].iter().find(|&&l| narrower(l, link));
            for (side, feeder) in [(&mut upstream, before), (&mut downstream, after)] {
                let slot = &mut side[link as usize];
                match (slot.as_mut(), feeder) {
                    (Some(feeders), Some(&f)) => feeders.push(f),
                    _ => *slot = None,
                }
            }
        }
    }
    let bounded = |feeders: &mut Option<Vec<u32>>, link: usize| {
        feeders.as_mut().is_some_and(|feeders| {
            feeders.sort_unstable();
            feeders.dedup();
            let fed_gbps: f64 = feeders.iter().map(|&f| capacity_gbps[f as usize]).sum();
            !feeders.is_empty() && fed_gbps <= capacity_gbps[link]
        })
    };
    (0..capacity_gbps.len())
        .map(|link| !(bounded(&mut upstream[link], link) || bounded(&mut downstream[link], link)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::LinkId;

    fn capacities(cluster: &Cluster) -> Vec<f64> {
        cluster.links().map(|(_, l)| l.bandwidth_gbps).collect()
    }

    #[test]
    fn an_nvswitch_flow_keeps_both_of_its_ports() {
        // GPU -> NVSwitch -> GPU: two equal 450 GB/s ports, each fed by seven others.
        let cluster = Cluster::preset("dgx-h100").unwrap();
        let routes = binding_routes(&cluster, &capacities(&cluster));
        let route: Vec<u32> = cluster.route(0, 1).links.iter().map(|l| l.0).collect();
        assert_eq!(routes[1], route);
        assert!(routes[0].is_empty());
    }

    #[test]
    fn a_rail_flow_keeps_only_the_nic_ports() {
        // H800 x2, GPU 0 -> GPU 9 (other machine, other rail): of the route's links only the
        // two 50 GB/s NIC cables can fill; PCIe (64 GB/s) and the spine (8 x 50 = 400 GB/s
        // uplinks) are bounded by them.
        let cluster = Cluster::preset("hgx-h800x2").unwrap();
        let routes = binding_routes(&cluster, &capacities(&cluster));
        let route = &cluster.route(0, 9).links;
        let kept: Vec<&str> = routes[9]
            .iter()
            .map(|&l| cluster.link(LinkId(l)).name.as_str())
            .collect();
        assert!(route.len() > kept.len(), "{kept:?}");
        assert_eq!(kept.len(), 2, "{kept:?}");
        for name in kept {
            assert!(name.contains("nic"), "{name}");
        }
    }
}
