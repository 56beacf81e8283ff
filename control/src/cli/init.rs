//! `ferroplane init`: writes the cluster settings into the state directory and creates the
//! system namespaces. Settings are fixed once objects exist (re-running with the same values is
//! fine), because changing a range under allocated addresses would strand them.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::output::out;
use crate::apiserver::SYSTEM_NAMESPACES;
use crate::model::{Kind, StoredKind};
use crate::net::{Cidr, PortRange};
use crate::settings::ClusterSettings;
use crate::state::ClusterState;
use crate::store::StateDir;
use crate::transaction::Transaction;

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Pod CIDR of the cluster; two, comma-separated, one per family, primary first, for a
    /// dual-stack cluster (e.g. 10.244.0.0/16,fd00:10:244::/56) [default: 10.244.0.0/16].
    #[arg(long)]
    pub cluster_cidr: Option<CidrList>,
    /// Prefix length of each node's IPv4 podCIDR [default: 24].
    #[arg(long, visible_alias = "node-cidr-mask-size-ipv4")]
    pub node_cidr_mask_size: Option<u8>,
    /// Prefix length of each node's IPv6 podCIDR [default: 64].
    #[arg(long)]
    pub node_cidr_mask_size_ipv6: Option<u8>,
    /// ClusterIP range; two, comma-separated, one per family, primary first, for a dual-stack
    /// cluster (e.g. 10.96.0.0/12,fd00:10:96::/108) [default: 10.96.0.0/12].
    #[arg(long)]
    pub service_cidr: Option<CidrList>,
    /// NodePort range [default: 30000-32767].
    #[arg(long)]
    pub service_node_port_range: Option<PortRange>,
    /// LoadBalancer ingress pool; two, comma-separated, one per family, for dual-stack
    /// LoadBalancer Services [default: 198.51.100.0/24].
    #[arg(long)]
    pub lb_pool: Option<CidrList>,
    /// Cluster DNS Service IP [default: the 10th address of the service CIDR, 10.96.0.10].
    #[arg(long)]
    pub cluster_dns: Option<std::net::IpAddr>,
    /// Cluster DNS domain [default: cluster.local].
    #[arg(long)]
    pub cluster_domain: Option<String>,
    /// VXLAN network identifier [default: 1].
    #[arg(long)]
    pub vxlan_vni: Option<u32>,
    /// VXLAN UDP port [default: 8472].
    #[arg(long)]
    pub vxlan_port: Option<u16>,
    /// A range Services' spec.externalIPs may come from; repeat for several [default: none,
    /// externalIPs are refused (CVE-2020-8554)]. Node addresses are refused in any case.
    #[arg(long = "external-ip-cidr", value_name = "CIDR")]
    pub external_ip_cidrs: Vec<Cidr>,
}

/// One CIDR, or two comma-separated (upstream's `--cluster-cidr` / `--service-cluster-ip-range`
/// form): the primary, then the secondary of the other family.
#[derive(Clone, Debug)]
pub struct CidrList {
    pub primary: Cidr,
    pub secondary: Option<Cidr>,
}

impl std::str::FromStr for CidrList {
    type Err = String;
    fn from_str(text: &str) -> Result<CidrList, String> {
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [one] => Ok(CidrList {
                primary: one.parse()?,
                secondary: None,
            }),
            [one, two] => Ok(CidrList {
                primary: one.parse()?,
                secondary: Some(two.parse()?),
            }),
            _ => Err(format!(
                "{text:?}: at most two CIDRs, comma-separated, one per IP family"
            )),
        }
    }
}

/// Whether anything besides the system namespaces is stored: then the settings are fixed.
fn holds_user_objects(state: &ClusterState) -> bool {
    let user_namespace = state.namespaces().any(|ns| {
        !ns.metadata
            .name
            .as_deref()
            .is_some_and(|n| SYSTEM_NAMESPACES.contains(&n))
    });
    let other = Kind::ALL
        .into_iter()
        .filter(|kind| *kind != Kind::Namespace)
        .any(|kind| state.objects_of(kind).next().is_some());
    user_namespace || other
}

pub fn run(dir: &StateDir, args: &InitArgs) -> Result<bool, String> {
    // Under the exclusive lock from here on: no apply can slip in between check and write.
    let mut transaction = Transaction::begin(dir).map_err(|e| e.to_string())?;
    let current = transaction.server().state().settings().clone();
    let settings = apply_overrides(current.clone(), args)?;
    if settings != current && holds_user_objects(transaction.server().state()) {
        return Err(format!(
            "{} already holds objects; the cluster settings cannot change under them (delete the objects or use a new state directory)",
            dir.root().display()
        ));
    }
    dir.write_settings(&settings).map_err(|e| e.to_string())?;
    for name in SYSTEM_NAMESPACES {
        if transaction.server().state().namespace(name).is_none() {
            let meta = ObjectMeta {
                name: Some((*name).to_owned()),
                ..ObjectMeta::default()
            };
            let namespace = Namespace {
                metadata: meta,
                ..Namespace::default()
            };
            transaction
                .server()
                .apply(namespace.into_object(), None)
                .map_err(|r| r.to_string())?;
        }
    }
    transaction.commit().map_err(|e| e.to_string())?;
    out!("{}", String::from_utf8_lossy(&settings.to_json()));
    Ok(true)
}

fn apply_overrides(
    mut settings: ClusterSettings,
    args: &InitArgs,
) -> Result<ClusterSettings, String> {
    if let Some(list) = &args.cluster_cidr {
        settings.cluster_cidr = list.primary;
        settings.secondary_cluster_cidr = list.secondary;
    }
    if let Some(size) = args.node_cidr_mask_size {
        settings.node_cidr_mask_size = size;
    }
    if let Some(size) = args.node_cidr_mask_size_ipv6 {
        settings.node_cidr_mask_size_ipv6 = Some(size);
    }
    if let Some(list) = &args.service_cidr {
        let cidr = list.primary;
        settings.service_cidr = cidr;
        settings.secondary_service_cidr = list.secondary;
        if args.cluster_dns.is_none() {
            settings.cluster_dns_ip = cidr.nth(10).ok_or_else(|| {
                format!("--service-cidr {cidr} has no 10th address for the DNS IP")
            })?;
        }
    }
    if let Some(range) = args.service_node_port_range {
        settings.node_port_range = range;
    }
    if let Some(list) = &args.lb_pool {
        settings.load_balancer_pool = list.primary;
        settings.secondary_load_balancer_pool = list.secondary;
    }
    if let Some(ip) = args.cluster_dns {
        settings.cluster_dns_ip = ip;
    }
    if let Some(domain) = &args.cluster_domain {
        settings.cluster_domain = domain.clone();
    }
    if let Some(vni) = args.vxlan_vni {
        settings.vxlan_vni = vni;
    }
    if let Some(port) = args.vxlan_port {
        settings.vxlan_port = port;
    }
    if !args.external_ip_cidrs.is_empty() {
        settings.external_ip_cidrs = args.external_ip_cidrs.clone();
    }
    settings.validate()?;
    Ok(settings)
}
