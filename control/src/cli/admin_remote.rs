//! How the CLI reaches a node's admin API: its Unix socket, or its TCP endpoint
//! (`--admin-url http(s)://HOST:PORT`, the bearer token from `--token-file`, TLS trusting only
//! the CA of `--ca-file`). One GET per connection with hyper's HTTP/1.1 client on a
//! current-thread tokio runtime; the body is read as it arrives (chunked or not).
//!
//! Invariants: `https` without a CA file, or a TCP endpoint without a token, is an error before
//! anything is sent; every error names the endpoint.

use std::io::{self, Read};
use std::path::PathBuf;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::runtime::Runtime;

/// `--admin-url` and what goes with it.
#[derive(Debug, Default, clap::Args)]
pub struct RemoteArgs {
    /// The node's TCP admin endpoint (https://HOST:PORT, or http:// without TLS) instead of
    /// its admin socket.
    #[arg(long, env = "FERROPLANE_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// File holding the bearer token the TCP admin endpoint wants.
    #[arg(long, env = "FERROPLANE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for an https admin endpoint.
    #[arg(long, env = "FERROPLANE_ADMIN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Where the admin API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        url: String,
        host: String,
        port: u16,
        token: String,
        /// For https.
        ca_file: Option<PathBuf>,
    },
}

impl RemoteArgs {
    /// The TCP endpoint, when `--admin-url` is given.
    pub fn endpoint(&self) -> Result<Option<Endpoint>, String> {
        let Some(url) = &self.admin_url else {
            return Ok(None);
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--admin-url {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "--admin-url {url:?}: use https://HOST:PORT or http://HOST:PORT"
                ));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--admin-url {url:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let token_file = self.token_file.as_ref().ok_or_else(|| {
            format!("--admin-url {url}: needs --token-file (the endpoint wants a bearer token)")
        })?;
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("--token-file {}: {e}", token_file.display()))?
            .trim()
            .to_owned();
        if tls && self.ca_file.is_none() {
            return Err(format!(
                "--admin-url {url}: https needs --ca-file (the CA that signed the node's certificate)"
            ));
        }
        Ok(Some(Endpoint::Tcp {
            url: url.clone(),
            host,
            port,
            token,
            ca_file: if tls { self.ca_file.clone() } else { None },
        }))
    }
}

impl Endpoint {
    fn name(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("admin socket {}", path.display()),
            Endpoint::Tcp { url, .. } => format!("admin endpoint {url}"),
        }
    }
}

/// A 200 answer's body, read as it arrives.
struct BodyReader {
    runtime: Runtime,
    body: Incoming,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.body.frame()) {
                None => return Ok(0),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.chunk = data;
                    }
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.chunk.len());
        self.chunk.copy_to_slice(&mut out[..n]);
        Ok(n)
    }
}

async fn send<I>(io: I, request: Request<Empty<Bytes>>) -> Result<hyper::Response<Incoming>, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

async fn exchange(endpoint: &Endpoint, target: &str) -> Result<hyper::Response<Incoming>, String> {
    let mut request = Request::get(target).header(HOST, "ferroplane");
    match endpoint {
        Endpoint::Unix(path) => {
            let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
            let io = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| e.to_string())?;
            send(io, request).await
        }
        Endpoint::Tcp {
            host,
            port,
            token,
            ca_file,
            ..
        } => {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
            let io = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| e.to_string())?;
            match ca_file {
                None => send(io, request).await,
                Some(ca_file) => {
                    let connector = crate::node::tls::connector(ca_file)?;
                    let name =
                        ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
                    let io = connector
                        .connect(name, io)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    send(io, request).await
                }
            }
        }
    }
}

/// Sends `GET target` and returns the body reader once the server answered 200.
pub fn get(endpoint: &Endpoint, target: &str) -> Result<impl Read + use<>, String> {
    let fail = |e: String| format!("{}: {e}", endpoint.name());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = runtime.block_on(exchange(endpoint, target)).map_err(fail)?;
    let status = response.status();
    let mut reader = BodyReader {
        runtime,
        body: response.into_body(),
        chunk: Bytes::new(),
    };
    if status != hyper::StatusCode::OK {
        let mut message = String::new();
        let _ = reader.read_to_string(&mut message);
        return Err(format!("{target}: {}: {}", status.as_u16(), message.trim()));
    }
    Ok(reader)
}
