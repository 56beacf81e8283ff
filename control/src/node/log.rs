//! The node process's log: one line per event on standard error, with a UTC timestamp and a
//! level. Never called from a worker's packet path.

use std::fmt::Arguments;

fn line(level: &str, message: Arguments<'_>) {
    eprintln!("{} {level} {message}", jiff::Timestamp::now());
}

pub fn info(message: Arguments<'_>) {
    line("INFO", message);
}

pub fn warn(message: Arguments<'_>) {
    line("WARN", message);
}

pub fn error(message: Arguments<'_>) {
    line("ERROR", message);
}
