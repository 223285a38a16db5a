use std::path::{Path, PathBuf};

use super::*;

/// Kinds of the links on `route`.
fn kinds(cluster: &Cluster, route: &Route) -> Vec<LinkKind> {
    route.links.iter().map(|&l| cluster.link(l).kind).collect()
}

/// Names of the nodes `route` passes through, source and destination included.
fn hops(cluster: &Cluster, route: &Route) -> Vec<String> {
    let mut names = vec![cluster.node(cluster.link(route.links[0]).from).name.clone()];
    names.extend(
        route
            .links
            .iter()
            .map(|&l| cluster.node(cluster.link(l).to).name.clone()),
    );
    names
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clusters")
        .join(name)
}

#[test]
fn dgx_h100_routes_through_the_nvswitch() {
    let c = Cluster::preset("dgx-h100").unwrap();
    assert_eq!((c.num_gpus(), c.num_nodes()), (8, 1));
    let route = c.route(2, 5);
    assert_eq!(hops(&c, route), ["n0/gpu2", "n0/nvswitch", "n0/gpu5"]);
    assert_eq!(route.bottleneck_gbps, 450.0);
    assert_eq!(route.latency_ns, 1000);
    assert_eq!(c.gpu_spec(5).name, "H100 SXM");
    let own = c.route(3, 3);
    assert!(own.links.is_empty() && own.latency_ns == 0);
    // 8 GPUs x (NVLink + PCIe) duplex links; 8 PCIe switches on a host: 8 more duplex links.
    assert_eq!(c.num_links(), 8 * 2 * 2 + 8 * 2);
}

#[test]
fn hgx_h800x2_same_rail_crosses_the_nics() {
    let c = Cluster::preset("hgx-h800x2").unwrap();
    assert_eq!((c.num_gpus(), c.num_nodes(), c.node_of(9)), (16, 2, 1));
    let route = c.route(0, 8);
    assert_eq!(
        hops(&c, route),
        [
            "n0/gpu0", "n0/pcie0", "n0/nic0", "leaf0", "n1/nic0", "n1/pcie0", "n1/gpu0"
        ]
    );
    assert_eq!(route.bottleneck_gbps, 50.0);
    // 4 PCIe links of 400 ns, 2 NIC links of 600 ns.
    assert_eq!(route.latency_ns, 2800);
    // Inside a machine, H800 NVLink gives 200 GB/s each way.
    assert_eq!(c.route(0, 1).bottleneck_gbps, 200.0);
}

#[test]
fn cross_rail_traffic_climbs_to_the_spine() {
    let c = Cluster::preset("hgx-h800x2").unwrap();
    let route = c.route(0, 9);
    use LinkKind::*;
    assert_eq!(
        kinds(&c, route),
        [Pcie, Pcie, Network, Network, Network, Network, Pcie, Pcie]
    );
    assert_eq!(hops(&c, route)[4], "spine");
    assert_eq!(route.latency_ns, 4 * 400 + 2 * 600 + 2 * 300);
    // The spine link of a leaf carries 2 machines x 50 GB/s.
    assert_eq!(c.link(route.links[3]).bandwidth_gbps, 100.0);
    assert_eq!(route.bottleneck_gbps, 50.0);
}

#[test]
fn routes_never_pass_through_another_gpu() {
    let c = Cluster::preset("hgx-h200x2").unwrap();
    for src in 0..c.num_gpus() {
        for dst in (0..c.num_gpus()).filter(|&d| d != src) {
            let route = c.route(src, dst);
            let inner = &route.links[..route.links.len() - 1];
            assert!(
                inner
                    .iter()
                    .all(|&l| c.node(c.link(l).to).kind != NodeKind::Gpu),
                "{src}->{dst}"
            );
        }
    }
}

