use super::*;
use crate::serve::scaling::ScalingKnobs;

fn links() -> LinkSettings {
    LinkSettings {
        nvlink_efficiency: 1.0,
        rate_tolerance: 0.0,
    }
}

#[test]
fn moving_b_bytes_over_a_link_of_g_gbps_takes_b_over_g_plus_the_latency() {
    let dgx = Cluster::preset("dgx-h100").unwrap();
    // 4.5 GB from GPU 0 to GPU 1 over NVLink at 450 GB/s: 10 ms, plus the route's latency
    // (GPU -> NVSwitch -> GPU, 2 x 500 ns).
    let b = 4_500_000_000;
    assert_eq!(
        transfers_ns(&dgx, &links(), &[(0, 1, b)]),
        10_000_000 + 1_000
    );
    // Two senders into GPU 1 share its NVLink port: 2 B / G + latency.
    assert_eq!(
        transfers_ns(&dgx, &links(), &[(0, 1, b), (2, 1, b)]),
        20_000_000 + 1_000
    );
}

fn timing(mechanism: Mechanism) -> Timing {
    let knobs: ScalingKnobs = toml::from_str(
        "max_units = 4\nprovision_s = 60\nstorage_gbps = 2\nrestart_s = 30\njoin_s = 3.5",
    )
    .unwrap();
    Timing {
        mechanism,
        knobs,
        unit_gpus: 1,
        expert_bytes: 8e9,
        non_expert_bytes: 2e9,
        cluster: Cluster::preset("dgx-h100").unwrap(),
        links: links(),
    }
}

#[test]
fn scale_up_latency_per_mechanism_from_the_settings() {
    // Horizontal: a 1-GPU replica holds 8 + 2 GB: 60 s + 10 GB / 2 GB/s = 65 s.
    let h = timing(Mechanism::Horizontal).change(1, 2);
    assert_eq!((h.ns, h.bytes), (65_000_000_000, 10e9));
    // Vertical to 4 GPUs: each reloads 8/4 + 2 = 4 GB: 30 s + 2 s of downtime.
    let v = timing(Mechanism::Vertical).change(2, 4);
    assert_eq!((v.ns, v.bytes), (32_000_000_000, 16e9));
    // Fine-grained 2 -> 4: GPUs 2 and 3 pull 4 GB each from GPUs 0 and 1 on their own NVLink
    // ports: 4e9 / 450 GB/s = 8,888,889 ns (rounded up) + 1 us, after 3.5 s of join.
    let f = timing(Mechanism::FineGrained).change(2, 4);
    assert_eq!(f.bytes, 8e9);
    assert_eq!(f.ns, 3_500_000_000 + 8_888_889 + 1_000);
    // Scale-down: horizontal at once; fine-grained sends GPU 3's 2 GB of experts to GPU 0.
    assert_eq!(timing(Mechanism::Horizontal).change(2, 1).ns, 0);
    let down = timing(Mechanism::FineGrained).change(4, 3);
    assert_eq!(down.ns, 3_500_000_000 + 4_444_445 + 1_000);
}
