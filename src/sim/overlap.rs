//! Overlap strategies: how a layer's communication and computation overlap, as the shape of its
//! task graph. Each is a plug-in in [`OVERLAPS`], selected by name in `[sim] overlap` and tuned
//! in its own table (`[sim.chunked] chunks = 4`).

use serde::Deserialize;

use crate::plugin_entry;
use crate::registry::{NoSettings, Plugin, Registry};

/// The shape a strategy gives each layer's task graph ([`super::step`] builds it).
pub trait OverlapStrategy: Send + Sync + std::fmt::Debug {
    /// Micro-batches a layer's tokens are split into, each running the whole layer; one's
    /// all-to-all runs under another's compute.
    fn micro_batches(&self) -> usize {
        1
    }

    /// Pieces each micro-batch's dispatch, experts and combine are cut into and pipelined.
    fn pieces(&self) -> usize {
        1
    }

    /// Whether the pieces are tiles of one fused kernel (expert weights read once, each
    /// all-to-all launched once) rather than separate grouped GEMMs and all-to-alls.
    fn fused(&self) -> bool {
        false
    }

    /// Whether communication kernels run while GEMMs do, taking SMs from them.
    fn overlaps_compute(&self) -> bool {
        true
    }
}

/// Every overlap strategy, by name.
pub static OVERLAPS: Registry<dyn OverlapStrategy> = Registry {
    kind: "overlap strategy",
    entries: &[
        plugin_entry!(OverlapStrategy, NoOverlap),
        plugin_entry!(OverlapStrategy, DualBatch),
        plugin_entry!(OverlapStrategy, Chunked),
        plugin_entry!(OverlapStrategy, FineGrained),
    ],
};

/// Attention, dispatch, experts and combine one after another.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOverlap;

impl OverlapStrategy for NoOverlap {
    fn overlaps_compute(&self) -> bool {
        false
    }
}

impl Plugin for NoOverlap {
    const NAME: &'static str = "none";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(NoOverlap)
    }
}

/// Two micro-batches of half the tokens; one's all-to-all runs under the other's compute
/// (DeepSeek's dual micro-batch overlap).
#[derive(Debug, Clone, Copy, Default)]
pub struct DualBatch;

impl OverlapStrategy for DualBatch {
    fn micro_batches(&self) -> usize {
        2
    }
}

impl Plugin for DualBatch {
    const NAME: &'static str = "dual-batch";
    type Settings = NoSettings;

    fn with_settings(_: NoSettings) -> Result<Self, String> {
        Ok(DualBatch)
    }
}

/// Tokens split into `chunks` chunks, pipelined dispatch -> experts -> combine, each chunk a
/// separate grouped GEMM that re-reads its experts' weights (Tutel-style).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chunked {
    /// Pipelining degree.
    pub chunks: u32,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { chunks: 4 }
    }
}

impl OverlapStrategy for Chunked {
    fn pieces(&self) -> usize {
        self.chunks as usize
    }
}

impl Plugin for Chunked {
    const NAME: &'static str = "chunked";
    type Settings = Chunked;

    fn with_settings(settings: Chunked) -> Result<Self, String> {
        check_pieces("chunks", settings.chunks)?;
        Ok(settings)
    }
}

/// Tile-level overlap inside one fused kernel (Comet-style): the experts' work is split into
/// `tiles` equal pieces that start as their tokens arrive; weights are read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FineGrained {
    /// Pieces each GPU's expert work is split into.
    pub tiles: u32,
}

impl Default for FineGrained {
    fn default() -> Self {
        FineGrained { tiles: 8 }
    }
}

impl OverlapStrategy for FineGrained {
    fn pieces(&self) -> usize {
        self.tiles as usize
    }

    fn fused(&self) -> bool {
        true
    }
}

impl Plugin for FineGrained {
    const NAME: &'static str = "fine-grained";
    type Settings = FineGrained;

    fn with_settings(settings: FineGrained) -> Result<Self, String> {
        check_pieces("tiles", settings.tiles)?;
        Ok(settings)
    }
}

/// Most pieces a layer may be cut into: every piece adds an all-to-all of every GPU pair to the
/// step's graph, so beyond this the graph outgrows memory long before the answer changes.
pub const MAX_PIECES: u32 = 256;

/// `pieces` must be in 1..=[`MAX_PIECES`]; the message names the knob.
fn check_pieces(knob: &str, pieces: u32) -> Result<(), String> {
    if (1..=MAX_PIECES).contains(&pieces) {
        Ok(())
    } else {
        Err(format!(
            "`{knob}` = {pieces} is out of range: 1 to {MAX_PIECES}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Settings;

    fn table(text: &str) -> Settings {
        text.parse().unwrap()
    }

    #[test]
    fn each_strategy_is_built_by_its_name_with_its_own_knobs() {
        let names: Vec<&str> = OVERLAPS.names().collect();
        assert_eq!(names, ["none", "dual-batch", "chunked", "fine-grained"]);
        let chunked = OVERLAPS.build("chunked", &table("chunks = 3")).unwrap();
        assert_eq!((chunked.micro_batches(), chunked.pieces()), (1, 3));
        assert!(!chunked.fused());
        let tiles = OVERLAPS.build("fine-grained", &Settings::new()).unwrap();
        assert_eq!(tiles.pieces(), 8);
        assert!(tiles.fused());
        let dual = OVERLAPS.build("dual-batch", &Settings::new()).unwrap();
        assert_eq!((dual.micro_batches(), dual.pieces()), (2, 1));
        assert!(
            !OVERLAPS
                .build("none", &Settings::new())
                .unwrap()
                .overlaps_compute()
        );
    }

    #[test]
    fn a_knob_of_another_strategy_or_out_of_range_is_named() {
        let err = OVERLAPS.build("chunked", &table("tiles = 3")).unwrap_err();
        assert!(
            err.contains("overlap strategy `chunked`") && err.contains("`tiles`"),
            "{err}"
        );
        let err = OVERLAPS.build("none", &table("chunks = 3")).unwrap_err();
        assert!(err.contains("`chunks`"), "{err}");
        let err = OVERLAPS
            .build("fine-grained", &table("tiles = 65536"))
            .unwrap_err();
        assert!(
            err.contains("`tiles` = 65536 is out of range: 1 to 256"),
            "{err}"
        );
        let err = OVERLAPS.build("chunked", &table("chunks = 0")).unwrap_err();
        assert!(err.contains("`chunks` = 0"), "{err}");
        let err = OVERLAPS.build("pipelined", &Settings::new()).unwrap_err();
        assert!(
            err.contains("unknown overlap strategy `pipelined`; known: none,"),
            "{err}"
        );
    }
}
