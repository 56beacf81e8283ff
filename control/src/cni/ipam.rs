//! Pod addresses from the node's podCIDRs (one per family: IPv4, IPv6 or both), kept on disk
//! in the manner of the reference `host-local` plugin: `<dataDir>/<network>/<ip>` holds
//! `<containerID>\n<ifname>` of the attachment that owns the address.
//!
//! Invariants:
//! - Every change happens under an exclusive flock on `<dataDir>/<network>/lock`, so
//!   concurrent plugins (one process per ADD/DEL) never hand out one address twice.
//! - An address file appears whole or not at all: it is written under a temporary name,
//!   synced, then hard-linked to its final name (which fails if the name exists).
//! - The network address, the gateway (first address) and the last address of a range
//!   (IPv4's broadcast; kept back in IPv6 too, as host-local does) are never handed out.
//! - An allocation survives a crash of the plugin or the node: only DEL or GC removes it.
//! - Each family keeps its own allocation: an attachment holds at most one address per family.
//! - The podCIDR in use is recorded per family (`subnet`, `subnet6`); a different podCIDR of a
//!   family while addresses of its old one are held is refused, so two ranges never mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::spec::{Attachment, CniError, code};

/// A podCIDR (IPv4 or IPv6) and the addresses in it that may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    pub network: IpAddr,
    pub prefix_len: u8,
}

impl PodRange {
    /// Parses `10.244.1.0/24` or `fd00:10:244:1::/64`; host bits must be zero, and the range
    /// must hold at least one address besides network, gateway and last address.
    pub fn parse(text: &str) -> Result<PodRange, String> {
        let (addr, len) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("podCIDR {text:?} is not ADDRESS/LENGTH"))?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("podCIDR {text:?}: {addr:?} is not an IP address"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len: u8 = len.parse().ok().filter(|l| *l <= bits - 2).ok_or_else(|| {
            format!(
                "podCIDR {text:?}: the prefix length must be 0..={}",
                bits - 2
            )
        })?;
        let range = PodRange {
            network,
            prefix_len,
        };
        if range.offset_bits(network) & !range.mask() != 0 {
            return Err(format!("podCIDR {text:?} has host bits set"));
        }
        Ok(range)
    }

    /// Parses a comma-separated list (what the node publishes in a dual-stack cluster), at
    /// most one range per family, in the order given (the primary family first).
    pub fn parse_list(text: &str) -> Result<Vec<PodRange>, String> {
        let mut ranges: Vec<PodRange> = Vec::new();
        for part in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let range = PodRange::parse(part)?;
            if let Some(other) = ranges.iter().find(|r| r.is_ipv4() == range.is_ipv4()) {
                return Err(format!(
                    "podCIDRs {text:?}: {other} and {range} are of one family (at most one per family)"
                ));
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(format!("podCIDR {text:?} names no range"));
        }
        Ok(ranges)
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    fn bits(&self) -> u32 {
        if self.is_ipv4() { 32 } else { 128 }
    }

    /// `ip` as a number of its family's width (IPv4 in the low 32 bits).
    fn offset_bits(&self, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn address(&self, bits: u128) -> IpAddr {
        if self.is_ipv4() {
            // In range: IPv4 ranges only ever hold 32-bit values.
            IpAddr::V4(Ipv4Addr::from(u32::try_from(bits).unwrap_or(u32::MAX)))
        } else {
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }

    /// The mask of the prefix, in the family's width.
    fn mask(&self) -> u128 {
        let width = self.bits();
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !(all.checked_shr(u32::from(self.prefix_len)).unwrap_or(0))
    }

    /// Whether `ip` is of this range's family.
    pub fn same_family(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_ipv4()
    }

    /// The first address: the gateway as the node's dataplane answers for it.
    pub fn gateway(&self) -> IpAddr {
        self.address(self.offset_bits(self.network) + 1)
    }

    fn last(&self) -> u128 {
        let width = self.bits();
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        self.offset_bits(self.network) | (all & !self.mask())
    }

    /// The first and last address that may be handed out.
    fn usable(&self) -> (u128, u128) {
        (self.offset_bits(self.network) + 2, self.last() - 1)
    }

    pub fn is_usable(&self, ip: IpAddr) -> bool {
        if !self.same_family(ip) {
            return false;
        }
        let (first, last) = self.usable();
        (first..=last).contains(&self.offset_bits(ip))
    }

    pub fn usable_count(&self) -> u128 {
        let (first, last) = self.usable();
        last - first + 1
    }

    /// The file recording this family's range in use.
    fn subnet_file(&self) -> &'static str {
        if self.is_ipv4() {
            SUBNET_FILE
        } else {
            SUBNET6_FILE
        }
    }

    /// The file recording this family's last address handed out.
    fn last_file(&self) -> &'static str {
        if self.is_ipv4() {
            LAST_FILE
        } else {
            LAST6_FILE
        }
    }
}

impl std::fmt::Display for PodRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// One allocation on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: IpAddr,
    pub container_id: String,
    pub ifname: String,
}

