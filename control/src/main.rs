//! The `ferroplane` binary: parses the command line and runs the verb. Run under the name
//! `ferroplane-cni` (a copy or link, as a CNI runtime execs it) it is the CNI plugin.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    if invoked_as.as_deref() == Some(control::cni::PLUGIN_NAME) {
        return control::cni::main();
    }
    control::cli::run(control::cli::Cli::parse())
}
