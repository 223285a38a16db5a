use super::*;
use crate::placement::LayerPlacement;

fn tiny() -> Placement {
    // Layer 0: GPU 0 [0 1], GPU 1 [2 0]; layer 1: GPU 0 [1 2], GPU 1 [0 2].
    let layers = vec![
        LayerPlacement {
            gpu_experts: vec![vec![0, 1], vec![2, 0]],
        },
        LayerPlacement {
            gpu_experts: vec![vec![1, 2], vec![0, 2]],
        },
    ];
    Placement::new(2, 3, 2, layers).unwrap()
}

#[test]
fn moesim_json_is_exact_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    write_placement(&path, &tiny(), Some("eplb"), ExportFormat::Moesim).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        r#"{"format_version":1,"strategy":"eplb","placement":{"num_gpus":2,"num_experts":3,"slots_per_gpu":2,"layers":[{"gpu_experts":[[0,1],[2,0]]},{"gpu_experts":[[1,2],[0,2]]}]}}"#
    );
    let back = read_placement(&path).unwrap();
    assert_eq!(back.placement, tiny());
    assert_eq!(back.strategy.as_deref(), Some("eplb"));
}

#[test]
fn bad_placement_files_name_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    let cases = [
        (
            r#"{"format_version":2,"placement":{}}"#,
            "format_version 2 is not supported (this build reads 1)",
        ),
        (r#"{"placement":{}}"#, "no numeric `format_version` field"),
        (
            r#"[[[0], [2]]]"#,
            "placement layer 0: expert 1 has no replica",
        ),
        (
            r#"[[["x"]]]"#,
            "an ExFlow placement is [layer][gpu] -> [expert ids]",
        ),
        (
            r#"{"format_version":1,"strategy":null,"placement":{"num_gpus":1,"num_experts":2,"slots_per_gpu":1,"layers":[{"gpu_experts":[[0]]}]}}"#,
            "placement layer 0: expert 1 has no replica",
        ),
        (
            r#"{"format_version":1,"placement":{"num_gpus":1},"extra":3}"#,
            "unknown field `extra`",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let err = read_placement(&path).unwrap_err().to_string();
        assert!(err.contains("p.json") && err.contains(expected), "{err}");
    }
}

#[test]
fn exflow_placements_read_as_placements() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exflow.json");
    std::fs::write(&path, "[[[0, 1], [2, 0]], [[1, 2], [0, 2]]]").unwrap();
    let document = read_placement(&path).unwrap();
    assert_eq!(document.placement, tiny());
    assert_eq!(document.strategy, None);
}

#[test]
fn sglang_maps_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maps.json");
    write_placement(&path, &tiny(), None, ExportFormat::Sglang).unwrap();
    // Physical slots: GPU 0 -> 0, 1; GPU 1 -> 2, 3. Layer 0: expert 0 in slots 0 and 3.
    // Layer 1: expert 2 in slots 1 and 3. Padding to two replicas everywhere.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"{"physical_to_logical_map":[[0,1,2,0],[1,2,0,2]],"logical_to_all_physical_map":[[[0,3],[1,-1],[2,-1]],[[2,-1],[0,-1],[1,3]]],"logical_count":[[2,1,1],[1,1,2]]}"#
    );
    let partial = Placement::new(
        2,
        3,
        2,
        vec![LayerPlacement {
            gpu_experts: vec![vec![0, 1], vec![2]],
        }],
    )
    .unwrap();
    let err = expert_location_maps(&partial).unwrap_err().to_string();
    assert!(
        err.contains("at layer 0 GPU 1 uses 1 of its 2 slots"),
        "{err}"
    );
}