/// The address store of one network, locked for as long as it lives.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

const LOCK_FILE: &str = "lock";
const SUBNET_FILE: &str = "subnet";
const SUBNET6_FILE: &str = "subnet6";
const LAST_FILE: &str = "last_reserved_ip.0";
const LAST6_FILE: &str = "last_reserved_ip.1";

impl Store {
    /// Opens (creating) `<data_dir>/<network>` and takes its lock, waiting for other plugins.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, CniError> {
        if network.is_empty()
            || network.contains('/')
            || network.starts_with('.')
            || network.len() > 128
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("network name {network:?} cannot name a directory"),
            ));
        }
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(|e| CniError::io(dir.display(), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CniError::io(lock_path.display(), e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| CniError::io(format!("locking {}", lock_path.display()), e))?;
        Ok(Store { dir, _lock: lock })
    }

    /// Every allocation on disk.
    pub fn leases(&self) -> Result<Vec<Lease>, CniError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| CniError::io(self.dir.display(), e))?;
        let mut leases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CniError::io(self.dir.display(), e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let text = match fs::read_to_string(entry.path()) {
                Ok(text) => text,
                // Removed by nobody else (we hold the lock), but tolerate it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CniError::io(entry.path().display(), e)),
            };
            let mut lines = text.lines();
            leases.push(Lease {
                ip,
                container_id: lines.next().unwrap_or_default().trim().to_owned(),
                ifname: lines.next().unwrap_or_default().trim().to_owned(),
            });
        }
        leases.sort_by_key(|l| l.ip);
        Ok(leases)
    }

    /// Checks the podCIDR against the one the held addresses came from, and records it.
    pub fn check_range(&self, range: PodRange) -> Result<(), CniError> {
        let path = self.dir.join(range.subnet_file());
        let recorded = fs::read_to_string(&path).ok();
        let current = range.to_string();
        if recorded.as_deref().map(str::trim) == Some(current.as_str()) {
            return Ok(());
        }
        let held: Vec<Lease> = self
            .leases()?
            .into_iter()
            .filter(|l| range.same_family(l.ip) && !range.is_usable(l.ip))
            .collect();
        if let (Some(old), Some(first)) = (&recorded, held.first()) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "the podCIDR changed from {} to {current} while {} address(es) of the old \
                     one are held (e.g. {} by container {}); delete those pods first",
                    old.trim(),
                    held.len(),
                    first.ip,
                    first.container_id
                ),
            )
            .details(format!("address files in {}", self.dir.display())));
        }
        write_atomically(&self.dir, range.subnet_file(), current.as_bytes(), true)
    }

    /// The address of attachment (`container_id`, `ifname`) in `range`'s family: the one it
    /// already holds (a repeated ADD), the one `requested`, or the next free one after the
    /// last handed out.
    pub fn allocate(
        &self,
        range: PodRange,
        container_id: &str,
        ifname: &str,
        requested: Option<IpAddr>,
    ) -> Result<IpAddr, CniError> {
        let leases = self.leases()?;
        if let Some(own) = leases.iter().find(|l| {
            l.container_id == container_id && l.ifname == ifname && range.same_family(l.ip)
        }) {
            return Ok(own.ip);
        }
        let owner = format!("{container_id}\n{ifname}\n");
        if let Some(ip) = requested {
            if !range.is_usable(ip) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested address {ip} (CNI_ARGS IP) is not a pod address of {range} \
                         (network, gateway and broadcast are reserved)"
                    ),
                ));
            }
            if let Some(other) = leases.iter().find(|l| l.ip == ip) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested address {ip} (CNI_ARGS IP) is held by container {}",
                        other.container_id
                    ),
                ));
            }
            self.claim(ip, &owner)?;
            return Ok(ip);
        }
        let (first, last) = range.usable();
        let start = fs::read_to_string(self.dir.join(range.last_file()))
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok())
            .filter(|ip| range.same_family(*ip))
            .map(|ip| range.offset_bits(ip))
            .filter(|ip| (first..=last).contains(ip))
            .map_or(first, |ip| if ip == last { first } else { ip + 1 });
        let count = last - first + 1;
        // An IPv6 /64 holds 2^64 addresses: the search ends at the first free one, and a
        // range is never scanned further than the leases that exist can block.
        let tries = count.min(leases.len() as u128 + 1);
        for step in 0..tries {
            let ip = range.address(first + (start - first + step) % count);
            if leases.iter().any(|l| l.ip == ip) {
                continue;
            }
            if self.claim(ip, &owner)? {
                write_atomically(
                    &self.dir,
                    range.last_file(),
                    ip.to_string().as_bytes(),
                    true,
                )?;
                return Ok(ip);
            }
        }
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("no free pod address: all {count} addresses of podCIDR {range} are allocated"),
        )
        .details(format!("address files in {}", self.dir.display())))
    }

    /// Writes the address file of `ip`; false when it exists already.
    fn claim(&self, ip: IpAddr, owner: &str) -> Result<bool, CniError> {
        match write_atomically(&self.dir, &ip.to_string(), owner.as_bytes(), false) {
            Ok(()) => Ok(true),
            Err(_) if self.dir.join(ip.to_string()).exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees what attachment (`container_id`, `ifname`) holds; returns the addresses freed.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        let mut freed = Vec::new();
        for lease in self.leases()? {
            if lease.container_id == container_id && lease.ifname == ifname {
                self.remove(lease.ip)?;
                freed.push(lease.ip);
            }
        }
        Ok(freed)
    }

    /// Frees every address whose attachment is not in `valid` (GC).
    pub fn collect_garbage(&self, valid: &[Attachment]) -> Result<Vec<Lease>, CniError> {
        let mut freed = Vec::new();
        for lease in self.leases()? {
            let live = valid
                .iter()
                .any(|a| a.container_id == lease.container_id && a.ifname == lease.ifname);
            if !live {
                self.remove(lease.ip)?;
                freed.push(lease);
            }
        }
        Ok(freed)
    }

    fn remove(&self, ip: IpAddr) -> Result<(), CniError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(path.display(), e)),
        }
    }
}

