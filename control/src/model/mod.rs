//! The Kubernetes objects ferroplane stores, as k8s-openapi types wrapped in one [`Object`]
//! enum, and the key ([`ObjectRef`]) that names each of them in the store.
//!
//! Invariants: an `ObjectRef` of a cluster-scoped kind has an empty namespace; a stored object's
//! `metadata.name` (and `metadata.namespace` for namespaced kinds) equal its `ObjectRef`.

mod kind;
pub mod labels;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;

use std::fmt;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use kind::Kind;

/// The key of a stored object: kind, namespace (empty for cluster-scoped kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
        let namespace = if kind.is_namespaced() { namespace } else { "" };
        ObjectRef {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `namespace/name`, or just `name` for cluster-scoped kinds.
    pub fn qualified_name(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.qualified_name())
    }
}

/// One stored object of any kind. Variants are boxed: the k8s-openapi types are large (a Pod
/// is over 2 KiB inline) and the store holds many objects of the small kinds.
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Node(Box<Node>),
    Pod(Box<Pod>),
    Service(Box<Service>),
    Endpoints(Box<Endpoints>),
    EndpointSlice(Box<EndpointSlice>),
    NetworkPolicy(Box<NetworkPolicy>),
    ServiceCIDR(Box<ServiceCIDR>),
}

/// A k8s-openapi type that is one of the stored kinds: lets the store hand out typed
/// references (`state.list::<Service>()`).
pub trait StoredKind: Sized {
    const KIND: Kind;
    fn from_object(object: &Object) -> Option<&Self>;
    fn into_object(self) -> Object;
}

macro_rules! stored_kind {
    ($($ty:ident),*) => {$(
        impl StoredKind for $ty {
            const KIND: Kind = Kind::$ty;
            fn from_object(object: &Object) -> Option<&Self> {
                match object {
                    Object::$ty(inner) => Some(inner.as_ref()),
                    _ => None,
                }
            }
            fn into_object(self) -> Object {
                Object::$ty(Box::new(self))
            }
        }
    )*};
}

stored_kind!(
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    NetworkPolicy,
    ServiceCIDR
);

/// Applies `$body` to the typed object inside an [`Object`], whatever its kind.
macro_rules! with_inner {
    ($object:expr, $inner:ident => $body:expr) => {
        match $object {
            Object::Namespace($inner) => $body,
            Object::Node($inner) => $body,
            Object::Pod($inner) => $body,
            Object::Service($inner) => $body,
            Object::Endpoints($inner) => $body,
            Object::EndpointSlice($inner) => $body,
            Object::NetworkPolicy($inner) => $body,
            Object::ServiceCIDR($inner) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Namespace(_) => Kind::Namespace,
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::ServiceCIDR(_) => Kind::ServiceCIDR,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        with_inner!(self, inner => &inner.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        with_inner!(self, inner => &mut inner.metadata)
    }

    /// The object's key from its metadata (empty strings where name or namespace are unset).
    pub fn object_ref(&self) -> ObjectRef {
        let meta = self.metadata();
        ObjectRef::new(
            self.kind(),
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    /// The object as JSON, in its stored API version.
    pub fn to_json_value(&self) -> serde_json::Value {
        with_inner!(self, inner => serde_json::to_value(inner).unwrap_or_default())
    }

    /// Decodes a stored object of a known kind.
    pub fn from_json_slice(kind: Kind, bytes: &[u8]) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::Namespace => Object::Namespace(serde_json::from_slice(bytes)?),
            Kind::Node => Object::Node(serde_json::from_slice(bytes)?),
            Kind::Pod => Object::Pod(serde_json::from_slice(bytes)?),
            Kind::Service => Object::Service(serde_json::from_slice(bytes)?),
            Kind::Endpoints => Object::Endpoints(serde_json::from_slice(bytes)?),
            Kind::EndpointSlice => Object::EndpointSlice(serde_json::from_slice(bytes)?),
            Kind::NetworkPolicy => Object::NetworkPolicy(serde_json::from_slice(bytes)?),
            Kind::ServiceCIDR => Object::ServiceCIDR(serde_json::from_slice(bytes)?),
        })
    }

    /// Decodes a manifest value already converted to the stored API version; the error carries
    /// the path of the offending field (`spec.ports[0].port`).
    pub fn from_json_value(
        kind: Kind,
        value: &serde_json::Value,
    ) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
        fn decode<T: serde::de::DeserializeOwned>(
            value: &serde_json::Value,
        ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
            serde_path_to_error::deserialize(value)
        }
        Ok(match kind {
            Kind::Namespace => Object::Namespace(decode(value)?),
            Kind::Node => Object::Node(decode(value)?),
            Kind::Pod => Object::Pod(decode(value)?),
            Kind::Service => Object::Service(decode(value)?),
            Kind::Endpoints => Object::Endpoints(decode(value)?),
            Kind::EndpointSlice => Object::EndpointSlice(decode(value)?),
            Kind::NetworkPolicy => Object::NetworkPolicy(decode(value)?),
            Kind::ServiceCIDR => Object::ServiceCIDR(decode(value)?),
        })
    }

    /// Serialises the object as stored (pretty JSON with a trailing newline).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut bytes =
            with_inner!(self, inner => serde_json::to_vec_pretty(inner).unwrap_or_default());
        bytes.push(b'\n');
        bytes
    }

    /// Renders the object as a YAML document, field order as the API prints it.
    pub fn to_yaml(&self) -> String {
        with_inner!(self, inner => serde_saphyr::to_string(inner).unwrap_or_default())
    }
}
