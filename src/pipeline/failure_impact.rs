//! What a network failure (`[[failures]] kind = "network"`) did to serving: the seconds before
//! it against the seconds after it, from the run's per-second rows. A network failure loses no
//! request (the routes go around it) and is not repaired, so the requests it affects are those
//! running when it happened, and "after" is also "during".

use serde::Serialize;

use crate::scenario::Failure;
use crate::serve::metrics::SecondRow;

/// Seconds compared on each side of a failure (fewer where the run is shorter).
pub const IMPACT_WINDOW_S: u64 = 10;

/// Serving over whole seconds on one side of a failure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServingWindow {
    /// Whole seconds of the window that the run has.
    pub seconds: u64,
    /// Output (decode) tokens per second.
    pub output_tokens_per_s: f64,
    /// Mean duration of the steps started, ms (weighted by steps).
    pub step_ms: f64,
}

/// One network failure's effect on serving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetworkFailureImpact {
    pub component: String,
    pub at_s: f64,
    /// Requests running (time-weighted mean) in the second the component failed.
    pub requests_running: f64,
    /// The [`IMPACT_WINDOW_S`] whole seconds before the failure's second.
    pub before: ServingWindow,
    /// The [`IMPACT_WINDOW_S`] whole seconds after the failure's second.
    pub after: ServingWindow,
}

/// The impact of each network failure of `failures`, in their order, from the run's `seconds`.
pub fn network_failure_impacts(
    failures: &[Failure],
    seconds: &[SecondRow],
) -> Vec<NetworkFailureImpact> {
    failures
        .iter()
        .filter_map(|failure| match failure {
            Failure::Network(network) => Some(network),
            Failure::Gpu(_) => None,
        })
        .map(|network| {
            let second = network.at_s.floor() as u64;
            let running = seconds
                .iter()
                .find(|row| row.second == second)
                .map_or(0.0, |row| row.running);
            NetworkFailureImpact {
                component: network.component.clone(),
                at_s: network.at_s,
                requests_running: running,
                before: window(seconds, second.saturating_sub(IMPACT_WINDOW_S), second),
                after: window(seconds, second + 1, second + 1 + IMPACT_WINDOW_S),
            }
        })
        .collect()
}

/// Serving over the rows of seconds `from..to`.
fn window(seconds: &[SecondRow], from: u64, to: u64) -> ServingWindow {
    let rows: Vec<&SecondRow> = seconds
        .iter()
        .filter(|row| (from..to).contains(&row.second))
        .collect();
    let steps: u64 = rows.iter().map(|row| row.steps).sum();
    let tokens: u64 = rows.iter().map(|row| row.decode_tokens).sum();
    ServingWindow {
        seconds: rows.len() as u64,
        output_tokens_per_s: match rows.len() {
            0 => 0.0,
            n => tokens as f64 / n as f64,
        },
        step_ms: match steps {
            0 => 0.0,
            n => rows.iter().map(|r| r.step_ms * r.steps as f64).sum::<f64>() / n as f64,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::NetworkFailure;
    use crate::serve::scaling::{GpuFailure, Recover};

    fn row(second: u64, steps: u64, step_ms: f64, decode_tokens: u64, running: f64) -> SecondRow {
        SecondRow {
            second,
            steps,
            step_ms,
            decode_tokens,
            running,
            ..SecondRow::default()
        }
    }

    #[test]
    fn the_seconds_before_and_after_the_failures_second_are_compared() {
        // Failure at 12.5 s: before = seconds 2..12 (10 rows), after = 13..23 (the run has
        // 13..15: 2 rows). Before: 10 x 100 tokens, steps 10 x 4 of 5 ms. After: 60 + 40
        // tokens over 2 s = 50/s; steps 2 of 8 ms and 6 of 12 ms = 88 / 8 = 11 ms.
        let mut seconds: Vec<SecondRow> = (0..12).map(|s| row(s, 4, 5.0, 100, 3.0)).collect();
        seconds.push(row(12, 3, 7.0, 70, 6.5));
        seconds.push(row(13, 2, 8.0, 60, 4.0));
        seconds.push(row(14, 6, 12.0, 40, 2.0));
        let failures = [
            Failure::Gpu(GpuFailure {
                gpu: 0,
                at_s: 1.0,
                recover: Recover::default(),
            }),
            Failure::Network(NetworkFailure {
                at_s: 12.5,
                component: "n0/nic1".into(),
            }),
        ];
        let impacts = network_failure_impacts(&failures, &seconds);
        assert_eq!(
            impacts,
            [NetworkFailureImpact {
                component: "n0/nic1".into(),
                at_s: 12.5,
                requests_running: 6.5,
                before: ServingWindow {
                    seconds: 10,
                    output_tokens_per_s: 100.0,
                    step_ms: 5.0,
                },
                after: ServingWindow {
                    seconds: 2,
                    output_tokens_per_s: 50.0,
                    step_ms: 11.0,
                },
            }]
        );
    }
}
