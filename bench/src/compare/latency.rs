//! Latency through the ClusterIP, measured from the client pod on the load CPU: UDP
//! request/response (one flow, sequential round trips to the echo port) and TCP connect time
//! of new connections (the first packet's trip through every dataplane decision).
//!
//! Invariants: every wait is bounded by [`REPLY_WAIT`] and every run by [`RUN_LIMIT`]; a
//! request that gets no answer is counted as lost, not timed; every answered sample is kept
//! (sorted) for the distribution; each connect uses a fresh source port and is closed with a
//! reset, so no TIME_WAIT state piles up between samples.

use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testbed::error::{Error, context};
use testbed::netns::within;

use super::Result;
use super::cpu::pin;
use super::distribution::Distribution;
use super::plan::Cluster;
use super::services::{BENCH_VIP, ECHO_PORT};

/// The longest a request waits for its answer (and a connect for its SYN-ACK).
pub const REPLY_WAIT: Duration = Duration::from_millis(500);
/// The longest one run of round trips or connects may take (it stops early, with fewer
/// samples, when a loaded dataplane is slow).
pub const RUN_LIMIT: Duration = Duration::from_secs(30);
const WARM_UP: usize = 20;

/// Latency of one run, in microseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub samples: usize,
    pub lost: usize,
    /// Every answered sample.
    pub distribution: Distribution,
}

fn summarize(samples: Vec<f64>, lost: usize) -> Result<Latency> {
    let distribution = Distribution::new(samples);
    let (Some(p50_us), Some(p99_us)) = (distribution.quantile(0.50), distribution.quantile(0.99))
    else {
        return Err(Error(format!("no sample answered ({lost} lost)")));
    };
    Ok(Latency {
        p50_us,
        p99_us,
        samples: distribution.len(),
        lost,
        distribution,
    })
}

/// Runs `f` on a thread pinned to `cpu` (the load CPU).
fn on_cpu<T: Send>(cpu: usize, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                pin(cpu)?;
                f()
            })
            .join()
            .map_err(|_| Error("a latency thread panicked".to_owned()))?
    })
}

/// `count` UDP round trips to the echo port through the ClusterIP.
pub fn request_response(
    cluster: &Cluster,
    count: usize,
    cpu: usize,
    stop: &AtomicBool,
) -> Result<Latency> {
    let target = SocketAddr::from((BENCH_VIP, ECHO_PORT));
    let socket = within(&cluster.client.ns, || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(target).map(|()| s))
            .map_err(context("echo client"))?;
        Ok(socket)
    })?;
    socket.set_read_timeout(Some(REPLY_WAIT))?;
    on_cpu(cpu, || {
        let mut samples = Vec::with_capacity(count);
        let mut lost = 0;
        let mut reply = [0u8; 64];
        let started = Instant::now();
        for sequence in 0..(WARM_UP + count) as u64 {
            if stop.load(Ordering::Relaxed) || started.elapsed() > RUN_LIMIT {
                break;
            }
            let request = sequence.to_be_bytes();
            let sent = Instant::now();
            socket.send(&request)?;
            let answered = loop {
                match socket.recv(&mut reply) {
                    // A late answer to an earlier request: keep waiting for this one.
                    Ok(8) if reply[..8] == request => break true,
                    Ok(_) if sent.elapsed() < REPLY_WAIT => {}
                    Ok(_) | Err(_) => break false,
                }
            };
            let rtt = sent.elapsed().as_secs_f64() * 1e6;
            if sequence < WARM_UP as u64 {
                continue;
            }
            if answered {
                samples.push(rtt);
            } else {
                lost += 1;
            }
        }
        summarize(samples, lost)
    })
}

/// `count` TCP connects to `vip:port`, one after the other, timing each handshake.
pub fn connect_time(
    cluster: &Cluster,
    vip: Ipv4Addr,
    port: u16,
    count: usize,
    cpu: usize,
    stop: &AtomicBool,
) -> Result<Latency> {
    let target = SocketAddr::from((vip, port));
    let ns = cluster.client.ns.clone();
    on_cpu(cpu, || {
        within(&ns, || {
            let mut samples = Vec::with_capacity(count);
            let mut lost = 0;
            let begun = Instant::now();
            for _ in 0..count {
                if stop.load(Ordering::Relaxed) || begun.elapsed() > RUN_LIMIT {
                    break;
                }
                let started = Instant::now();
                match TcpStream::connect_timeout(&target, REPLY_WAIT) {
                    Ok(stream) => {
                        samples.push(started.elapsed().as_secs_f64() * 1e6);
                        // Linger 0: close with a reset, leaving no TIME_WAIT behind.
                        let _ =
                            rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
                    }
                    Err(_) => lost += 1,
                }
            }
            summarize(samples, lost)
        })
    })
}

/// Waits (bounded) until a TCP connection to `vip:port` from the client pod succeeds.
pub fn wait_serving(cluster: &Cluster, vip: Ipv4Addr, port: u16, limit: Duration) -> Result<()> {
    let target = SocketAddr::from((vip, port));
    let started = Instant::now();
    within(&cluster.client.ns, || {
        loop {
            match TcpStream::connect_timeout(&target, REPLY_WAIT) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() >= limit => {
                    return Err(Error(format!(
                        "{target} not answering after {limit:?}: {e}"
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
}
