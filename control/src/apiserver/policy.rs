//! NetworkPolicy admission (networking.k8s.io/v1; extensions/v1beta1 manifests arrive here
//! already converted): selectors, peers, ports and `ipBlock`s are validated, protocols are
//! normalised (the seed writes `tcp`), and `policyTypes` is defaulted as the API server does:
//! `[Ingress]`, plus `Egress` when egress rules are present.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::net::Cidr;
use crate::validate::{self, FieldError, Validation};

pub fn admit(policy: &mut NetworkPolicy) -> Validation {
    let spec = policy.spec.get_or_insert_with(NetworkPolicySpec::default);
    let selector = spec.pod_selector.get_or_insert_with(LabelSelector::default);
    validate::label_selector("spec.podSelector", selector)?;
    for (i, rule) in spec.ingress.iter_mut().flatten().enumerate() {
        let at = format!("spec.ingress[{i}]");
        peers(
            &format!("{at}.from"),
            rule.from.as_deref().unwrap_or_default(),
        )?;
        ports(&format!("{at}.ports"), rule.ports.iter_mut().flatten())?;
    }
    for (i, rule) in spec.egress.iter_mut().flatten().enumerate() {
        let at = format!("spec.egress[{i}]");
        peers(&format!("{at}.to"), rule.to.as_deref().unwrap_or_default())?;
        ports(&format!("{at}.ports"), rule.ports.iter_mut().flatten())?;
    }
    match &spec.policy_types {
        Some(types) => {
            for (i, type_) in types.iter().enumerate() {
                validate::one_of(
                    &format!("spec.policyTypes[{i}]"),
                    type_,
                    &["Ingress", "Egress"],
                )?;
                if types[..i].contains(type_) {
                    return Err(FieldError::new(
                        format!("spec.policyTypes[{i}]"),
                        format!("duplicate value {type_:?}"),
                    ));
                }
            }
        }
        None => {
            let mut types = vec!["Ingress".to_owned()];
            if spec.egress.is_some() {
                types.push("Egress".to_owned());
            }
            spec.policy_types = Some(types);
        }
    }
    Ok(())
}

fn peers(field: &str, peers: &[NetworkPolicyPeer]) -> Validation {
    for (i, peer) in peers.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let selectors = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
        match (&peer.ip_block, selectors) {
            (None, false) => {
                return Err(FieldError::new(
                    at,
                    "must specify a podSelector, a namespaceSelector or an ipBlock",
                ));
            }
            (Some(_), true) => {
                return Err(FieldError::new(
                    at,
                    "ipBlock may not be combined with podSelector or namespaceSelector",
                ));
            }
            (Some(block), false) => {
                let cidr = Cidr::parse_lenient(&block.cidr)
                    .map_err(|m| FieldError::new(format!("{at}.ipBlock.cidr"), m))?;
                for (j, except) in block.except.iter().flatten().enumerate() {
                    let field = format!("{at}.ipBlock.except[{j}]");
                    let inner =
                        Cidr::parse_lenient(except).map_err(|m| FieldError::new(&field, m))?;
                    if !cidr.strictly_contains(&inner) {
                        return Err(FieldError::new(
                            field,
                            format!("{inner} must be a strict subset of the ipBlock cidr {cidr}"),
                        ));
                    }
                }
            }
            (None, true) => {
                if let Some(selector) = &peer.pod_selector {
                    validate::label_selector(&format!("{at}.podSelector"), selector)?;
                }
                if let Some(selector) = &peer.namespace_selector {
                    validate::label_selector(&format!("{at}.namespaceSelector"), selector)?;
                }
            }
        }
    }
    Ok(())
}

fn ports<'a>(field: &str, ports: impl Iterator<Item = &'a mut NetworkPolicyPort>) -> Validation {
    for (i, port) in ports.enumerate() {
        let at = format!("{field}[{i}]");
        validate::normalize_protocol(&format!("{at}.protocol"), &mut port.protocol)?;
        if let Some(number) = &port.port {
            validate::number_or_name(&format!("{at}.port"), number)?;
        }
        if let Some(end) = port.end_port {
            match &port.port {
                Some(IntOrString::Int(start)) => {
                    validate::port_number(&format!("{at}.endPort"), end)?;
                    if end < *start {
                        return Err(FieldError::new(
                            format!("{at}.endPort"),
                            format!("{end} must be greater than or equal to port {start}"),
                        ));
                    }
                }
                _ => {
                    return Err(FieldError::new(
                        format!("{at}.endPort"),
                        "may only be set with a numeric port",
                    ));
                }
            }
        }
    }
    Ok(())
}
