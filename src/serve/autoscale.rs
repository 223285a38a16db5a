//! Autoscaler policies: when to ask for more or fewer scale units, from what the engine saw.
//!
//! A policy only proposes a unit count; [`super::scaling::Elastic`] applies the cooldown, the
//! `min_units..=max_units` bounds and waits for a change in flight to finish.

use serde::Deserialize;

use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry, positive};

/// What the engine saw at a step boundary of the entry pool.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signal {
    /// Now, ns.
    pub now_ns: u64,
    /// Requests waiting (queued on the ranks or on their way in).
    pub queued: u64,
    /// Of `queued`, what the pool's last pause (a vertical restart, a failure's rebuild) left
    /// waiting and has not worked off yet (the lowest queue since it resumed): the capacity
    /// there serves it, so it asks for none more, but it is not idleness either.
    pub backlog: u64,
    /// Requests running.
    pub running: u64,
    /// Requests the active ranks may run at once (`ranks x max_running`).
    pub slots: u64,
    /// Share of the requests finished over the last window that missed an SLO.
    pub slo_miss: f64,
    /// Arrivals per second over the last window.
    pub arrival_rate: f64,
    /// Arrivals per second over the window before it.
    pub previous_rate: f64,
    /// Length of the window, s.
    pub window_s: f64,
}

/// Which measure a threshold policy compares.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Requests waiting.
    #[default]
    Queue,
    /// Share of recently finished requests missing an SLO.
    Slo,
    /// Requests held (running and waiting) over the active slots.
    Utilisation,
}

impl Metric {
    /// The value of this measure in `signal`.
    pub fn of(self, signal: &Signal) -> f64 {
        match self {
            Metric::Queue => signal.queued as f64,
            Metric::Slo => signal.slo_miss,
            Metric::Utilisation => {
                (signal.running + signal.queued) as f64 / signal.slots.max(1) as f64
            }
        }
    }
}

/// A scaling policy: the unit count it wants, given the count active now.
pub trait Autoscaler {
    /// The units wanted after seeing `signal` with `units` active.
    fn desired(&mut self, signal: &Signal, units: usize) -> usize;
}

/// The policies by name (`[scaling] policy`).
pub static AUTOSCALERS: Registry<dyn Autoscaler> = Registry {
    kind: "autoscaler policy",
    entries: &[
        plugin_entry!(Autoscaler, Fixed),
        plugin_entry!(Autoscaler, Threshold),
        plugin_entry!(Autoscaler, Predictive),
    ],
};

/// Never scales (failures still happen).
#[derive(Debug, Clone, Copy)]
pub struct Fixed;

impl Autoscaler for Fixed {
    fn desired(&mut self, _: &Signal, units: usize) -> usize {
        units
    }
}

impl Plugin for Fixed {
    const NAME: &'static str = "none";
    type Settings = NoSettings;
    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(Fixed)
    }
}

/// One unit more while the metric is above `up`, one fewer while it is below `down`: between
/// them (the hysteresis band) nothing changes, so a load that a scale step moves across less
/// than the band never oscillates. Scaling up reads the metric without the backlog of the last
/// pause (only a queue that grows after a restart asks for another), scaling down with it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Threshold {
    /// What is compared.
    pub metric: Metric,
    /// Scale up above this.
    pub up: f64,
    /// Scale down below this (`down < up`).
    pub down: f64,
}

impl Default for Threshold {
    fn default() -> Threshold {
        Threshold {
            metric: Metric::Queue,
            up: 64.0,
            down: 16.0,
        }
    }
}

impl Autoscaler for Threshold {
    fn desired(&mut self, signal: &Signal, units: usize) -> usize {
        let grown = Signal {
            queued: signal.queued.saturating_sub(signal.backlog),
            ..*signal
        };
        if self.metric.of(&grown) > self.up {
            units + 1
        } else if self.metric.of(signal) < self.down {
            units.saturating_sub(1)
        } else {
            units
        }
    }
}

impl Plugin for Threshold {
    const NAME: &'static str = "threshold";
    type Settings = Threshold;
    fn with_settings(settings: Threshold) -> Result<Self, String> {
        if !(settings.down >= 0.0 && settings.down <= settings.up && settings.up.is_finite()) {
            return Err(format!(
                "`down` = {} must be in 0..=`up` ({})",
                settings.down, settings.up
            ));
        }
        Ok(settings)
    }
}

/// Sizes for the arrival rate expected `lookahead_s` from now (the last window's rate plus its
/// linear trend): `ceil(rate / unit_rps)` units, scaling down only when one unit fewer would
/// still leave `headroom` spare.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Predictive {
    /// Requests per second one unit serves within the SLOs.
    pub unit_rps: f64,
    /// How far ahead the rate is extrapolated, s (about the scale-up latency).
    pub lookahead_s: f64,
    /// Spare share kept before scaling down.
    pub headroom: f64,
}

impl Default for Predictive {
    fn default() -> Predictive {
        Predictive {
            unit_rps: 1.0,
            lookahead_s: 30.0,
            headroom: 0.2,
        }
    }
}

impl Autoscaler for Predictive {
    fn desired(&mut self, signal: &Signal, units: usize) -> usize {
        let trend = (signal.arrival_rate - signal.previous_rate) / signal.window_s.max(1e-9);
        let rate = (signal.arrival_rate + trend * self.lookahead_s).max(0.0);
        let need = (rate / self.unit_rps).ceil() as usize;
        if need >= units {
            need
        } else if rate * (1.0 + self.headroom) <= (units - 1) as f64 * self.unit_rps {
            units - 1
        } else {
            units
        }
    }
}

impl Plugin for Predictive {
    const NAME: &'static str = "predictive";
    type Settings = Predictive;
    fn with_settings(settings: Predictive) -> Result<Self, String> {
        positive("unit_rps", settings.unit_rps)?;
        if !(settings.lookahead_s >= 0.0 && settings.headroom >= 0.0) {
            return Err("`lookahead_s` and `headroom` must be non-negative".into());
        }
        Ok(settings)
    }
}
