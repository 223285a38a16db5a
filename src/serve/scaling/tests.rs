use super::*;

/// Every change takes `ns`.
struct Fixed(u64);

impl ScaleTiming for Fixed {
    fn change(&mut self, _: usize, _: usize) -> Plan {
        Plan {
            ns: self.0,
            bytes: 0.0,
        }
    }
    fn restore(&mut self, from: usize, to: usize) -> Plan {
        self.change(from, to)
    }
}

/// A horizontal replica: every scale-up takes `ns`, a failed replica just stops.
struct Replicas(u64);

impl ScaleTiming for Replicas {
    fn change(&mut self, _: usize, _: usize) -> Plan {
        Plan {
            ns: self.0,
            bytes: 0.0,
        }
    }
    fn restore(&mut self, _: usize, _: usize) -> Plan {
        Plan::default()
    }
}

fn config(text: &str) -> ScalingConfig {
    toml::from_str::<ScalingConfig>(text).unwrap()
}

/// A threshold controller on utilisation, one rank of 100 slots per unit, every change instant.
fn controller(down: f64, mechanism: &str) -> Elastic<'static> {
    let text = format!(
        "policy = \"threshold\"\nmetric = \"utilisation\"\nup = 0.8\ndown = {down}\n\
         cooldown_s = 30\nmechanism = \"{mechanism}\"\nmin_units = 1\nmax_units = 4"
    );
    Elastic::new(
        &config(&text),
        &[],
        1,
        1,
        Slo::default(),
        Box::new(Fixed(0)),
    )
    .unwrap()
}

/// Polls once a second for 600 s under `demand` requests spread over the active units' slots;
/// returns the changes the controller made.
fn run_constant(elastic: &mut Elastic, demand: u64) -> usize {
    let mut units = 1;
    for second in 0..600u64 {
        let signal = Signal {
            now_ns: second * 1_000_000_000,
            running: demand,
            slots: 100 * units,
            ..Signal::default()
        };
        if let Some(change) = elastic.poll(signal) {
            units = change.ranks as u64;
        }
    }
    elastic.events().len()
}

#[test]
fn a_constant_load_exactly_at_the_threshold_never_scales() {
    // 80 requests over 100 slots is utilisation 0.8 = `up`, not above it.
    assert_eq!(run_constant(&mut controller(0.3, "fine-grained"), 80), 0);
}

#[test]
fn hysteresis_scales_once_where_no_band_oscillates() {
    // 81 / 100 = 0.81 > 0.8: one unit more, then 81 / 200 = 0.405 sits inside [0.3, 0.8].
    let mut banded = controller(0.3, "fine-grained");
    assert_eq!(run_constant(&mut banded, 81), 1);
    assert_eq!(banded.events()[0].to_units, 2);
    // Without a band (down = up) 0.405 < 0.8 scales back down, and 0.81 up again: decided at
    // t = 0, done at 1, cooldown to 31, down decided at 31, done at 32, ... one change every
    // 31 s: t = 0, 31, ..., 589, 20 changes in 600 s.
    let mut flapping = controller(0.8, "fine-grained");
    assert_eq!(run_constant(&mut flapping, 81), 20);
}

#[test]
fn a_failed_gpu_loses_its_rank_and_a_spare_comes_in_through_the_mechanism() {
    let text = "policy = \"none\"\nmechanism = \"fine-grained\"\nmin_units = 1\nmax_units = 4\n\
                initial_units = 4";
    let failure = GpuFailure {
        gpu: 2,
        at_s: 10.0,
        recover: Recover::Spare,
    };
    let five_s = 5_000_000_000;
    let mut elastic = Elastic::new(
        &config(text),
        &[failure],
        1,
        1,
        Slo::default(),
        Box::new(Fixed(five_s)),
    )
    .unwrap();
    let at = |s: u64| Signal {
        now_ns: s * 1_000_000_000,
        ..Signal::default()
    };
    assert_eq!(elastic.poll(at(9)), None);
    let change = elastic.poll(at(10)).unwrap();
    assert_eq!(change.failed, vec![2]);
    assert_eq!(change.ranks, 3);
    // The survivors rebuild the lost experts for 5 s; the spare serves 5 s after the failure.
    assert_eq!(change.pause_until_ns, 15_000_000_000);
    assert_eq!(elastic.poll(at(14)), None);
    assert_eq!(elastic.poll(at(15)).unwrap().ranks, 4);
    let kinds: Vec<&str> = elastic.events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["failure", "spare"]);
    // 4 GPUs for 10 s, then 4 billed (3 serving + the spare loading) to the end at 20 s.
    assert!((elastic.gpu_hours(20_000_000_000) - 4.0 * 20.0 / 3600.0).abs() < 1e-12);
}

