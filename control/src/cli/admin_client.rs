//! The client side of the node process's admin API, for the `stats`, `conntrack`, `monitor`
//! and `capture` verbs: one GET per connection over the admin Unix socket.
//!
//! Invariant: a non-200 answer becomes an error carrying the server's message; a 200 body is
//! handed to the caller as it arrives, so streams are never buffered whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Where the admin socket is: `--socket`, else `/run/ferroplane/<node>.sock` for
/// `--node-name`, else the only socket in `/run/ferroplane`.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The node process's admin socket.
    #[arg(long, env = "FERROPLANE_ADMIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Node whose default socket (/run/ferroplane/NODE.sock) to use.
    #[arg(long, env = "FERROPLANE_NODE_NAME")]
    pub node_name: Option<String>,
}

const SOCKET_DIR: &str = "/run/ferroplane";

impl SocketArgs {
    pub fn path(&self) -> Result<PathBuf, String> {
        if let Some(path) = &self.socket {
            return Ok(path.clone());
        }
        if let Some(node) = &self.node_name {
            return Ok(Path::new(SOCKET_DIR).join(format!("{node}.sock")));
        }
        let sockets: Vec<PathBuf> = std::fs::read_dir(SOCKET_DIR)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                    .collect()
            })
            .unwrap_or_default();
        match sockets.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "no admin socket in {SOCKET_DIR}: is `ferroplane run` running? (or pass --socket)"
            )),
            _ => Err(format!(
                "several admin sockets in {SOCKET_DIR}: pass --socket or --node-name"
            )),
        }
    }
}

/// Sends `GET target` and returns the body reader once the server answered 200.
pub fn get(socket: &Path, target: &str) -> Result<impl Read + use<>, String> {
    let fail = |e: std::io::Error| format!("admin socket {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: ferroplane\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).map_err(fail)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("admin socket {}: not an HTTP answer", socket.display()))?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_err(fail)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    if status != 200 {
        let mut message = String::new();
        let _ = reader.read_to_string(&mut message);
        return Err(format!("{target}: {status}: {}", message.trim()));
    }
    Ok(reader)
}

/// `GET target`, whole body as text.
pub fn get_text(socket: &Path, target: &str) -> Result<String, String> {
    let mut body = String::new();
    get(socket, target)?
        .read_to_string(&mut body)
        .map_err(|e| format!("{target}: {e}"))?;
    Ok(body)
}
