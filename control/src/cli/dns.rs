//! `ferroplane dns`: serves the cluster zone over UDP and TCP from the state directory (or a
//! Kubernetes API server) until the process is stopped; see [`crate::dns`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::dns::{ClusterSource, DnsServer, Limits, Reloader, ServerConfig, zone_name};
use crate::kube_source::{KubeSource, KubeSourceConfig};
use crate::node::config::SourceKind;
use crate::node::config::units::parse_duration;
use crate::settings::ClusterSettings;
use crate::store::StateDir;

/// How often a Kubernetes source still listing is reported.
const WAIT_REPORT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    /// UDP and TCP address to serve on (port 0 picks a free one, shown in the start line).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The cluster zone (default: the state's clusterDomain, cluster.local for kubernetes).
    #[arg(long)]
    pub zone: Option<String>,
    /// Resolver for names outside the zone (UDP); without one they are REFUSED.
    #[arg(long)]
    pub upstream: Option<SocketAddr>,
    /// Where the cluster is read from.
    #[arg(long, value_enum, default_value = "state")]
    pub source: SourceKind,
    /// kubeconfig file for source kubernetes (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context for source kubernetes.
    #[arg(long)]
    pub context: Option<String>,
    /// TCP connections served at once (at the cap, the one waiting longest for a query is
    /// closed for a new one).
    #[arg(long, default_value_t = Limits::default().tcp_connections)]
    pub tcp_connections: usize,
    /// TCP connections one client address may hold.
    #[arg(long, default_value_t = Limits::default().tcp_connections_per_client)]
    pub tcp_connections_per_client: usize,
    /// How long a TCP connection may wait for its next query (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub tcp_idle_timeout: Duration,
    /// How long writing one answer may take before a TCP client that does not read is reset.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub tcp_write_timeout: Duration,
    /// Forwarded queries in flight at once.
    #[arg(long, default_value_t = Limits::default().forwards)]
    pub forwards: usize,
    /// Forwarded queries one client address may have in flight (beyond: SERVFAIL at once).
    #[arg(long, default_value_t = Limits::default().forwards_per_client)]
    pub forwards_per_client: usize,
}

impl DnsArgs {
    fn limits(&self) -> Limits {
        Limits {
            tcp_connections: self.tcp_connections,
            tcp_connections_per_client: self.tcp_connections_per_client,
            tcp_idle_timeout: self.tcp_idle_timeout,
            tcp_write_timeout: self.tcp_write_timeout,
            forwards: self.forwards,
            forwards_per_client: self.forwards_per_client,
        }
    }
}

/// Serves until stopped; returns only on a startup or socket failure.
pub fn run(dir: &StateDir, args: &DnsArgs) -> Result<bool, String> {
    let zone = args.zone.as_deref().map(zone_name).transpose()?;
    let source = match args.source {
        SourceKind::State => ClusterSource::State(dir.clone()),
        SourceKind::Kubernetes => {
            // Only the domain is read, as the default zone: cluster.local.
            let settings = ClusterSettings::default();
            let config = KubeSourceConfig {
                kubeconfig: args.kubeconfig.clone(),
                context: args.context.clone(),
            };
            let kube = KubeSource::connect(config, settings).map_err(|e| e.to_string())?;
            ClusterSource::Kubernetes(Box::new(kube))
        }
    };
    wait_until_ready(&source);
    let (records, _reloader) = Reloader::start(source, zone)?;
    let config = ServerConfig {
        listen: args.listen,
        upstream: args.upstream,
        limits: args.limits(),
    };
    let server = DnsServer::bind(&config, Arc::clone(&records))
        .map_err(|e| format!("binding {}: {e}", args.listen))?;
    let address = server.local_addr().map_err(|e| e.to_string())?;
    let index = records.load();
    eprintln!(
        "serving {} on {address} (udp, tcp), {} records",
        index.zone().to_ascii().trim_end_matches('.'),
        index.record_count()
    );
    drop(index);
    server
        .run()
        .map_err(|e| format!("serving on {address}: {e}"))?;
    Ok(true)
}

/// Blocks until the source can be read, reporting progress now and then.
fn wait_until_ready(source: &ClusterSource) {
    let mut reported = Instant::now();
    while !source.is_ready() {
        if reported.elapsed() >= WAIT_REPORT_INTERVAL {
            eprintln!("dns: waiting for the initial lists of the Kubernetes API server");
            reported = Instant::now();
        }
        thread::sleep(Duration::from_millis(100));
    }
}
