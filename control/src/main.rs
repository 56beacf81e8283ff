//! The `ferroplane` binary: parses the command line and runs the verb.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    control::cli::run(control::cli::Cli::parse())
}
