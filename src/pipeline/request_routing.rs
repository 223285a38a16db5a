//! Routing sampled by request (`[serving] routing = "by-request"`): every simulated request
//! keeps trace rows of its own, so its prompt and decode tokens route as one sequence of the
//! trace did, step after step, instead of taking whatever tokens of the trace come next.

use crate::serve::TokenRun;
use crate::trace::RoutingTrace;

/// The trace's token rows grouped into the sequences a request can take.
pub struct RequestRouting {
    /// Per sequence, its rows in position order.
    sequences: Vec<Vec<usize>>,
    seed: u64,
}

impl RequestRouting {
    /// The requests recorded in `trace` (its request ids, each request's rows ordered by
    /// position, requests by id), or one sequence of all its tokens when it records none.
    pub fn new(trace: &RoutingTrace, seed: u64) -> RequestRouting {
        let meta = trace.meta();
        let sequences = match &meta.request_id {
            Some(ids) => {
                let mut rows: Vec<usize> = (0..trace.num_tokens()).collect();
                let position = |row: usize| meta.position.as_ref().map_or(0, |p| p[row]);
                rows.sort_by_key(|&row| (ids[row], position(row), row));
                rows.chunk_by(|&a, &b| ids[a] == ids[b])
                    .map(<[usize]>::to_vec)
                    .collect()
            }
            None => vec![(0..trace.num_tokens()).collect()],
        };
        RequestRouting { sequences, seed }
    }

    /// The rows that route `run`: its request's sequence (drawn by request id) from the
    /// request's offset in it (drawn likewise when the trace is one sequence), cycled when the
    /// request runs past its end.
    pub fn rows(&self, run: &TokenRun) -> impl Iterator<Item = usize> + Clone + '_ {
        let draw = mix(self.seed ^ mix(run.request));
        let sequence = &self.sequences[(draw % self.sequences.len() as u64) as usize];
        let offset = match self.sequences.len() {
            1 => mix(draw) % sequence.len() as u64,
            _ => 0,
        };
        let len = sequence.len() as u64;
        (run.first..run.first + run.count).map(move |p| sequence[((offset + p) % len) as usize])
    }
}

/// SplitMix64's finaliser: a well-spread 64-bit hash of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LayerRouting, TokenMeta};

    /// One layer, token `t` routed to expert `t`.
    fn trace(meta: TokenMeta, tokens: usize) -> RoutingTrace {
        let layer = LayerRouting::fixed_k(1, (0..tokens as u16).collect(), None).unwrap();
        RoutingTrace::new(tokens, vec![layer], meta).unwrap()
    }

    fn run(request: u64, first: u64, count: u64) -> TokenRun {
        TokenRun {
            request,
            rank: 0,
            first,
            count,
        }
    }

    #[test]
    fn a_request_follows_one_recorded_request_in_position_order() {
        // Two interleaved requests: 7 at rows 0, 2, 4 (positions 0, 1, 2), 3 at rows 1, 3
        // (positions 1, 0).
        let meta = TokenMeta {
            request_id: Some(vec![7, 3, 7, 3, 7]),
            position: Some(vec![0, 1, 1, 0, 2]),
            ..TokenMeta::default()
        };
        let routing = RequestRouting::new(&trace(meta, 5), 1);
        assert_eq!(routing.sequences, [vec![3, 1], vec![0, 2, 4]]);
        for request in 0..20 {
            let prompt: Vec<usize> = routing.rows(&run(request, 0, 2)).collect();
            let decode: Vec<usize> = routing.rows(&run(request, 2, 2)).collect();
            let whole: Vec<usize> = routing.rows(&run(request, 0, 4)).collect();
            // The decode tokens continue the prompt's sequence, cycling past its end.
            assert_eq!([prompt, decode].concat(), whole);
            assert!(
                whole == [3, 1, 3, 1] || whole == [0, 2, 4, 0],
                "request {request}: {whole:?}"
            );
        }
        // Both sequences are drawn, and the same request always gets the same one.
        let first_rows: Vec<usize> = (0..20)
            .map(|r| routing.rows(&run(r, 0, 1)).next().unwrap())
            .collect();
        assert!(first_rows.contains(&3) && first_rows.contains(&0));
        let again = RequestRouting::new(&trace(TokenMeta::default(), 5), 1);
        assert_eq!(
            again.rows(&run(4, 0, 5)).collect::<Vec<_>>(),
            again.rows(&run(4, 0, 5)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn without_request_ids_a_request_runs_on_from_its_own_offset() {
        let routing = RequestRouting::new(&trace(TokenMeta::default(), 10), 9);
        let rows: Vec<usize> = routing.rows(&run(5, 0, 12)).collect();
        let offset = rows[0];
        let expected: Vec<usize> = (0..12).map(|p| (offset + p) % 10).collect();
        assert_eq!(rows, expected);
        let offsets: std::collections::BTreeSet<usize> = (0..50)
            .map(|r| routing.rows(&run(r, 0, 1)).next().unwrap())
            .collect();
        assert!(
            offsets.len() > 5,
            "offsets spread over the trace: {offsets:?}"
        );
    }
}
