//! Writes the example report comparing placement strategies in and out of sample
//! (reports/placement-example/): `cargo run --example placement_report -- DATA_ROOT OUT_DIR`,
//! where DATA_ROOT is the shared third-party data folder (e.g. ../shared/data).

use std::path::PathBuf;
use std::process::ExitCode;

use moesim::placement::holdout::{example_rows, markdown_table, write_report};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [data_root, out_dir] = args.as_slice() else {
        eprintln!("usage: placement_report DATA_ROOT OUT_DIR");
        return ExitCode::from(2);
    };
    match example_rows(data_root, true).and_then(|rows| {
        write_report(&rows, out_dir)?;
        Ok(rows)
    }) {
        Ok(rows) => {
            print!("{}", markdown_table(&rows));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}
