//! `moesim trace validate`.

use std::path::PathBuf;

use clap::Args;

use crate::model::MoeModel;
use crate::trace::{self, validate};

/// Arguments of `moesim trace validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The trace to check (Parquet or any importable format).
    trace: PathBuf,
    /// The model the trace should fit (preset name or config.json): its routed expert count
    /// bounds the ids.
    #[arg(long, conflicts_with = "num_experts")]
    model: Option<String>,
    /// Routed experts per layer, when no model is given. Defaults to the trace's own count.
    #[arg(long)]
    num_experts: Option<usize>,
}

impl ValidateArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let loaded = trace::load_for_validation(&self.trace)?;
        let num_experts = match (&self.model, self.num_experts) {
            (Some(spec), _) => MoeModel::resolve(spec)?.num_experts,
            (None, Some(n)) => n,
            (None, None) => loaded.num_experts(),
        };
        let validation = validate::validate(&loaded, num_experts);
        if validation.is_clean() {
            println!(
                "{}: ok ({} layers, {num_experts} experts)",
                self.trace.display(),
                loaded.num_layers()
            );
            return Ok(());
        }
        print!("{validation}");
        anyhow::bail!(
            "{}: {} violation(s)",
            self.trace.display(),
            validation.total
        )
    }
}