#[test]
fn preset_sizes() {
    let sizes = [
        ("hgx-h800x4", 32, 4),
        ("gb200-nvl72", 72, 1),
        ("gb200-nvl72x2", 144, 2),
        ("pcie-l40s", 8, 1),
    ];
    for (name, gpus, nodes) in sizes {
        let c = Cluster::preset(name).unwrap();
        assert_eq!((c.num_gpus(), c.num_nodes(), c.name()), (gpus, nodes, name));
    }
    assert_eq!(Cluster::resolve("hgx-h800x4").unwrap().num_gpus(), 32);
    let c = Cluster::preset_with_nodes("hgx-h200", 3).unwrap();
    assert_eq!((c.num_gpus(), c.name()), (24, "hgx-h200x3"));
    assert_eq!(
        Cluster::preset("gb200-nvl72")
            .unwrap()
            .route(0, 71)
            .bottleneck_gbps,
        900.0
    );
}

#[test]
fn pcie_l40s_shares_switches_and_the_host() {
    let c = Cluster::preset("pcie-l40s").unwrap();
    let near = c.route(0, 3);
    assert_eq!(hops(&c, near), ["n0/gpu0", "n0/pcie0", "n0/gpu3"]);
    assert_eq!((near.bottleneck_gbps, near.latency_ns), (32.0, 800));
    let far = c.route(0, 4);
    assert_eq!(
        hops(&c, far),
        ["n0/gpu0", "n0/pcie0", "n0/host", "n0/pcie1", "n0/gpu4"]
    );
    assert_eq!(far.latency_ns, 1600);
    // Across machines, GPU 1 uses its own NIC (rail 1), not NIC 0 on the same PCIe switch.
    let two = Cluster::preset("pcie-l40sx2").unwrap();
    assert_eq!(
        hops(&two, two.route(1, 9)),
        [
            "n0/gpu1", "n0/pcie0", "n0/nic1", "leaf1", "n1/nic1", "n1/pcie0", "n1/gpu1"
        ]
    );
}

#[test]
fn bad_preset_names_are_explained() {
    let err = Cluster::preset("dgx-a100").unwrap_err().to_string();
    assert!(
        err.contains("unknown cluster `dgx-a100`") && err.contains("hgx-h800"),
        "{err}"
    );
    let err = Cluster::preset("dgx-h100xfour").unwrap_err().to_string();
    assert!(err.contains("not a machine count"), "{err}");
    let err = Cluster::preset("dgx-h100x0").unwrap_err().to_string();
    assert!(err.contains("at least 1 machine"), "{err}");
    let err = Cluster::preset("dgx-h100x257").unwrap_err().to_string();
    assert!(
        err.contains("2056 GPUs (257 nodes x 8) exceed the 2048"),
        "{err}"
    );
}

#[test]
fn custom_toml_cluster_loads() {
    let c = Cluster::from_toml(&fixture("two-node-a100.toml")).unwrap();
    assert_eq!(
        (c.num_gpus(), c.num_nodes(), c.name()),
        (16, 2, "two-node-a100")
    );
    assert_eq!(c.gpu_spec(0).bf16_tflops, 312.0);
    // The A100 table sets no FP8 peak: FP8 weights run at the BF16 rate.
    assert_eq!(c.gpu_spec(0).fp8_tflops, None);
    assert_eq!(c.route(0, 1).bottleneck_gbps, 300.0);
    // GPUs 0 and 1 share PCIe switch 0; NIC 1 hangs off it too.
    let same_rail = c.route(1, 9);
    assert_eq!(hops(&c, same_rail)[1..3], ["n0/pcie0", "n0/nic1"]);
    assert_eq!(same_rail.bottleneck_gbps, 25.0);
    // Rail 0 reaches GPU 1 of machine 1 through NIC 0, which shares its PCIe switch.
    assert_eq!(
        hops(&c, c.route(0, 9)),
        [
            "n0/gpu0", "n0/pcie0", "n0/nic0", "leaf0", "n1/nic0", "n1/pcie0", "n1/gpu1"
        ]
    );
    // Leaf uplink: 2 machines x 25 GB/s / oversubscription 2.
    let uplink = c.links().find(|(_, l)| l.name == "leaf0->spine").unwrap().1;
    assert_eq!(uplink.bandwidth_gbps, 25.0);
    // Defaults filled in: NVLink latency 500 per link.
    assert_eq!(c.route(0, 1).latency_ns, 1000);
    let resolved = Cluster::resolve(fixture("two-node-a100.toml").to_str().unwrap()).unwrap();
    assert_eq!(resolved.num_links(), c.num_links());
}

