//! The node's listeners in `node.yaml`: `health` (`/healthz`, `/livez` and how stale a sync
//! may get), `metrics` (kube-proxy's metrics port) and the TLS files of the TCP admin
//! endpoint, resolved into [`HealthSettings`] and [`TlsFiles`].
//!
//! Invariants: the metrics listener is on unless turned `off`; TLS needs both files and a TCP
//! listener; the sync timeout is at least a second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::units::ConfigDuration;
use crate::node::liveness::DEFAULT_SYNC_TIMEOUT;

/// kube-proxy's default metrics address.
pub const DEFAULT_METRICS_BIND: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    10249,
));

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthFile {
    pub bind_address: Option<SocketAddr>,
    pub sync_timeout: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsFile {
    /// An address, or `off`.
    pub bind_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminTlsFile {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Where the health and metrics listeners are and how stale syncs may get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    pub bind: SocketAddr,
    /// A change not programmed for this long makes `/healthz` and `/livez` fail.
    pub sync_timeout: Duration,
    /// `None`: no metrics listener.
    pub metrics_bind: Option<SocketAddr>,
}

/// The certificate chain and key of the TCP admin endpoint (PEM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn err(field: &str, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {message}"))
}

pub fn resolve_health(
    health: &HealthFile,
    metrics: &MetricsFile,
) -> Result<HealthSettings, ConfigError> {
    let sync_timeout = health.sync_timeout.map_or(DEFAULT_SYNC_TIMEOUT, |d| d.0);
    if sync_timeout < Duration::from_secs(1) {
        return Err(err("health.syncTimeout", "must be at least 1s"));
    }
    let metrics_bind = match metrics.bind_address.as_deref().map(str::trim) {
        None => Some(DEFAULT_METRICS_BIND),
        Some("off" | "") => None,
        Some(text) => Some(text.parse().map_err(|_| {
            err(
                "metrics.bindAddress",
                format!("{text:?} is not an address:port (or off)"),
            )
        })?),
    };
    Ok(HealthSettings {
        bind: health
            .bind_address
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 10256))),
        sync_timeout,
        metrics_bind,
    })
}

pub fn resolve_tls(
    tls: Option<&AdminTlsFile>,
    listen: bool,
) -> Result<Option<TlsFiles>, ConfigError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    if !listen {
        return Err(err(
            "admin.tls",
            "TLS is for the TCP listener: set admin.listen",
        ));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert_file: cert.clone(),
            key_file: key.clone(),
        })),
        (None, _) => Err(err("admin.tls.certFile", "required with admin.tls")),
        (_, None) => Err(err("admin.tls.keyFile", "required with admin.tls")),
    }
}