#[test]
fn a_vertical_scale_up_restarts_the_group_and_bills_the_new_gpu_at_once() {
    let text = "policy = \"threshold\"\nmetric = \"queue\"\nup = 10\ndown = 0\n\
                mechanism = \"vertical\"\nmin_units = 1\nmax_units = 2";
    let mut elastic = Elastic::new(
        &config(text),
        &[],
        1,
        1,
        Slo::default(),
        Box::new(Fixed(30_000_000_000)),
    )
    .unwrap();
    let change = elastic
        .poll(Signal {
            now_ns: 0,
            queued: 11,
            ..Signal::default()
        })
        .unwrap();
    assert!(change.restart);
    assert_eq!((change.ranks, change.pause_until_ns), (2, 30_000_000_000));
    assert_eq!(elastic.events()[0].ready_s, 30.0);
    // 2 GPUs from t = 0: 2 x 60 s.
    assert!((elastic.gpu_hours(60_000_000_000) - 120.0 / 3600.0).abs() < 1e-12);
}

#[test]
fn policy_knobs_sit_beside_the_mechanism_keys_and_unknown_ones_are_named() {
    let c = config("policy = \"threshold\"\nup = 5\ndown = 1\nmax_units = 2");
    assert_eq!(c.policy_settings.len(), 2);
    let bad = config("policy = \"threshold\"\nupp = 5\nmax_units = 2");
    let message = bad.check(1, 8).unwrap_err();
    assert!(
        message.contains("`scaling`") && message.contains("upp"),
        "{message}"
    );
    let beyond = config("max_units = 9").check(1, 8).unwrap_err();
    assert!(beyond.contains("`scaling.max_units`"), "{beyond}");
}

#[test]
fn the_predictive_policy_sizes_for_the_extrapolated_rate() {
    use crate::serve::autoscale::Predictive;
    let mut policy = Predictive {
        unit_rps: 10.0,
        lookahead_s: 30.0,
        headroom: 0.2,
    };
    // 25/s now, 15/s the window before: +1/s per s, 55/s in 30 s: ceil(5.5) = 6 units.
    let rising = Signal {
        arrival_rate: 25.0,
        previous_rate: 15.0,
        window_s: 10.0,
        ..Signal::default()
    };
    assert_eq!(policy.desired(&rising, 2), 6);
    // Flat at 25/s on 8 units: 25 x 1.2 = 30 <= 7 x 10, one unit fewer; on 3 units, 30 > 20.
    let flat = Signal {
        previous_rate: 25.0,
        ..rising
    };
    assert_eq!(policy.desired(&flat, 8), 7);
    assert_eq!(policy.desired(&flat, 3), 3);
}

/// A vertical group of 1 to 4 units serving a fluid queue, polled once a second: `rate`
/// requests/s arrive for the first 120 s, each unit serves 20 a second, nothing is served while
/// the group restarts (30 s); threshold on the queue, up 10, never down, 20 s cooldown.
/// Returns the restarts decided in 300 s.
fn vertical_burst(rate: u64) -> Vec<f64> {
    let text = "policy = \"threshold\"\nmetric = \"queue\"\nup = 10\ndown = 0\ncooldown_s = 20\n\
                mechanism = \"vertical\"\nmin_units = 1\nmax_units = 4";
    let mut elastic = Elastic::new(
        &config(text),
        &[],
        1,
        1,
        Slo::default(),
        Box::new(Fixed(30_000_000_000)),
    )
    .unwrap();
    let (mut queue, mut units, mut resume_ns) = (0, 1, 0);
    for second in 0..300u64 {
        let now_ns = second * 1_000_000_000;
        if let Some(change) = elastic.poll(Signal {
            now_ns,
            queued: queue,
            ..Signal::default()
        }) {
            units = change.ranks as u64;
            resume_ns = change.pause_until_ns;
        }
        let arrived = if second < 120 { rate } else { 0 };
        let served = if now_ns < resume_ns { 0 } else { 20 * units };
        queue = (queue + arrived).saturating_sub(served);
    }
    elastic.events().iter().map(|e| e.start_s).collect()
}

