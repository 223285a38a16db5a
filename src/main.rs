//! The `moesim` binary: parse the command line, call the library, map errors to exit codes.

fn main() -> std::process::ExitCode {
    moesim::cli::main()
}
