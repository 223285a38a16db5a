//! `moesim trace concat`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::trace::{self, RoutingTrace, Trace, parquet};

/// Arguments of `moesim trace concat`.
#[derive(Debug, Args)]
pub struct ConcatArgs {
    /// Token-level traces with the same experts and layers, played in this order.
    #[arg(required = true, num_args = 2..)]
    traces: Vec<PathBuf>,
    /// Where to write the joined trace (moesim Parquet).
    #[arg(short, long)]
    out: PathBuf,
}

impl ConcatArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let (first, rest) = self
            .traces
            .split_first()
            .expect("clap requires at least two traces");
        let mut joined = tokens_of(first)?;
        let mut sizes = vec![joined.num_tokens().to_string()];
        for path in rest {
            let part = tokens_of(path)?;
            sizes.push(part.num_tokens().to_string());
            joined.append(&part).map_err(|e| e.in_file(path))?;
        }
        let names: Vec<String> = self
            .traces
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let source = format!("moesim trace concat {}", names.join(" "));
        parquet::write_trace(&self.out, &Trace::Tokens(joined), &source)?;
        eprintln!(
            "wrote {} ({} tokens)",
            self.out.display(),
            sizes.join(" + ")
        );
        Ok(())
    }
}

/// The token-level trace at `path`; loads-only files are refused.
fn tokens_of(path: &Path) -> anyhow::Result<RoutingTrace> {
    match trace::load(path)? {
        Trace::Tokens(routing) => Ok(routing),
        Trace::Loads(_) => anyhow::bail!(
            "{}: holds per-expert loads only; concat needs token-level traces",
            path.display()
        ),
    }
}