/// Writes the A100 fixture with `from` replaced by `to` and tries to load it.
fn load_edited(from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(fixture("two-node-a100.toml")).unwrap();
    assert!(text.contains(from), "fixture lacks {from}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    let err = Cluster::from_toml(&path).unwrap_err().to_string();
    assert!(err.contains("cluster.toml"), "error names the file: {err}");
    err
}

#[test]
fn bad_toml_clusters_are_rejected_with_the_key() {
    let err = load_edited("gpus_per_node = 8", "gpus_per_node = 8\nrails = 4");
    assert!(err.contains("unknown field `rails`"), "{err}");
    let err = load_edited("sm_count = 108", "sm_count = 108\nclock_mhz = 1410");
    assert!(err.contains("unknown field `clock_mhz`"), "{err}");
    let err = load_edited("gbps = 300.0", "gbps = -1.0");
    assert!(
        err.contains("`nvlink.gbps` must be a number from 0.001 to 1000000000, got -1.0"),
        "{err}"
    );
    let err = load_edited("sm_count = 108", "sm_count = 108\nfp4_tflops = 0.0");
    assert!(
        err.contains("`gpu.fp4_tflops` must be a number from 0.001 to 1000000000, got 0.0"),
        "{err}"
    );
    // Fuzzing found these: a 1e300 oversubscription (or a latency near u64::MAX) overflowed
    // the integer route costs.
    let err = load_edited("oversubscription = 2.0", "oversubscription = 1e300");
    assert!(
        err.contains("`network.oversubscription` must be a number from 0.001 to 1000, got 1e300"),
        "{err}"
    );
    let err = load_edited(
        "nodes = 2\ngpus_per_node = 8",
        "nodes = 1099511627776\ngpus_per_node = 1099511627776",
    );
    assert!(
        err.contains("GPUs (1099511627776 nodes x 1099511627776) exceed"),
        "{err}"
    );
    let err = load_edited("[pcie]", "[pcie]\nlatency_ns = 9223372036854775807");
    assert!(
        err.contains("`pcie.latency_ns` must be at most 1000000000 ns"),
        "{err}"
    );
    let err = load_edited("gpus_per_node = 8", "gpus_per_node = 0");
    assert!(err.contains("`gpus_per_node` must be at least 1"), "{err}");
    // A parse error is one line naming the line and the key, not a snippet of the file.
    let err = load_edited("gpus_per_node = 8", "gpus_per_node = \"eight\"");
    assert!(
        err.contains(": line 5: `gpus_per_node`: invalid type: string \"eight\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_gpu_can_be_named_in_toml() {
    let text = "name = \"solo\"\ngpus_per_node = 4\ngpu = \"h200\"\n[pcie]\ngbps = 64.0\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("solo.toml");
    std::fs::write(&path, text.replace("h200", "v100")).unwrap();
    let err = Cluster::from_toml(&path).unwrap_err().to_string();
    assert!(err.contains("unknown gpu `v100`"), "{err}");
    std::fs::write(&path, text).unwrap();
    let c = Cluster::from_toml(&path).unwrap();
    assert_eq!((c.num_gpus(), c.gpu_spec(0).hbm_gbps), (4, 4800.0));
    // No NVLink: one PCIe switch per GPU, joined by the host.
    assert_eq!(c.route(0, 1).latency_ns, 1600);
}

#[test]
fn the_first_gpus_form_a_cluster_of_their_own() {
    let dgx = Cluster::preset("dgx-h100").unwrap();
    let four = dgx.first_gpus(4).unwrap();
    assert_eq!((four.num_gpus(), four.num_nodes()), (4, 1));
    // Same NVSwitch ports: GPU to GPU is two 450 GB/s links of 500 ns, as in the whole node.
    let route = four.route(0, 3);
    assert_eq!(route.latency_ns, dgx.route(0, 3).latency_ns);
    assert_eq!(route.latency_ns, 1000);
    assert_eq!(route.bottleneck_gbps, 450.0);
    let h800x4 = Cluster::preset("hgx-h800x4").unwrap();
    let two_nodes = h800x4.first_gpus(16).unwrap();
    assert_eq!((two_nodes.num_gpus(), two_nodes.num_nodes()), (16, 2));
    assert_eq!(
        two_nodes.route(0, 8).latency_ns,
        h800x4.route(0, 8).latency_ns
    );
    for bad in [0, 12, 40] {
        let err = h800x4.first_gpus(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("`gpus` = {bad}")), "{err}");
    }
}

#[test]
fn host_memory_reaches_a_gpu_over_its_pcie_path() {
    // One RTX 4090 on PCIe Gen4 x16: a single 32 GB/s link of 400 ns.
    let host = Cluster::preset("rtx4090-host").unwrap();
    let route = host.host_route(0);
    assert_eq!((host.num_gpus(), route.links.len()), (1, 1));
    assert_eq!((route.bottleneck_gbps, route.latency_ns), (32.0, 400));
    assert_eq!(host.link(route.links[0]).name, "n0/pcie0->n0/gpu0");
    assert_eq!(
        Cluster::preset("h100-host")
            .unwrap()
            .host_route(0)
            .bottleneck_gbps,
        64.0
    );
    // Two PCIe switches joined by the host: host -> switch -> GPU, 800 ns.
    let l40s = Cluster::preset("pcie-l40s").unwrap();
    let route = l40s.host_route(5);
    let names: Vec<&str> = route
        .links
        .iter()
        .map(|&l| l40s.link(l).name.as_str())
        .collect();
    assert_eq!(names, ["n0/host->n0/pcie1", "n0/pcie1->n0/gpu5"]);
    assert_eq!(route.latency_ns, 800);
}

#[test]
fn a_failed_nic_reroutes_over_another_nic_of_the_machine() {
    let c = Cluster::preset("dgx-h100x2").unwrap();
    assert_eq!(
        hops(&c, c.route(0, 8)),
        [
            "n0/gpu0", "n0/pcie0", "n0/nic0", "leaf0", "n1/nic0", "n1/pcie0", "n1/gpu0"
        ]
    );
    let failed = c
        .with_failed_links(&c.component_links("n0/nic0").unwrap())
        .unwrap();
    // Over the host to the next PCIe switch's NIC 1, up rail 1 and across the spine to rail 0.
    assert_eq!(
        hops(&failed, failed.route(0, 8)),
        [
            "n0/gpu0", "n0/pcie0", "n0/host", "n0/pcie1", "n0/nic1", "leaf1", "spine", "leaf0",
            "n1/nic0", "n1/pcie0", "n1/gpu0"
        ]
    );
    // Two more PCIe hops (host up and down) and two spine hops.
    let (pcie, spine) = (c.spec().pcie.latency_ns, c.spec().network.spine_latency_ns);
    assert_eq!(
        failed.route(0, 8).latency_ns,
        c.route(0, 8).latency_ns + 2 * pcie + 2 * spine
    );
    // Routes that never touched the NIC keep theirs.
    assert_eq!(failed.route(2, 10), c.route(2, 10));
    // A cable by its link name, either direction; an unknown name is `None`.
    assert_eq!(c.component_links("leaf0->n0/nic0").unwrap().len(), 2);
    assert_eq!(c.component_links("n0/nic9"), None);
    // With every NIC of machine 0 gone, nothing reaches machine 1.
    let all: Vec<LinkId> = (0..8)
        .flat_map(|i| c.component_links(&format!("n0/nic{i}")).unwrap())
        .collect();
    let err = c.with_failed_links(&all).unwrap_err().to_string();
    assert!(err.contains("no path from n0/gpu0 to n1/gpu0"), "{err}");
}
