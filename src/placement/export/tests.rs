use super::*;
use crate::model::MoeModel;
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
    write_placement(&path, &tiny(), Some("eplb"), ExportFormat::Moesim, None).unwrap();
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

/// A model of 4 decoder layers (the first 2 dense) with the 3 experts of [`tiny`].
fn small_model() -> MoeModel {
    let mut model = MoeModel::preset("deepseek-v3").unwrap();
    model.name = "small".into();
    model.num_layers = 4;
    model.first_moe_layer = 2;
    model.num_experts = 3;
    model
}

#[test]
fn sglang_file_has_the_map_alone_one_row_per_decoder_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("location.json");
    write_placement(
        &path,
        &tiny(),
        None,
        ExportFormat::Sglang,
        Some(&small_model()),
    )
    .unwrap();
    // Physical slots: GPU 0 -> 0, 1; GPU 1 -> 2, 3. Dense layers 0 and 1 get SGLang's trivial
    // row p % 3; MoE layers 2 and 3 are the placement's layers 0 and 1.
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        r#"{"physical_to_logical_map":[[0,1,2,0],[0,1,2,0],[0,1,2,0],[1,2,0,2]]}"#
    );
    // A placement with a layer per decoder layer keeps its MoE rows in place.
    let mut four = tiny().layers().to_vec();
    four.extend_from_slice(tiny().layers());
    let deep = Placement::new(2, 3, 2, four).unwrap();
    let maps = sglang_expert_location(&deep, &small_model()).unwrap();
    assert_eq!(maps.physical_to_logical_map[2], [0, 1, 2, 0]);
    assert_eq!(maps.physical_to_logical_map[3], [1, 2, 0, 2]);
}

#[test]
fn sglang_file_needs_the_model_a_json_name_and_full_slots() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let message = |result: Result<()>| result.unwrap_err().to_string();
    assert!(
        message(write_placement(
            &json,
            &tiny(),
            None,
            ExportFormat::Sglang,
            None
        ))
        .starts_with("--format sglang needs --model")
    );
    let txt = dir.path().join("m.txt");
    assert!(
        message(write_placement(
            &txt,
            &tiny(),
            None,
            ExportFormat::Sglang,
            Some(&small_model())
        ))
        .ends_with(
            "m.txt: SGLang's --init-expert-location reads a file only when its name ends in .json"
        )
    );
    let mut other = small_model();
    other.num_layers = 6;
    assert_eq!(
        sglang_expert_location(&tiny(), &other)
            .unwrap_err()
            .to_string(),
        "the placement has 2 layers but model small has 4 MoE layers (6 decoder layers)"
    );
    other.num_experts = 4;
    assert_eq!(
        sglang_expert_location(&tiny(), &other)
            .unwrap_err()
            .to_string(),
        "the placement has 3 experts but model small has 4"
    );
    let partial = Placement::new(
        2,
        3,
        2,
        vec![
            LayerPlacement {
                gpu_experts: vec![vec![0, 1], vec![2, 0]],
            },
            LayerPlacement {
                gpu_experts: vec![vec![0, 1], vec![2]],
            },
        ],
    )
    .unwrap();
    let err = sglang_expert_location(&partial, &small_model())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at layer 1 GPU 1 uses 1 of its 2 slots"),
        "{err}"
    );
    assert!(!json.exists() && !txt.exists());
}

#[test]
fn a_wrong_type_names_its_path() {
    // Issue 15 defect 8: one expert id 1.5.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(
        &path,
        r#"{"format_version":1,"strategy":null,"placement":{"num_gpus":2,"num_experts":3,"slots_per_gpu":2,"layers":[{"gpu_experts":[[0,1],[2,1.5]]}]}}"#,
    )
    .unwrap();
    let err = read_placement(&path).unwrap_err().to_string();
    assert!(
        err.ends_with(
            "p.json: placement.layers[0].gpu_experts[1][1]: invalid type: floating point `1.5`, \
             expected u16"
        ),
        "{err}"
    );
    std::fs::write(&path, "[[[0], [1, 2.5]]]").unwrap();
    let err = read_placement(&path).unwrap_err().to_string();
    assert!(
        err.ends_with("[0][1][1]: invalid type: floating point `2.5`, expected u16"),
        "{err}"
    );
}
