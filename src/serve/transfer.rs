//! The KV hand-off between disaggregated pools: a request's KV cache leaves its prefill rank
//! when its prefill step ends, and the request may decode once the last byte has landed on its
//! decode rank (SGLang's and vLLM's PD connectors send it over RDMA and admit on arrival).

/// Carries KV caches from prefill ranks to decode ranks. The engine calls it in non-decreasing
/// simulated time; the pipeline runs the transfers as flows on the simulated network.
pub trait KvTransport {
    /// Starts sending `bytes` from prefill rank `from` to decode rank `to` at `at_ns`; the
    /// transfer is known by `ticket` when it lands.
    fn start(&mut self, at_ns: u64, from: usize, to: usize, bytes: u64, ticket: u64);
    /// When the transport next changes by itself (a flow drains or a transfer lands), if ever.
    fn next_event_ns(&self) -> Option<u64>;
    /// Moves the transport to `now_ns` (at most [`KvTransport::next_event_ns`]) and appends the
    /// tickets of the transfers that landed at `now_ns`, in ticket order.
    fn advance(&mut self, now_ns: u64, landed: &mut Vec<u64>);
}

/// How the KV caches of a prefill pool reach the decode pool.
pub struct Handoff<'p> {
    /// The transport that carries them.
    pub transport: Box<dyn KvTransport + 'p>,
    /// KV-cache bytes of one token, all layers, on one rank.
    pub kv_bytes_per_token: f64,
}