/// Writes `dir/name` whole: a synced temporary file, then a hard link (`replace` false: fails
/// if the name exists) or a rename (`replace` true).
fn write_atomically(dir: &Path, name: &str, data: &[u8], replace: bool) -> Result<(), CniError> {
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let target = dir.join(name);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        if replace {
            fs::rename(&temp, &target)
        } else {
            let linked = fs::hard_link(&temp, &target);
            let _ = fs::remove_file(&temp);
            linked
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| CniError::io(target.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> PodRange {
        PodRange::parse(text).unwrap()
    }

    #[test]
    fn ranges_parse_and_reserve_network_gateway_and_broadcast() {
        let r = range("10.244.1.0/24");
        assert_eq!(r.gateway(), IpAddr::from([10, 244, 1, 1]));
        assert!(!r.is_usable(IpAddr::from([10, 244, 1, 0])));
        assert!(!r.is_usable(IpAddr::from([10, 244, 1, 1])));
        assert!(r.is_usable(IpAddr::from([10, 244, 1, 2])));
        assert!(r.is_usable(IpAddr::from([10, 244, 1, 254])));
        assert!(!r.is_usable(IpAddr::from([10, 244, 1, 255])));
        assert!(!r.is_usable(IpAddr::from([10, 244, 2, 7])));
        assert_eq!(r.usable_count(), 253);
        assert_eq!(range("10.0.0.0/30").usable_count(), 1);
        for bad in [
            "10.244.1.1/24",
            "10.244.1.0",
            "10.0.0.0/31",
            "fd00::1/64",
            "fd00::/127",
            "x/24",
        ] {
            assert!(PodRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_ranges_and_lists_of_both_families_parse() {
        let r = range("fd00:10:244:1::/64");
        assert_eq!(r.gateway(), "fd00:10:244:1::1".parse::<IpAddr>().unwrap());
        assert!(!r.is_usable("fd00:10:244:1::1".parse().unwrap()));
        assert!(r.is_usable("fd00:10:244:1::2".parse().unwrap()));
        assert!(!r.is_usable("fd00:10:244:1:ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!r.is_usable("10.244.1.2".parse().unwrap()));
        assert_eq!(r.usable_count(), (1u128 << 64) - 3);
        let both = PodRange::parse_list("10.244.1.0/24,fd00:10:244:1::/64\n").unwrap();
        assert_eq!(both, vec![range("10.244.1.0/24"), r]);
        let v6_first = PodRange::parse_list("fd00:10:244:1::/64, 10.244.1.0/24").unwrap();
        assert_eq!(v6_first[0], r);
        let twice = PodRange::parse_list("10.244.1.0/24,10.244.2.0/24").unwrap_err();
        assert!(twice.contains("one family"), "{twice}");
        assert!(PodRange::parse_list(" ").is_err());
    }

    #[test]
    fn each_family_allocates_its_own_address_and_release_frees_both() {
        let dir = tempfile::tempdir().unwrap();
        let (v4, v6) = (range("10.0.0.0/29"), range("fd00::/120"));
        let store = Store::open(dir.path(), "net").unwrap();
        store.check_range(v4).unwrap();
        store.check_range(v6).unwrap();
        let a4 = store.allocate(v4, "a", "eth0", None).unwrap();
        let a6 = store.allocate(v6, "a", "eth0", None).unwrap();
        assert_eq!(a4, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(a6, "fd00::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            store.allocate(v6, "a", "eth0", None).unwrap(),
            a6,
            "repeat ADD"
        );
        let b6 = store
            .allocate(v6, "b", "eth0", Some("fd00::42".parse().unwrap()))
            .unwrap();
        assert_eq!(b6, "fd00::42".parse::<IpAddr>().unwrap());
        assert_eq!(
            store.allocate(v6, "c", "eth0", None).unwrap(),
            "fd00::3".parse::<IpAddr>().unwrap(),
            "the next after the last handed out (a requested address does not move it)"
        );
        let mut freed = store.release("a", "eth0").unwrap();
        freed.sort();
        assert_eq!(freed, vec![a4, a6]);
        let moved = store.check_range(range("fd00:1::/120")).unwrap_err();
        assert!(moved.msg.contains("fd00::/120 to fd00:1::/120"), "{moved}");
    }

    #[test]
    fn allocation_is_per_attachment_reused_released_and_exhausts_with_code_11() {
        let dir = tempfile::tempdir().unwrap();
        let r = range("10.0.0.0/29"); // .2 .. .6 usable
        let store = Store::open(dir.path(), "net").unwrap();
        store.check_range(r).unwrap();
        let a = store.allocate(r, "a", "eth0", None).unwrap();
        assert_eq!(a, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(
            store.allocate(r, "a", "eth0", None).unwrap(),
            a,
            "repeat ADD"
        );
        let mut held = vec![a];
        for c in ["b", "c", "d", "e"] {
            held.push(store.allocate(r, c, "eth0", None).unwrap());
        }
        held.sort();
        held.dedup();
        assert_eq!(held.len(), 5);
        let full = store.allocate(r, "f", "eth0", None).unwrap_err();
        assert_eq!(full.code, code::TRY_AGAIN_LATER, "{full}");
        assert!(full.msg.contains("10.0.0.0/29"), "{full}");
        assert_eq!(store.release("c", "eth0").unwrap().len(), 1);
        assert!(store.release("c", "eth0").unwrap().is_empty(), "DEL twice");
        assert!(store.allocate(r, "f", "eth0", None).is_ok());
        let requested = store
            .allocate(r, "g", "eth0", Some(IpAddr::from([10, 0, 0, 1])))
            .unwrap_err();
        assert_eq!(requested.code, code::INVALID_CONFIG, "the gateway");
        let taken = store.allocate(r, "g", "eth0", Some(a)).unwrap_err();
        assert!(taken.msg.contains("held by container a"), "{taken}");
    }

    #[test]
    fn a_changed_pod_cidr_is_refused_while_old_addresses_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "net").unwrap();
        let old = range("10.0.1.0/24");
        store.check_range(old).unwrap();
        store.allocate(old, "a", "eth0", None).unwrap();
        let new = range("10.0.2.0/24");
        let e = store.check_range(new).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("10.0.1.0/24 to 10.0.2.0/24"), "{e}");
        store.release("a", "eth0").unwrap();
        store.check_range(new).unwrap();
        store.check_range(new).unwrap();
    }

    #[test]
    fn gc_frees_what_the_runtime_no_longer_lists() {
        let dir = tempfile::tempdir().unwrap();
        let r = range("10.0.1.0/24");
        let store = Store::open(dir.path(), "net").unwrap();
        for c in ["a", "b", "c"] {
            store.allocate(r, c, "eth0", None).unwrap();
        }
        let valid = [Attachment {
            container_id: "b".to_owned(),
            ifname: "eth0".to_owned(),
        }];
        let freed = store.collect_garbage(&valid).unwrap();
        assert_eq!(freed.len(), 2);
        let left = store.leases().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].container_id, "b");
    }
}
