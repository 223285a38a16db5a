//! Test-only access to the real third-party routing data in `MOESIM_SHARED_DATA`.
//!
//! The switch-base traces are numpy `.npy` files of little-endian int64, shape [tokens, layers]
//! (top-1). This reader handles exactly that layout; the real importer lives in trace/importers.

use std::path::PathBuf;

use crate::trace::{ExpertId, RoutingTrace};

/// The shared data folder, or `None` (after printing the skip notice) when it is not available.
pub fn shared_data() -> Option<PathBuf> {
    match std::env::var_os("MOESIM_SHARED_DATA").map(PathBuf::from) {
        Some(dir) if dir.is_dir() => Some(dir),
        _ => {
            eprintln!("skipping: MOESIM_SHARED_DATA not set");
            None
        }
    }
}

/// Reads `switch-top1/switch-base-{experts}.trace.npy` as a top-1 trace.
pub fn switch_trace(data: &std::path::Path, experts: usize) -> RoutingTrace {
    let path = data.join(format!("switch-top1/switch-base-{experts}.trace.npy"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        &bytes[..6],
        b"\x93NUMPY",
        "{}: not an npy file",
        path.display()
    );
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[header_start..header_start + header_len]).unwrap();
    assert!(header.contains("'descr': '<i8'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let dims: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let body = &bytes[header_start + header_len..];
    assert_eq!(body.len(), dims[0] * dims[1] * 8, "{header}");
    let ids: Vec<ExpertId> = body
        .chunks_exact(8)
        .map(|v| {
            let id = i64::from_le_bytes(v.try_into().unwrap());
            ExpertId::try_from(id).unwrap()
        })
        .collect();
    RoutingTrace::from_dense(experts, dims[1], 1, &ids).unwrap()
}
