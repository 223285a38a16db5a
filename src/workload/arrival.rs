//! Arrival processes: when the next request comes. Each is a plug-in in [`ARRIVALS`], selected
//! by `process = "..."` in `[workload.arrival]`, its knobs beside it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma as GammaDist};
use serde::Deserialize;

use crate::plugin_entry;
use crate::registry::{Plugin, Registry, non_negative, positive};

/// A seeded point process on the time line, drawn one arrival at a time.
pub trait ArrivalProcess: Send + std::fmt::Debug {
    /// The first arrival after `now_s` (seconds), drawn with `rng`.
    fn next_arrival(&mut self, now_s: f64, rng: &mut ChaCha8Rng) -> f64;
}

/// Every arrival process, by name.
pub static ARRIVALS: Registry<dyn ArrivalProcess> = Registry {
    kind: "arrival process",
    entries: &[
        plugin_entry!(ArrivalProcess, Poisson),
        plugin_entry!(ArrivalProcess, Gamma),
        plugin_entry!(ArrivalProcess, OnOff),
        plugin_entry!(ArrivalProcess, Diurnal),
    ],
};

/// An exponential gap at `rate` per second (`rate` > 0).
fn exponential(rate: f64, rng: &mut ChaCha8Rng) -> f64 {
    Exp::new(rate).expect("rate checked positive").sample(rng)
}

/// Independent exponential gaps: `rate` requests per second, inter-arrival CV 1.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Poisson {
    /// Requests per second.
    pub rate: f64,
}

impl ArrivalProcess for Poisson {
    fn next_arrival(&mut self, now_s: f64, rng: &mut ChaCha8Rng) -> f64 {
        now_s + exponential(self.rate, rng)
    }
}

impl Plugin for Poisson {
    const NAME: &'static str = "poisson";
    type Settings = Poisson;

    fn with_settings(settings: Poisson) -> Result<Self, String> {
        positive("rate", settings.rate)?;
        Ok(settings)
    }
}

/// Most inter-arrival CV a Gamma process takes: beyond it nearly every gap is zero and one gap
/// holds the whole period.
pub const MAX_CV: f64 = 100.0;

/// Gamma-distributed gaps with mean `1 / rate` and coefficient of variation `cv` (shape
/// `1 / cv^2`): bursty for `cv` > 1, more regular than Poisson below 1, Poisson at 1.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gamma {
    /// Requests per second.
    pub rate: f64,
    /// Inter-arrival standard deviation over mean, in (0, [`MAX_CV`]].
    pub cv: f64,
}

impl Default for Gamma {
    fn default() -> Self {
        Gamma { rate: 0.0, cv: 1.0 }
    }
}

impl ArrivalProcess for Gamma {
    fn next_arrival(&mut self, now_s: f64, rng: &mut ChaCha8Rng) -> f64 {
        let shape = 1.0 / (self.cv * self.cv);
        let scale = 1.0 / (self.rate * shape);
        now_s
            + GammaDist::new(shape, scale)
                .expect("knobs checked")
                .sample(rng)
    }
}

impl Plugin for Gamma {
    const NAME: &'static str = "gamma";
    type Settings = Gamma;

    fn with_settings(settings: Gamma) -> Result<Self, String> {
        positive("rate", settings.rate)?;
        positive("cv", settings.cv)?;
        if settings.cv > MAX_CV {
            return Err(format!("`cv` = {} exceeds {MAX_CV}", settings.cv));
        }
        Ok(settings)
    }
}

/// Fewest requests a burst of [`OnOff`] may expect: fewer, and each request costs more than
/// `1 / MIN_PER_BURST` empty periods to draw.
pub const MIN_PER_BURST: f64 = 0.01;

/// The knobs of [`OnOff`].
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnOffSettings {
    /// Requests per second during a burst.
    pub rate_on: f64,
    /// Requests per second between bursts (may be 0).
    pub rate_off: f64,
    /// Mean burst length in seconds.
    pub on_s: f64,
    /// Mean pause length in seconds.
    pub off_s: f64,
}

/// Bursts: Poisson at `rate_on` for exponentially long periods of mean `on_s`, alternating with
/// periods of mean `off_s` at `rate_off` (a two-state Markov-modulated Poisson process, starting
/// on). Long-run rate: `(rate_on on_s + rate_off off_s) / (on_s + off_s)`.
#[derive(Debug, Clone, Copy)]
pub struct OnOff {
    settings: OnOffSettings,
    /// Whether the current period is a burst.
    on: bool,
    /// When the current period ends; `None` before the first draw.
    period_end_s: Option<f64>,
}

impl ArrivalProcess for OnOff {
    fn next_arrival(&mut self, mut now_s: f64, rng: &mut ChaCha8Rng) -> f64 {
        let s = self.settings;
        let mut end = match self.period_end_s {
            Some(end) => end,
            None => now_s + exponential(1.0 / s.on_s, rng),
        };
        loop {
            let rate = if self.on { s.rate_on } else { s.rate_off };
            // Memoryless: a gap that runs past the period's end is redrawn from the end.
            if rate > 0.0 {
                let at = now_s + exponential(rate, rng);
                if at < end {
                    self.period_end_s = Some(end);
                    return at;
                }
            }
            now_s = end;
            self.on = !self.on;
            let mean = if self.on { s.on_s } else { s.off_s };
            end += exponential(1.0 / mean, rng);
        }
    }
}

