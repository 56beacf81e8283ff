//! The client side of the node process's admin API, for the `stats`, `conntrack`, `monitor`
//! and `capture` verbs: one GET per connection over the admin Unix socket, or over the TCP
//! admin endpoint (`--admin-url`, with its token, over TLS trusting `--ca-file`); HTTP is
//! hyper's (see `admin_remote`).
//!
//! Invariant: a non-200 answer becomes an error carrying the server's message; a 200 body is
//! handed to the caller as it arrives, so streams are never buffered whole.

use std::io::Read;
use std::path::{Path, PathBuf};

pub use super::admin_remote::{Endpoint, RemoteArgs};

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
    #[command(flatten)]
    pub remote: RemoteArgs,
}

const SOCKET_DIR: &str = "/run/ferroplane";

impl SocketArgs {
    /// The TCP endpoint when `--admin-url` is given, else the admin socket.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        match self.remote.endpoint()? {
            Some(endpoint) => Ok(endpoint),
            None => Ok(Endpoint::Unix(self.path()?)),
        }
    }

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
pub fn get(endpoint: &Endpoint, target: &str) -> Result<impl Read + use<>, String> {
    super::admin_remote::get(endpoint, target)
}

/// `GET target`, whole body as text.
pub fn get_text(endpoint: &Endpoint, target: &str) -> Result<String, String> {
    let mut body = String::new();
    get(endpoint, target)?
        .read_to_string(&mut body)
        .map_err(|e| format!("{target}: {e}"))?;
    Ok(body)
}
