//! A workload's summary, accumulated as requests stream past: count, span, rate, burstiness
//! (CV of inter-arrival times) and token statistics (exact percentiles from counts per length).

use std::collections::BTreeMap;
use std::fmt;

use super::Request;

/// Mean and percentiles of one length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenStats {
    pub mean: f64,
    pub p50: u64,
    pub p99: u64,
}

/// What a workload holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub requests: u64,
    /// Time of the last arrival, in seconds.
    pub duration_s: f64,
    /// Requests per second over `duration_s`.
    pub mean_rate: f64,
    /// Standard deviation over mean of the gaps between consecutive arrivals (1 for Poisson).
    pub interarrival_cv: f64,
    pub input: TokenStats,
    pub output: TokenStats,
}

/// Counts per length: memory grows with the distinct lengths (at most
/// [`super::MAX_TOKENS`]), not with the requests.
#[derive(Debug, Default)]
struct Counts {
    counts: BTreeMap<u64, u64>,
    sum: f64,
}

impl Counts {
    fn add(&mut self, tokens: u64) {
        *self.counts.entry(tokens).or_default() += 1;
        self.sum += tokens as f64;
    }

    /// The smallest length with at least `q` of the `n` requests at or below it (nearest rank).
    fn quantile(&self, n: u64, q: f64) -> u64 {
        let rank = ((q * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (&tokens, &count) in &self.counts {
            seen += count;
            if seen >= rank {
                return tokens;
            }
        }
        0
    }

    fn stats(&self, n: u64) -> TokenStats {
        TokenStats {
            mean: if n == 0 { 0.0 } else { self.sum / n as f64 },
            p50: self.quantile(n, 0.5),
            p99: self.quantile(n, 0.99),
        }
    }
}

/// Builds a [`Summary`] one request at a time.
#[derive(Debug, Default)]
pub struct SummaryBuilder {
    requests: u64,
    last_s: f64,
    /// Welford's running mean and squared deviations of the gaps.
    gap_mean: f64,
    gap_m2: f64,
    input: Counts,
    output: Counts,
}

impl SummaryBuilder {
    pub fn add(&mut self, request: &Request) {
        if self.requests > 0 {
            let gap = request.arrival_s - self.last_s;
            let gaps = self.requests as f64;
            let delta = gap - self.gap_mean;
            self.gap_mean += delta / gaps;
            self.gap_m2 += delta * (gap - self.gap_mean);
        }
        self.requests += 1;
        self.last_s = request.arrival_s;
        self.input.add(request.input_tokens);
        self.output.add(request.output_tokens);
    }

    pub fn finish(&self) -> Summary {
        let n = self.requests;
        let gaps = n.saturating_sub(1) as f64;
        let cv = if gaps > 0.0 && self.gap_mean > 0.0 {
            (self.gap_m2 / gaps).sqrt() / self.gap_mean
        } else {
            0.0
        };
        Summary {
            requests: n,
            duration_s: self.last_s,
            mean_rate: if self.last_s > 0.0 {
                n as f64 / self.last_s
            } else {
                0.0
            },
            interarrival_cv: cv,
            input: self.input.stats(n),
            output: self.output.stats(n),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tokens = |t: TokenStats| format!("mean {:.1}, p50 {}, p99 {}", t.mean, t.p50, t.p99);
        write!(
            f,
            "{} requests over {:.3} s ({:.3} requests/s, inter-arrival CV {:.3}); input tokens: {}; output tokens: {}",
            self.requests,
            self.duration_s,
            self.mean_rate,
            self.interarrival_cv,
            tokens(self.input),
            tokens(self.output)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(arrival_s: f64, input_tokens: u64, output_tokens: u64) -> Request {
        Request {
            id: 0,
            arrival_s,
            input_tokens,
            output_tokens,
            prefix_blocks: None,
        }
    }

    #[test]
    fn hand_computed_summary() {
        let mut builder = SummaryBuilder::default();
        // Gaps 1, 3: mean 2, population std 1, CV 0.5.
        for (t, i, o) in [(1.0, 10, 1), (2.0, 20, 2), (5.0, 30, 300)] {
            builder.add(&request(t, i, o));
        }
        let s = builder.finish();
        assert_eq!(s.requests, 3);
        assert_eq!(s.duration_s, 5.0);
        assert!((s.mean_rate - 0.6).abs() < 1e-12);
        assert!((s.interarrival_cv - 0.5).abs() < 1e-12);
        assert_eq!(
            s.input,
            TokenStats {
                mean: 20.0,
                p50: 20,
                p99: 30
            }
        );
        assert!((s.output.mean - 101.0).abs() < 1e-12);
        assert_eq!((s.output.p50, s.output.p99), (2, 300));
    }
}
