//! Synthetic requests: arrivals from an [`ArrivalProcess`], lengths from two
//! [`LengthDist`]s, each on its own ChaCha stream of the seed (changing the length distribution
//! leaves the arrival times as they were).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::arrival::ArrivalProcess;
use super::lengths::LengthDist;
use super::{MAX_REQUESTS, Request};
use crate::error::{Error, Result};
use crate::registry::Named;

/// A length distribution with its clamp.
#[derive(Debug)]
pub struct Lengths {
    pub dist: Named<dyn LengthDist>,
    /// Every draw is clamped to `[1, max]`.
    pub max: u64,
}

impl Lengths {
    fn sample(&self, rng: &mut ChaCha8Rng) -> u64 {
        self.dist.sample(rng).clamp(1, self.max)
    }
}

/// When a generated workload ends: after `requests` requests or at `duration_s`, whichever
/// comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub requests: Option<u64>,
    pub duration_s: Option<f64>,
}

/// Requests drawn one at a time, in arrival order.
#[derive(Debug)]
pub struct Generator {
    arrival: Named<dyn ArrivalProcess>,
    input: Lengths,
    output: Lengths,
    /// Arrival, input and output streams of the seed.
    rngs: [ChaCha8Rng; 3],
    limits: Limits,
    /// Most requests drawn ([`MAX_REQUESTS`]); past it the stream ends with an error.
    cap: u64,
    now_s: f64,
    next_id: u64,
    done: bool,
}

impl Generator {
    pub fn new(
        seed: u64,
        arrival: Named<dyn ArrivalProcess>,
        input: Lengths,
        output: Lengths,
        limits: Limits,
    ) -> Self {
        let rngs = [0, 1, 2].map(|stream| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(stream);
            rng
        });
        Generator {
            arrival,
            input,
            output,
            rngs,
            limits,
            cap: MAX_REQUESTS,
            now_s: 0.0,
            next_id: 0,
            done: false,
        }
    }
}

impl Iterator for Generator {
    type Item = Result<Request>;

    fn next(&mut self) -> Option<Result<Request>> {
        if self.done || self.limits.requests.is_some_and(|n| self.next_id >= n) {
            return None;
        }
        let [arrivals, inputs, outputs] = &mut self.rngs;
        let arrival_s = self.arrival.strategy.next_arrival(self.now_s, arrivals);
        if self.limits.duration_s.is_some_and(|end| arrival_s >= end) {
            self.done = true;
            return None;
        }
        if !arrival_s.is_finite() {
            self.done = true;
            return Some(Err(Error::invalid(
                "`workload.arrival`: arrival times ran past the largest number (rate too small)",
            )));
        }
        if self.next_id == self.cap {
            self.done = true;
            return Some(Err(Error::invalid(format!(
                "`workload.duration_s`: more than {} requests arrive within it",
                self.cap
            ))));
        }
        self.now_s = arrival_s;
        let request = Request {
            id: self.next_id,
            arrival_s,
            input_tokens: self.input.sample(inputs),
            output_tokens: self.output.sample(outputs),
            prefix_blocks: None,
        };
        self.next_id += 1;
        Some(Ok(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::arrival::ARRIVALS;
    use crate::workload::lengths::LENGTHS;

    fn generator(rate: f64, limits: Limits) -> Generator {
        let table = |text: &str| text.parse::<toml::Table>().unwrap();
        let arrival = ARRIVALS
            .build("poisson", &table(&format!("rate = {rate}")))
            .unwrap();
        let lengths = || Lengths {
            dist: LENGTHS.build("fixed", &table("tokens = 4")).unwrap(),
            max: 3,
        };
        Generator::new(0, arrival, lengths(), lengths(), limits)
    }

    #[test]
    fn a_duration_holding_more_than_the_cap_ends_in_an_error_after_the_cap() {
        let mut g = generator(
            1e9,
            Limits {
                requests: None,
                duration_s: Some(1.0),
            },
        );
        g.cap = 5;
        let drawn: Vec<_> = g.by_ref().take(10).collect();
        assert_eq!(drawn.len(), 6);
        assert!(
            drawn[..5]
                .iter()
                .all(|r| r.as_ref().unwrap().output_tokens == 3)
        );
        let err = drawn[5].as_ref().unwrap_err().to_string();
        assert_eq!(
            err,
            "`workload.duration_s`: more than 5 requests arrive within it"
        );
        assert!(g.next().is_none());
    }

    #[test]
    fn the_first_limit_reached_ends_the_stream() {
        let by_count = generator(
            10.0,
            Limits {
                requests: Some(3),
                duration_s: Some(1e6),
            },
        );
        assert_eq!(by_count.count(), 3);
        // At 10 requests/s, 100 s hold about 1,000 (Poisson: standard deviation about 32).
        let by_time = generator(
            10.0,
            Limits {
                requests: Some(1_000_000),
                duration_s: Some(100.0),
            },
        );
        let times: Vec<f64> = by_time.map(|r| r.unwrap().arrival_s).collect();
        assert!((900..1100).contains(&times.len()), "{}", times.len());
        assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[times.len() - 1] < 100.0);
    }
}
