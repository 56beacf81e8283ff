//! Names the node process and the CNI (or the testbed) must agree on.
//!
//! Invariant: [`pod_interface_name`] depends only on the pod's namespace and name, through a
//! hash that never changes between releases (FNV-1a 64), and always yields a valid interface
//! name (12 characters, below IFNAMSIZ).

use crate::net::fnv1a_64;

/// The name of a pod's interface on the node: `fp` followed by 10 hex digits (the top 40 bits)
/// of FNV-1a 64 of `namespace/name`. With the TAP backend ferroplane creates a TAP of that name
/// for the CNI to move into the pod; with AF_PACKET the CNI names the node end of the pod's
/// veth so.
pub fn pod_interface_name(namespace: &str, name: &str) -> String {
    let hash = fnv1a_64(format!("{namespace}/{name}").as_bytes());
    format!("fp{:010x}", hash >> 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_interface_names_are_fp_and_ten_hex_digits_of_fnv1a() {
        // FNV-1a 64 computed here from its definition, independently of `net::fnv1a_64`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in b"default/web-1" {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x100_0000_01b3);
        }
        let expected = format!("fp{}", &format!("{hash:016x}")[..10]);
        assert_eq!(pod_interface_name("default", "web-1"), expected);
        assert_eq!(expected.len(), 12);
        assert_ne!(
            pod_interface_name("default", "web-1"),
            pod_interface_name("default", "web-2")
        );
        assert_ne!(
            pod_interface_name("a", "b/c"),
            pod_interface_name("a/b", "d")
        );
    }
}
