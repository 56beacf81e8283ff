//! The testbed's one error type: a sentence saying what failed and why.

use std::fmt;

/// What went wrong, with the command or file involved.
#[derive(Debug)]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("JSON: {e}"))
    }
}

/// An error with `context` in front of an I/O or parse failure.
pub fn context<E: fmt::Display>(context: impl fmt::Display) -> impl FnOnce(E) -> Error {
    move |e| Error(format!("{context}: {e}"))
}
