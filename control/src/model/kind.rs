//! The kinds of object ferroplane stores, their names as manifests and the command line spell
//! them, and the API versions accepted for each.
//!
//! Invariant: every kind has exactly one stored API version (the one its k8s-openapi type
//! serialises); older versions a manifest may use are converted before decoding.

use std::fmt;

/// A kind of stored object. The order is the order `get` lists mixed kinds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    NetworkPolicy,
    ServiceCIDR,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::NetworkPolicy,
        Kind::ServiceCIDR,
    ];

    /// The `kind:` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::ServiceCIDR => "ServiceCIDR",
        }
    }

    /// The lower-case plural of the REST path, also the directory name in the state store.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::ServiceCIDR => "servicecidrs",
        }
    }

    /// The API version objects of this kind are stored and printed in.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service | Kind::Endpoints => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy | Kind::ServiceCIDR => "networking.k8s.io/v1",
        }
    }

    /// API versions a manifest may use for this kind (converted to [`Kind::api_version`]).
    pub fn accepted_api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::NetworkPolicy => &["networking.k8s.io/v1", "extensions/v1beta1"],
            Kind::EndpointSlice => &["discovery.k8s.io/v1"],
            Kind::ServiceCIDR => &["networking.k8s.io/v1"],
            Kind::Namespace | Kind::Node | Kind::Pod | Kind::Service | Kind::Endpoints => &["v1"],
        }
    }

    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::Namespace | Kind::Node | Kind::ServiceCIDR)
    }

    /// The `kind:` field of a manifest, exactly as Kubernetes spells it.
    pub fn from_manifest_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// A kind as `get` and `delete` accept it: singular, plural or short name, any case
    /// (`svc`, `ep`, `po`, `no`, `ns`, `netpol`, `endpointslice`, ...).
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        let short = match lower.as_str() {
            "ns" => Some(Kind::Namespace),
            "no" => Some(Kind::Node),
            "po" => Some(Kind::Pod),
            "svc" => Some(Kind::Service),
            "ep" => Some(Kind::Endpoints),
            "netpol" => Some(Kind::NetworkPolicy),
            _ => None,
        };
        short.or_else(|| {
            Kind::ALL
                .into_iter()
                .find(|kind| lower == kind.plural() || lower == kind.name().to_ascii_lowercase())
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_names_and_aliases() {
        for (text, kind) in [
            ("svc", Kind::Service),
            ("Services", Kind::Service),
            ("ep", Kind::Endpoints),
            ("endpoints", Kind::Endpoints),
            ("po", Kind::Pod),
            ("pod", Kind::Pod),
            ("no", Kind::Node),
            ("ns", Kind::Namespace),
            ("netpol", Kind::NetworkPolicy),
            ("networkpolicies", Kind::NetworkPolicy),
            ("endpointslice", Kind::EndpointSlice),
            ("EndpointSlices", Kind::EndpointSlice),
        ] {
            assert_eq!(Kind::from_cli_name(text), Some(kind), "{text}");
        }
        assert_eq!(Kind::from_cli_name("deployment"), None);
    }

    #[test]
    fn manifest_names_are_case_sensitive() {
        assert_eq!(Kind::from_manifest_name("Service"), Some(Kind::Service));
        assert_eq!(Kind::from_manifest_name("service"), None);
    }

    #[test]
    fn stored_version_is_always_accepted() {
        for kind in Kind::ALL {
            assert!(
                kind.accepted_api_versions().contains(&kind.api_version()),
                "{kind}"
            );
        }
    }
}