#[test]
fn one_burst_one_more_unit_absorbs_restarts_the_vertical_group_once() {
    // 30/s on one unit (20/s): the queue is 20 > 10 at t = 2, restart to 2 units until 32 s.
    // 30 s of arrivals wait meanwhile: 920 at 32 s. Two units (40/s) work it off at 10/s, so it
    // only shrinks (720 at the end of the cooldown, 52 s): no second restart. Reading the raw
    // queue restarted again at 52 s (to 3 units, 1,620 queued at 82 s) and at 102 s.
    assert_eq!(vertical_burst(30), [2.0]);
}

#[test]
fn a_queue_that_grows_after_the_restart_still_asks_for_more() {
    // 50/s: 30 > 10 at t = 1, restart to 2 units until 31 s (1,530 queued). Two units fall
    // 10/s behind: at 51 s the queue has grown by 200 > 10 since the restart: restart to 3
    // (60/s, the queue shrinks from then on).
    assert_eq!(vertical_burst(50), [1.0, 51.0]);
}

#[test]
fn a_failure_does_not_cancel_a_scale_up_in_flight() {
    // Horizontal, 3 units, up = 10: one more replica decided at 100 s (90 s to load); GPU 1
    // fails at 150 s and a spare comes in (90 s).
    let text = "policy = \"threshold\"\nmetric = \"queue\"\nup = 10\ndown = 0\ncooldown_s = 20\n\
                mechanism = \"horizontal\"\nmin_units = 1\nmax_units = 4\ninitial_units = 3";
    let failure = GpuFailure {
        gpu: 1,
        at_s: 150.0,
        recover: Recover::Spare,
    };
    let mut elastic = Elastic::new(
        &config(text),
        &[failure],
        1,
        1,
        Slo::default(),
        Box::new(Replicas(90_000_000_000)),
    )
    .unwrap();
    let at = |s: u64| Signal {
        now_ns: s * 1_000_000_000,
        queued: 11,
        ..Signal::default()
    };
    assert_eq!(elastic.poll(at(100)), None);
    let failed = elastic.poll(at(150)).unwrap();
    assert_eq!((failed.failed.clone(), failed.ranks), (vec![1], 2));
    // The replica decided at 100 s serves at 190 s, the spare at 240 s: 4 again.
    assert_eq!(elastic.poll(at(189)), None);
    assert_eq!(elastic.poll(at(190)).unwrap().ranks, 3);
    assert_eq!(elastic.poll(at(240)).unwrap().ranks, 4);
    let kinds: Vec<(&str, usize, usize)> = elastic
        .events()
        .iter()
        .map(|e| (e.kind, e.from_units, e.to_units))
        .collect();
    assert_eq!(kinds, [("up", 3, 4), ("failure", 3, 2), ("spare", 3, 4)]);
    assert_eq!(elastic.events()[0].ready_s, 190.0);
    // Billed: 3 GPUs to 100 s, then 4 (the new replica from its decision; after the failure 2
    // serving + 2 loading) to the end at 300 s: 300 + 800 GPU-seconds.
    assert_eq!(
        elastic.billed(),
        [(0, 3), (100_000_000_000, 4)],
        "the failure at 150 s leaves 2 serving + 2 loading"
    );
    assert!((elastic.gpu_hours(300_000_000_000) - 1100.0 / 3600.0).abs() < 1e-12);
}
