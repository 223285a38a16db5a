//! The simulated timeline as a Chrome trace (JSON "trace event format"), which
//! ui.perfetto.dev and chrome://tracing open: one process per simulated strategy, with one
//! track per GPU stream (a slice per kernel) and one per link that carried bytes (a slice per
//! busy interval, overlapping transfers merged). Times are microseconds, as the format wants.

use serde_json::{Value, json};

use super::engine::{TaskGraph, Timeline, Work};
use super::step::{Label, Phase};
use crate::topology::Cluster;

/// Track ids of links start here, after any GPU stream's.
const LINK_TRACK_BASE: usize = 1_000_000;

/// Thread ids of GPU communication streams start here (GPU `g`'s is this plus `g`).
const COMM_TRACK_BASE: usize = 500_000;

/// Appends the events of one simulated step to `events`, as process `pid` named `name`.
pub fn append_events(
    events: &mut Vec<Value>,
    pid: usize,
    name: &str,
    graph: &TaskGraph<'_, Label>,
    timeline: &Timeline,
    cluster: &Cluster,
) {
    events.push(meta("process_name", pid, 0, name));
    for gpu in 0..cluster.num_gpus() {
        events.push(meta("thread_name", pid, gpu, &format!("gpu{gpu} compute")));
    }
    let mut comm_tracks = std::collections::BTreeSet::new();
    for id in 0..graph.len() as u32 {
        let task = graph.task(id);
        let Work::Compute { gpu, stream, .. } = task.work else {
            continue;
        };
        let (start, end) = (timeline.start_ns[id as usize], timeline.end_ns[id as usize]);
        let name = format!("L{} {}", task.label.layer, phase_name(task.label.phase));
        let tid = match stream {
            0 => gpu as usize,
            _ => COMM_TRACK_BASE + gpu as usize,
        };
        if tid != gpu as usize && comm_tracks.insert(gpu) {
            let track = format!("gpu{gpu} communication");
            events.push(meta("thread_name", pid, tid, &track));
        }
        events.push(slice(&name, pid, tid, start, end));
    }
    for (id, link) in cluster.links() {
        let intervals = &timeline.link_busy[id.index()];
        if intervals.is_empty() {
            continue;
        }
        let tid = LINK_TRACK_BASE + id.index();
        events.push(meta("thread_name", pid, tid, &link.name));
        for &(start, end) in intervals {
            events.push(slice("busy", pid, tid, start, end));
        }
    }
}

/// The whole trace document around `events`.
pub fn document(events: Vec<Value>) -> Value {
    json!({ "traceEvents": events, "displayTimeUnit": "ns" })
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Attention => "attention",
        Phase::Dispatch => "dispatch",
        Phase::Expert => "experts",
        Phase::Combine => "combine",
        Phase::TpReduce => "tp-reduce-scatter",
        Phase::Sync => "sync",
    }
}

fn slice(name: &str, pid: usize, tid: usize, start_ns: u64, end_ns: u64) -> Value {
    json!({
        "name": name, "ph": "X", "pid": pid, "tid": tid,
        "ts": start_ns as f64 / 1e3, "dur": (end_ns - start_ns) as f64 / 1e3,
    })
}

fn meta(kind: &str, pid: usize, tid: usize, name: &str) -> Value {
    json!({ "name": kind, "ph": "M", "pid": pid, "tid": tid, "args": { "name": name } })
}
