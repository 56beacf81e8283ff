//! Bulk TCP throughput through the ClusterIP: `iperf3 -c` in the client pod (on the load
//! CPU) to the `bulk` Service, whose only backend runs `iperf3 -s`; the figure is the
//! receiver's rate from iperf3's JSON report.
//!
//! Invariant: the client is killed if it runs [`GRACE`] past its test length.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::error::{Error, context};

use super::Result;
use super::plan::Cluster;
use super::services::{BULK_VIP, IPERF_PORT};

const GRACE: Duration = Duration::from_secs(10);

/// Receiver-side throughput of one `seconds`-long iperf3 run, in Gbit/s.
pub fn run(cluster: &Cluster, seconds: u64, cpu: usize) -> Result<f64> {
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
    received_gbps(&String::from_utf8_lossy(&out.stdout))
}

/// The receiver's bits per second in an iperf3 JSON report, in Gbit/s.
pub fn received_gbps(report: &str) -> Result<f64> {
    let json: Value = serde_json::from_str(report)?;
    if let Some(error) = json["error"].as_str() {
        return Err(Error(format!("iperf3: {error}")));
    }
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 1e9)
        .ok_or_else(|| Error("iperf3 reported no sum_received".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receivers_rate_is_read_from_the_report() {
        let report = r#"{"end":{"sum_sent":{"bits_per_second":9.5e9},"sum_received":{"bits_per_second":2.5e9}}}"#;
        assert_eq!(received_gbps(report).unwrap(), 2.5);
        assert!(received_gbps(r#"{"error":"unable to connect"}"#).is_err());
        assert!(received_gbps("{}").is_err());
    }
}
