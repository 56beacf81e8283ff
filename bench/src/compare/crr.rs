//! New TCP connections per second through the ClusterIP: [`CLIENTS`] threads in the client
//! pod, on the load CPU, each repeating connect, one-byte request, one-byte reply, close.
//!
//! Invariants: a run lasts at most its duration and at most [`MAX_CONNECTIONS`]
//! connections; every connect and read waits at most [`WAIT`]; only exchanges that got their
//! byte back count.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use testbed::error::Error;
use testbed::netns::within;

use super::Result;
use super::cpu::pin;
use super::plan::Cluster;
use super::services::{BENCH_VIP, TCP_PORT};

/// Concurrent client threads.
pub const CLIENTS: usize = 8;
/// A bound on one run's connections.
pub const MAX_CONNECTIONS: u64 = 2_000_000;
const WAIT: Duration = Duration::from_millis(500);

/// One run's outcome.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrrRun {
    pub completed: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl CrrRun {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.seconds.max(1e-9)
    }
}

fn exchange(target: &SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(target, WAIT)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(b"x")?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)
}

/// Connections for `duration`.
pub fn run(cluster: &Cluster, duration: Duration, cpu: usize, stop: &AtomicBool) -> Result<CrrRun> {
    let target = SocketAddr::from((BENCH_VIP, TCP_PORT));
    let completed = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    within(&cluster.client.ns, || {
        pin(cpu)?;
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                // Threads made here inherit the namespace and the CPU pinning.
                scope.spawn(|| {
                    while started.elapsed() < duration
                        && !stop.load(Ordering::Relaxed)
                        && completed.load(Ordering::Relaxed) < MAX_CONNECTIONS
                    {
                        let counter = match exchange(&target) {
                            Ok(()) => &completed,
                            Err(_) => &failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(())
    })?;
    let run = CrrRun {
        completed: completed.into_inner(),
        failed: failed.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if run.completed == 0 {
        return Err(Error(format!(
            "no connection completed ({} failed)",
            run.failed
        )));
    }
    Ok(run)
}