impl Plugin for OnOff {
    const NAME: &'static str = "on-off";
    type Settings = OnOffSettings;

    fn with_settings(settings: OnOffSettings) -> Result<Self, String> {
        positive("rate_on", settings.rate_on)?;
        non_negative("rate_off", settings.rate_off)?;
        if !settings.rate_off.is_finite() {
            return Err(format!("`rate_off` = {} must be finite", settings.rate_off));
        }
        positive("on_s", settings.on_s)?;
        positive("off_s", settings.off_s)?;
        let per_burst = settings.rate_on * settings.on_s;
        if per_burst < MIN_PER_BURST {
            return Err(format!(
                "`rate_on` x `on_s` = {per_burst} requests per burst must be at least {MIN_PER_BURST} (else drawing skips millions of empty bursts per request)"
            ));
        }
        Ok(OnOff {
            settings,
            on: true,
            period_end_s: None,
        })
    }
}

/// Largest ratio of a [`Diurnal`] curve's peak to its mean: thinning draws that many candidates
/// per request.
pub const MAX_PEAK_OVER_MEAN: f64 = 1000.0;

/// The knobs of [`Diurnal`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiurnalSettings {
    /// Length of one cycle in seconds (a day by default).
    pub period_s: f64,
    /// `[time_s, rate]` knots, times increasing within `[0, period_s)`; the rate is linear
    /// between knots and from the last knot back to the first one a period later.
    pub points: Vec<[f64; 2]>,
}

impl Default for DiurnalSettings {
    fn default() -> Self {
        DiurnalSettings {
            period_s: 86_400.0,
            points: Vec::new(),
        }
    }
}

/// A Poisson process whose rate follows a periodic piecewise-linear curve, drawn by thinning:
/// candidates at the curve's peak rate, each kept with probability `rate(t) / peak`. Expected
/// arrivals over a window: the integral of the curve over it.
#[derive(Debug, Clone)]
pub struct Diurnal {
    settings: DiurnalSettings,
    peak: f64,
}

impl Diurnal {
    /// The rate at time `t_s`.
    fn rate(&self, t_s: f64) -> f64 {
        let points = &self.settings.points;
        let period = self.settings.period_s;
        let t = t_s.rem_euclid(period);
        let next = points.partition_point(|p| p[0] <= t);
        let (a, b) = match next {
            0 => (shift(points[points.len() - 1], -period), points[0]),
            n if n == points.len() => (points[n - 1], shift(points[0], period)),
            n => (points[n - 1], points[n]),
        };
        let span = b[0] - a[0];
        if span <= 0.0 {
            return a[1];
        }
        a[1] + (b[1] - a[1]) * (t - a[0]) / span
    }

    /// The curve's mean over a period: the trapezoids between consecutive knots (the last one
    /// joined to the first a period later).
    fn mean_rate(&self) -> f64 {
        let points = &self.settings.points;
        let period = self.settings.period_s;
        let wrap = [shift(points[0], period)];
        let area: f64 = points
            .iter()
            .chain(&wrap)
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| (w[1][0] - w[0][0]) * (w[0][1] + w[1][1]) / 2.0)
            .sum();
        area / period
    }
}

/// Knot `p` moved by `by` seconds.
fn shift(p: [f64; 2], by: f64) -> [f64; 2] {
    [p[0] + by, p[1]]
}

impl ArrivalProcess for Diurnal {
    fn next_arrival(&mut self, mut now_s: f64, rng: &mut ChaCha8Rng) -> f64 {
        loop {
            now_s += exponential(self.peak, rng);
            // Past the largest time there is no rate to thin by: return it (the caller ends).
            if !now_s.is_finite() || rng.random::<f64>() * self.peak < self.rate(now_s) {
                return now_s;
            }
        }
    }
}

impl Plugin for Diurnal {
    const NAME: &'static str = "diurnal";
    type Settings = DiurnalSettings;

    fn with_settings(settings: DiurnalSettings) -> Result<Self, String> {
        positive("period_s", settings.period_s)?;
        if settings.points.is_empty() {
            return Err("`points` must list at least one [time_s, rate] knot".into());
        }
        let mut previous = f64::NEG_INFINITY;
        for (i, &[time, rate]) in settings.points.iter().enumerate() {
            if !(time >= 0.0 && time < settings.period_s && time > previous) {
                return Err(format!(
                    "`points[{i}]`: time {time} must be in [0, period_s) and after the previous knot's"
                ));
            }
            non_negative(&format!("points[{i}]"), rate)?;
            if !rate.is_finite() {
                return Err(format!("`points[{i}]`: rate {rate} must be finite"));
            }
            previous = time;
        }
        let peak = settings.points.iter().map(|p| p[1]).fold(0.0, f64::max);
        let diurnal = Diurnal { settings, peak };
        let mean = diurnal.mean_rate();
        if !(mean * MAX_PEAK_OVER_MEAN >= peak && peak > 0.0) {
            return Err(format!(
                "`points`: the mean rate ({mean}) must be above zero and at least 1/{MAX_PEAK_OVER_MEAN} of the peak ({peak}): thinning draws peak/mean candidates per request"
            ));
        }
        Ok(diurnal)
    }
}
