//! Standard output of the verbs. A reader that goes away (`ferroplane conntrack list | head`)
//! ends the process the way other Unix tools end: killed by SIGPIPE, quietly (the shell sees
//! status 141), instead of the panic of `print!` ("failed printing to stdout: Broken pipe").
//! Any other write error is reported on standard error and the process exits with status 1.
//!
//! Invariant: every verb writes its results through [`out!`]/[`outln!`] or
//! [`write_or_exit`], never through `print!`; the node process (`run`) and `dns` keep SIGPIPE
//! ignored, as the Rust runtime sets it, so a peer closing a socket never kills them.

use std::fmt;
use std::io::{self, Write};

/// `print!` that ends the process quietly when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!($($arg)*))
    };
}

/// `println!` that ends the process quietly when the reader went away.
macro_rules! outln {
    () => {
        $crate::cli::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};

/// Writes `args` to standard output (see the module doc for failures).
pub fn print(args: fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args) {
        stdout_failed(&error);
    }
}

/// Flushes standard output before the process exits (see the module doc for failures).
pub fn flush() {
    if let Err(error) = io::stdout().flush() {
        stdout_failed(&error);
    }
}

/// `result` of a write to standard output, ending the process when it failed.
pub fn write_or_exit<T>(result: io::Result<T>) -> T {
    result.unwrap_or_else(|error| stdout_failed(&error))
}

/// Ends the process after a failed write to standard output: by SIGPIPE when the reader went
/// away, else with status 1 and the error on standard error.
pub fn stdout_failed(error: &io::Error) -> ! {
    if error.kind() == io::ErrorKind::BrokenPipe {
        // Restores the default action of SIGPIPE (terminate) and raises it.
        let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
        // Not reached unless the signal is blocked: the status a shell would show.
        std::process::exit(128 + signal_hook::consts::SIGPIPE);
    }
    let _ = writeln!(io::stderr(), "error: writing standard output: {error}");
    std::process::exit(1);
}
