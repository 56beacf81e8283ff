//! Bulk TCP throughput through the ClusterIP: `iperf3 -c` in the client pod (on the load
//! CPU) to the `bulk` Service, whose only backend runs `iperf3 -s`, with one or eight
//! streams, client to backend or back (`-R`); the figures are the receiver's rate and bytes
//! from iperf3's JSON report and the busy time of every CPU over the run, per GB received.
//!
//! Invariant: the client is killed if it runs [`GRACE`] past its test length.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::error::{Error, context};

use super::Result;
use super::cpu::{self, CpuUse};
use super::plan::Cluster;
use super::services::{BULK_VIP, IPERF_PORT};

const GRACE: Duration = Duration::from_secs(10);

/// One bulk workload: how many parallel streams, and which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkCase {
    pub streams: u32,
    /// Backend to client (`iperf3 -R`) instead of client to backend.
    pub reverse: bool,
}

impl BulkCase {
    /// Every case, in table order: one stream first (the issue's figure), then eight.
    pub const ALL: [BulkCase; 4] = [
        BulkCase {
            streams: 1,
            reverse: false,
        },
        BulkCase {
            streams: 1,
            reverse: true,
        },
        BulkCase {
            streams: 8,
            reverse: false,
        },
        BulkCase {
            streams: 8,
            reverse: true,
        },
    ];

    /// The suffix of its metric keys: none for one stream client to backend (the key the
    /// results have always used), `_8` for eight streams, `_rev` for backend to client.
    pub fn key_suffix(self) -> String {
        let streams = if self.streams == 1 {
            String::new()
        } else {
            format!("_{}", self.streams)
        };
        let direction = if self.reverse { "_rev" } else { "" };
        format!("{streams}{direction}")
    }

    pub fn label(self) -> String {
        format!(
            "{} {}, {}",
            self.streams,
            if self.streams == 1 {
                "stream"
            } else {
                "streams"
            },
            if self.reverse {
                "backend to client"
            } else {
                "client to backend"
            }
        )
    }
}

/// What one iperf3 run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkRun {
    /// The receiver's rate.
    pub gbps: f64,
    /// Bytes the receiver got.
    pub bytes: f64,
    /// Busy seconds per CPU from the client's start to its exit.
    pub cpu: CpuUse,
}

impl BulkRun {
    /// Busy seconds of every CPU together per 10^9 bytes received (None if nothing was).
    pub fn cpu_per_gb(&self) -> Option<f64> {
        (self.bytes > 0.0).then(|| self.cpu.total() / (self.bytes / 1e9))
    }
}

/// One `seconds`-long iperf3 run of `case` from the client pod, iperf3 pinned to `cpu`.
pub fn run(cluster: &Cluster, seconds: u64, cpu: usize, case: BulkCase) -> Result<BulkRun> {
    let mut direction = vec!["-P".to_owned(), case.streams.to_string()];
    if case.reverse {
        direction.push("-R".to_owned());
    }
    let before = cpu::sample()?;
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cluster.client.ns,
            "taskset",
            "-c",
            &cpu.to_string(),
        ])
        .args([
            "iperf3",
            "-c",
            &BULK_VIP.to_string(),
            "-p",
            &IPERF_PORT.to_string(),
        ])
        .args([
            "-t",
            &seconds.to_string(),
            "-J",
            "--connect-timeout",
            "2000",
        ])
        .args(&direction)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(context("starting iperf3 -c"))?;
    let deadline = Instant::now() + Duration::from_secs(seconds) + GRACE;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error(format!("iperf3 ran past {seconds} s + {GRACE:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let used = cpu::between(&before, &cpu::sample()?);
    let (gbps, bytes) = received(&String::from_utf8_lossy(&out.stdout))?;
    Ok(BulkRun {
        gbps,
        bytes,
        cpu: used,
    })
}

/// The receiver's rate (Gbit/s) and bytes in an iperf3 JSON report.
pub fn received(report: &str) -> Result<(f64, f64)> {
    let json: Value = serde_json::from_str(report)?;
    if let Some(error) = json["error"].as_str() {
        return Err(Error(format!("iperf3: {error}")));
    }
    let sum = &json["end"]["sum_received"];
    match (sum["bits_per_second"].as_f64(), sum["bytes"].as_f64()) {
        (Some(bps), Some(bytes)) => Ok((bps / 1e9, bytes)),
        _ => Err(Error("iperf3 reported no sum_received".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receivers_rate_is_read_from_the_report() {
        let report = r#"{"end":{"sum_sent":{"bits_per_second":9.5e9,"bytes":9},"sum_received":{"bits_per_second":2.5e9,"bytes":3e9}}}"#;
        assert_eq!(received(report).unwrap(), (2.5, 3e9));
        assert!(received(r#"{"error":"unable to connect"}"#).is_err());
        assert!(received("{}").is_err());
    }

    #[test]
    fn cpu_per_gb_counts_every_cpu_over_the_bytes_received() {
        let run = BulkRun {
            gbps: 1.0,
            bytes: 2e9,
            cpu: CpuUse(vec![1.5, 0.5]),
        };
        assert_eq!(run.cpu_per_gb(), Some(1.0));
        assert_eq!(BulkRun { bytes: 0.0, ..run }.cpu_per_gb(), None);
    }

    #[test]
    fn cases_have_distinct_keys_and_the_first_keeps_the_old_one() {
        let keys: Vec<String> = BulkCase::ALL.iter().map(|c| c.key_suffix()).collect();
        assert_eq!(keys, ["", "_rev", "_8", "_8_rev"]);
        assert_eq!(BulkCase::ALL[3].label(), "8 streams, backend to client");
    }
}
