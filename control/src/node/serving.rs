//! Which server runs where: probes (`/healthz`, `/livez`, health-check node ports) on one
//! runtime thread, the admin API and the metrics listener on another, so that no amount of
//! admin traffic (TLS handshakes, long streams) delays a load balancer's probe.
//!
//! Invariants: two threads serve every listener, whatever the number of clients; a listener
//! that cannot be opened stops the start with an error naming its config field.

use std::sync::Arc;

use super::admin::{self, AdminState};
use super::config::NodeSettings;
use super::server::{HttpRuntime, Serving};

/// The node's two server threads.
pub struct Runtimes {
    pub probes: HttpRuntime,
    pub admin: HttpRuntime,
}

impl Runtimes {
    pub fn start() -> Result<Runtimes, String> {
        let start = |name: &str| {
            HttpRuntime::start(name).map_err(|e| format!("starting the {name} thread: {e}"))
        };
        Ok(Runtimes {
            probes: start("fp-probes")?,
            admin: start("fp-admin")?,
        })
    }
}

/// Opens the admin socket, the TCP admin listener (with TLS when configured) and the metrics
/// listener; each keeps serving while its [`Serving`] lives.
pub fn serve_admin(
    runtimes: &Runtimes,
    settings: &NodeSettings,
    state: &Arc<AdminState>,
    cni: Option<Arc<super::cni_endpoint::CniEndpoint>>,
) -> Result<Vec<Serving>, String> {
    let mut serving = vec![
        admin::serve_unix(
            &runtimes.admin,
            &settings.admin.socket,
            settings.admin.socket_group,
            Arc::clone(state),
            cni,
        )
        .map_err(|e| e.to_string())?,
    ];
    if let Some((addr, token)) = &settings.admin.listen {
        let tls = match &settings.admin.tls {
            Some(files) => Some(super::tls::acceptor(&files.cert_file, &files.key_file)?),
            None => None,
        };
        serving.push(
            admin::serve_tcp(&runtimes.admin, *addr, token, tls, Arc::clone(state))
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(addr) = settings.health.metrics_bind {
        serving.push(
            admin::serve_metrics(&runtimes.admin, addr, Arc::clone(state))
                .map_err(|e| e.to_string())?,
        );
    }
    Ok(serving)
}
