//! `ferroplane run`: parses the node process's flags, loads `node.yaml`, resolves the settings
//! (flags > file > defaults) and runs the node process until it is stopped.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::node::config::{self, CONFIG_HELP, FileConfig, Overrides, PolicyKind, SourceKind};
use crate::store::DEFAULT_STATE_DIR;

#[derive(Debug, clap::Args)]
#[command(after_help = CONFIG_HELP)]
pub struct RunArgs {
    /// The node configuration file (node.yaml); its keys are listed below.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// A kube-proxy `KubeProxyConfiguration` file: the fields that apply fill what node.yaml
    /// leaves unset; the ones that do not are listed at start.
    #[arg(long)]
    pub kube_proxy_config: Option<PathBuf>,
    /// This node's name (overrides nodeName).
    #[arg(long, env = "FERROPLANE_NODE_NAME")]
    pub node_name: Option<String>,
    /// This node's underlay IPv4 address (overrides nodeIP).
    #[arg(long, env = "FERROPLANE_NODE_IP")]
    pub node_ip: Option<Ipv4Addr>,
    /// Where the cluster is read from (overrides source).
    #[arg(long, value_enum)]
    pub source: Option<SourceKind>,
    /// Worker threads (overrides workers.count).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The workers' scheduling policy (overrides workers.scheduling.policy).
    #[arg(long, value_enum)]
    pub worker_policy: Option<PolicyKind>,
    /// The workers' real-time priority, 1..=99 (overrides workers.scheduling.priority).
    #[arg(long)]
    pub worker_priority: Option<u32>,
}

/// Runs the node process; `state` is the global `--state` (it overrides `stateDir` when it was
/// given, i.e. differs from the default or came from FERROPLANE_STATE).
pub fn run(state: &Path, args: &RunArgs) -> Result<bool, String> {
    let explicit_state =
        state != Path::new(DEFAULT_STATE_DIR) || std::env::var_os("FERROPLANE_STATE").is_some();
    let overrides = Overrides {
        node_name: args.node_name.clone(),
        node_ip: args.node_ip,
        source: args.source,
        workers: args.workers,
        worker_policy: args.worker_policy,
        worker_priority: args.worker_priority,
        state_dir: explicit_state.then(|| state.to_path_buf()),
    };
    let file = match &args.config {
        Some(path) => config::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let mut file = file;
    if let Some(path) = &args.kube_proxy_config {
        let mapping = config::kube_proxy::load(path, &mut file).map_err(|e| e.to_string())?;
        for field in &mapping.ignored {
            crate::node::log::info(format_args!("{}: ignored {field}", path.display()));
        }
        if let Some(addr) = mapping.metrics_bind_address {
            crate::node::log::info(format_args!(
                "{}: metricsBindAddress {addr} (the metrics listener's address)",
                path.display()
            ));
        }
    }
    let settings = config::resolve(file, &overrides).map_err(|e| match &args.config {
        Some(path) => format!("{}: {e}", path.display()),
        None => e.to_string(),
    })?;
    crate::node::run(
        settings,
        crate::node::Reload {
            config: args.config.clone(),
            overrides,
        },
    )?;
    Ok(true)
}
