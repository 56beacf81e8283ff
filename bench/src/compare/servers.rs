//! The backends' servers, as threads of this process whose sockets were opened inside the
//! backend pods' namespaces, pinned to the load CPU: a UDP sink that counts datagrams
//! (`recvmmsg` batches), a UDP echo, a TCP server that answers one byte and closes, and an
//! iperf3 server process on the first backend.
//!
//! Invariants: every thread wakes at least every [`POLL`] to see the stop flag (the TCP
//! accept is woken by shutting the listener down), so stopping is bounded; the sink's count
//! only grows; the TCP server serves one connection at a time and never waits on a client
//! longer than [`CLIENT_WAIT`].

use std::io::{IoSliceMut, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use testbed::error::{Error, context};
use testbed::netns::within;

use super::Result;
use super::cpu::pin;
use super::plan::Cluster;
use super::services::{ECHO_PORT, IPERF_PORT, SINK_PORT, TCP_PORT};

/// How often a blocked server thread looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(100);
/// The longest a TCP connection may keep the server waiting for its byte.
pub const CLIENT_WAIT: Duration = Duration::from_secs(1);
const SINK_BATCH: usize = 64;
const SINK_BUFFER: usize = 32 << 20;

/// The running servers of every backend.
pub struct Servers {
    stop: Arc<AtomicBool>,
    sinks: Vec<Arc<AtomicU64>>,
    listeners: Vec<TcpListener>,
    threads: Vec<JoinHandle<()>>,
    iperf: Child,
}

impl Servers {
    /// Starts every server on every backend of `cluster`, threads pinned to `cpu`.
    pub fn start(cluster: &Cluster, cpu: usize) -> Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut sinks = Vec::new();
        let mut listeners = Vec::new();
        let mut threads = Vec::new();
        for backend in &cluster.backends {
            let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            let (sink, echo, listener) = within(&backend.ns, || {
                let sink = UdpSocket::bind(any(SINK_PORT)).map_err(context("UDP sink"))?;
                rustix::net::sockopt::set_socket_recv_buffer_size_force(&sink, SINK_BUFFER)
                    .map_err(context("sink SO_RCVBUFFORCE"))?;
                let echo = UdpSocket::bind(any(ECHO_PORT)).map_err(context("UDP echo"))?;
                let listener = TcpListener::bind(any(TCP_PORT)).map_err(context("TCP server"))?;
                Ok((sink, echo, listener))
            })?;
            sink.set_read_timeout(Some(POLL))?;
            echo.set_read_timeout(Some(POLL))?;
            let count = Arc::new(AtomicU64::new(0));
            sinks.push(Arc::clone(&count));
            let flag = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                if pin(cpu).is_ok() {
                    count_datagrams(&sink, &count, &flag);
                }
            }));
            let flag = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                if pin(cpu).is_ok() {
                    echo_datagrams(&echo, &flag);
                }
            }));
            let accepting = listener.try_clone()?;
            let flag = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                if pin(cpu).is_ok() {
                    answer_connections(&accepting, &flag);
                }
            }));
            listeners.push(listener);
        }
        let first = cluster
            .backends
            .first()
            .ok_or_else(|| Error("the cluster has no backend".to_owned()))?;
        let iperf = Command::new("ip")
            .args([
                "netns",
                "exec",
                &first.ns,
                "taskset",
                "-c",
                &cpu.to_string(),
            ])
            .args(["iperf3", "-s", "-p", &IPERF_PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(context("starting iperf3 -s (is iperf3 installed?)"))?;
        Ok(Servers {
            stop,
            sinks,
            listeners,
            threads,
            iperf,
        })
    }

    /// Datagrams counted by every sink so far.
    pub fn received(&self) -> u64 {
        self.sinks.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for listener in &self.listeners {
            // Wakes the thread blocked in accept(2) (Linux returns EINVAL there).
            let _ = rustix::net::shutdown(listener, rustix::net::Shutdown::Read);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = self.iperf.kill();
        let _ = self.iperf.wait();
    }
}

fn count_datagrams(socket: &UdpSocket, count: &AtomicU64, stop: &AtomicBool) {
    let mut buffers = vec![[0u8; 128]; SINK_BATCH];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(SINK_BATCH, None);
    let fd = socket.as_raw_fd();
    while !stop.load(Ordering::Relaxed) {
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        // MSG_WAITFORONE: block (up to the socket's timeout) for the first datagram only.
        if let Ok(batch) = recvmmsg(
            fd,
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            count.fetch_add(batch.count() as u64, Ordering::Relaxed);
        }
    }
}

fn echo_datagrams(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buffer = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((len, peer)) = socket.recv_from(&mut buffer) {
            // A lost echo is the client's timeout to see.
            let _ = socket.send_to(&buffer[..len], peer);
        }
    }
}

fn answer_connections(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut stream, _)) = listener.accept() else {
            continue;
        };
        let mut byte = [0u8; 1];
        let answered = stream
            .set_read_timeout(Some(CLIENT_WAIT))
            .and_then(|()| stream.read(&mut byte))
            .and_then(|n| {
                if n == 1 {
                    stream.write_all(&byte)
                } else {
                    Ok(())
                }
            });
        // The client may have gone (a connect-only probe resets): nothing to answer.
        drop(answered);
    }
}
