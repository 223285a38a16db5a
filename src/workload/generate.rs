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
        if self.next_id == MAX_REQUESTS {
            self.done = true;
            return Some(Err(Error::invalid(format!(
                "`workload.duration_s`: more than {MAX_REQUESTS} requests arrive within it"
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
