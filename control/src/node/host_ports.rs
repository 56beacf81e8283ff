//! The masquerade port range against the host's own ephemeral ports.
//!
//! The node's own connections to the underlay are not tracked (user-needs A13), so the SNAT
//! collision check cannot see them: a masqueraded pod flow on a port the host also picks for
//! its connections could take a 4-tuple the host is using, and the host's replies would go to
//! the pod. The only safe arrangement is two disjoint ranges. The host's range is
//! `net.ipv4.ip_local_port_range` of the network namespace the node process runs in, read at
//! start and on every reload.
//!
//! Invariant: a range that overlaps the host's is refused with both ranges named; the running
//! configuration is never replaced by one that does.

use std::path::Path;

/// Where the kernel publishes the ephemeral port range of the reader's network namespace.
pub const IP_LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// Checks `snat` (inclusive) against the range in [`IP_LOCAL_PORT_RANGE`].
pub fn check_snat_ports(snat: (u16, u16)) -> Result<(), String> {
    let host = read_port_range(Path::new(IP_LOCAL_PORT_RANGE))?;
    check_disjoint(snat, host)
}

/// `snat` and the host's ephemeral range must not share a port.
pub fn check_disjoint(snat: (u16, u16), host: (u16, u16)) -> Result<(), String> {
    if snat.0 <= host.1 && host.0 <= snat.1 {
        return Err(format!(
            "snatPorts: {}-{} overlaps the host's ephemeral port range {}-{} \
             (net.ipv4.ip_local_port_range in this network namespace); the host's own \
             connections are not tracked, so a masqueraded flow could take a port the host \
             uses. Set snatPorts outside it (e.g. 61000-65535 with the Linux default \
             32768-60999) or narrow the host's range",
            snat.0, snat.1, host.0, host.1
        ));
    }
    Ok(())
}

/// Reads a `ip_local_port_range` file: two port numbers separated by white space.
pub fn read_port_range(path: &Path) -> Result<(u16, u16), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "reading the host's ephemeral port range {}: {e}",
            path.display()
        )
    })?;
    parse_port_range(&text).ok_or_else(|| {
        format!(
            "{}: expected two port numbers, found {:?}",
            path.display(),
            text.trim()
        )
    })
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    let lo = words.next()?.ok()?;
    let hi = words.next()?.ok()?;
    (words.next().is_none() && lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_an_error_naming_both_ranges() {
        let e = check_disjoint((40000, 50000), (32768, 60999)).unwrap_err();
        assert!(e.starts_with("snatPorts: 40000-50000"), "{e}");
        assert!(e.contains("32768-60999"), "{e}");
        assert!(
            check_disjoint((60999, 61000), (32768, 60999)).is_err(),
            "one shared port"
        );
        assert!(check_disjoint((1024, 32768), (32768, 60999)).is_err());
        assert!(check_disjoint((61000, 65535), (32768, 60999)).is_ok());
        assert!(check_disjoint((20000, 32767), (32768, 60999)).is_ok());
    }

    #[test]
    fn the_kernel_format_parses_and_garbage_does_not() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("32768"), None);
        assert_eq!(parse_port_range("a b"), None);
        assert_eq!(parse_port_range("1 2 3"), None);
    }

    #[test]
    fn this_namespaces_range_reads_and_the_default_snat_range_clears_it() {
        let host = read_port_range(Path::new(IP_LOCAL_PORT_RANGE)).unwrap();
        assert!(host.0 <= host.1);
        assert!(
            check_snat_ports(host).is_err(),
            "the host range itself overlaps"
        );
        let default = crate::compile::NodeLocal::default().snat_ports;
        assert!(
            check_disjoint(default, (32768, 60999)).is_ok(),
            "the default clears Linux's default range"
        );
    }
}
