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

use crate::node::admin_socket;
use crate::store::StateDir;

/// Where the admin socket is: `--socket`; else, for `--node-name`, the path that node
/// published in the state directory (`<state>/sockets/<node>`, see
/// [`crate::node::admin_socket`]), or `/run/ferroplane/<node>.sock`; else the only socket
/// published in the state directory, or the only one in `/run/ferroplane`.
#[derive(Debug, clap::Args)]
pub struct SocketArgs {
    /// The node process's admin socket.
    #[arg(long, env = "FERROPLANE_ADMIN_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Node whose socket to use: the one it published in the state directory (--state,
    /// FERROPLANE_STATE), else /run/ferroplane/NODE.sock.
    #[arg(long, env = "FERROPLANE_NODE_NAME")]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

const SOCKET_DIR: &str = "/run/ferroplane";

impl SocketArgs {
    /// The TCP endpoint when `--admin-url` is given, else the admin socket.
    pub fn endpoint(&self, state: &StateDir) -> Result<Endpoint, String> {
        match self.remote.endpoint()? {
            Some(endpoint) => Ok(endpoint),
            None => Ok(Endpoint::Unix(self.path(state)?)),
        }
    }

    pub fn path(&self, state: &StateDir) -> Result<PathBuf, String> {
        if let Some(path) = &self.socket {
            return Ok(path.clone());
        }
        let published = state.root().join(admin_socket::SOCKETS_DIR);
        if let Some(node) = &self.node_name {
            let record = admin_socket::published_path(state.root(), node);
            return Ok(read_published(&record)
                .unwrap_or_else(|| Path::new(SOCKET_DIR).join(format!("{node}.sock"))));
        }
        let records = entries(&published, |p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        });
        if let [one] = records.as_slice()
            && let Some(path) = read_published(one)
        {
            return Ok(path);
        }
        if records.len() > 1 {
            return Err(format!(
                "several nodes published admin sockets in {}: pass --node-name or --socket",
                published.display()
            ));
        }
        let sockets = entries(Path::new(SOCKET_DIR), |p| {
            p.extension().is_some_and(|x| x == "sock")
        });
        match sockets.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "no admin socket in {SOCKET_DIR} or {}: is `ferroplane run` running? (or pass \
                 --socket, or --state for a node that reads another state directory)",
                published.display()
            )),
            _ => Err(format!(
                "several admin sockets in {SOCKET_DIR}: pass --socket or --node-name"
            )),
        }
    }
}

/// The entries of `dir` that `keep` accepts (none when it cannot be read).
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default()
}

/// The socket path a node published in `record`.
fn read_published(record: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(record).ok()?;
    let path = text.trim_end_matches('\n');
    (!path.is_empty()).then(|| PathBuf::from(path))
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
