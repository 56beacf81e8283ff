//! `ferroplane monitor` and `ferroplane capture`: a running node's live drop stream and packet
//! capture, over its admin socket. Both run until interrupted (or, for capture, until the
//! requested number of frames was written).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use super::admin_client::{self, SocketArgs};
use super::output;
use crate::store::StateDir;

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Event type: drop (every drop, with its reason) or policy-verdict (allowed and denied,
    /// with the policy).
    #[arg(short, long = "type", value_parser = ["drop", "policy-verdict"], default_value = "drop")]
    pub kind: String,
}

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub socket: SocketArgs,
    /// The port: `uplink`, `host`, a pod's `namespace/name` or an interface name.
    #[arg(long)]
    pub port: String,
    /// The pcap file to write (`-` for standard output).
    #[arg(short = 'w', long = "write")]
    pub file: PathBuf,
    /// Stop after this many frames.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
}

pub fn monitor(dir: &StateDir, args: &MonitorArgs) -> Result<bool, String> {
    let body = admin_client::get(
        &args.socket.endpoint(dir)?,
        &format!("/monitor?type={}", args.kind),
    )?;
    eprintln!("Listening for events (press Ctrl-C to quit)...");
    let stdout = io::stdout();
    for line in BufReader::new(body).lines() {
        let line = line.map_err(|e| format!("/monitor: {e}"))?;
        let mut out = stdout.lock();
        output::write_or_exit(writeln!(out, "{line}").and_then(|()| out.flush()));
    }
    Ok(true)
}

pub(super) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn capture(dir: &StateDir, args: &CaptureArgs) -> Result<bool, String> {
    let mut target = format!("/capture?port={}", encode(&args.port));
    if let Some(count) = args.count {
        target.push_str(&format!("&count={count}"));
    }
    let mut body = admin_client::get(&args.socket.endpoint(dir)?, &target)?;
    let mut out: Box<dyn Write> = if args.file.as_os_str() == "-" {
        Box::new(io::stdout())
    } else {
        Box::new(File::create(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?)
    };
    eprintln!("capturing on {}", args.port);
    let mut buffer = [0u8; 65536];
    let mut total = 0usize;
    loop {
        let n = body
            .read(&mut buffer)
            .map_err(|e| format!("/capture: {e}"))?;
        if n == 0 {
            break;
        }
        total += n;
        let written = out.write_all(&buffer[..n]).and_then(|()| out.flush());
        if args.file.as_os_str() == "-" {
            output::write_or_exit(written);
        } else {
            written.map_err(|e| format!("{}: {e}", args.file.display()))?;
        }
    }
    eprintln!("{total} bytes written");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn port_names_are_percent_encoded() {
        assert_eq!(encode("default/web-1"), "default%2Fweb-1");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
